"""Importing a module with TensorFlow hidden from it.

distrax imports TensorFlow Probability, and both halves of TFP look for
TensorFlow:

  - the JAX substrate's `internal/backend/jax/_utils.py` imports TensorFlow,
    when it is installed, only to copy its docstrings onto its functions
    (5 of the 7 s that `import nbflows` took);
  - the top-level package, when TensorFlow is already loaded, loads its
    TensorFlow half at once, which needs `tf_keras` (not installed here):
    `import tensorflow; import distrax` fails with ModuleNotFoundError.

With ``sys.modules["tensorflow"] = None`` for the length of the import,
`import tensorflow` raises ImportError (the import system's documented
meaning of a None entry), TFP takes its TensorFlow-free paths (no copied
docstrings), and afterwards the entry is restored: TensorFlow stays unloaded
until the data pipeline needs it, or stays loaded if it was.
"""
import importlib
import sys
import types

BLOCKED = "tensorflow"


def import_module(name: str, blocked: str = BLOCKED) -> types.ModuleType:
  """`importlib.import_module(name)` with package `blocked` hidden from it.

  Args:
    name: the module to import, e.g. "distrax".
    blocked: the top-level package it must not see, loaded or not.

  Returns:
    The module.

  Example:
    >>> import sys
    >>> loaded = sys.modules.get("tensorflow")
    >>> import_module("distrax").__name__
    'distrax'
    >>> sys.modules.get("tensorflow") is loaded
    True
  """
  if name in sys.modules:
    return sys.modules[name]
  hidden = sys.modules.get(blocked)
  sys.modules[blocked] = None  # `import blocked` raises ImportError
  try:
    return importlib.import_module(name)
  finally:
    if hidden is None:
      del sys.modules[blocked]
    else:
      sys.modules[blocked] = hidden
