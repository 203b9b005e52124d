"""Importing a module with TensorFlow hidden from it.

distrax imports TensorFlow Probability's JAX substrate, whose
`internal/backend/jax/_utils.py` imports TensorFlow, when it is installed,
only to copy TensorFlow's docstrings onto its functions: 5 of the 7 s that
`import nbflows` took. With ``sys.modules["tensorflow"] = None`` for the
length of the import, Python raises ImportError for `import tensorflow`
(the import system's documented meaning of a None entry), the substrate
falls back to no docstrings, and TensorFlow stays unloaded until the data
pipeline needs it.
"""
import importlib
import sys
import types

BLOCKED = "tensorflow"


def import_module(name: str, blocked: str = BLOCKED) -> types.ModuleType:
  """`importlib.import_module(name)` with `blocked` hidden, unless loaded.

  Where `blocked` is already imported (or `name` is) this is a plain import.

  Args:
    name: the module to import, e.g. "distrax".
    blocked: the top-level package it must not import.

  Returns:
    The module.

  Example:
    >>> import sys
    >>> distrax = import_module("distrax")
    >>> "tensorflow" in sys.modules and sys.modules["tensorflow"] is None
    False
  """
  if blocked in sys.modules or name in sys.modules:
    return importlib.import_module(name)
  sys.modules[blocked] = None  # `import blocked` raises ImportError
  try:
    return importlib.import_module(name)
  finally:
    if blocked in sys.modules and sys.modules[blocked] is None:
      del sys.modules[blocked]
