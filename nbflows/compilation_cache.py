"""JAX's persistent compilation cache: compile each program once per machine.

`jax.jit` compiles a program the first time a process sees its shapes; for a
flow's train step that is most of a short run (the `:quick` configs compile
for tens of seconds and train for a few). With the persistent cache on, JAX
writes every compiled executable to a directory, keyed by the program, its
shapes, the jax and jaxlib versions, the devices and the XLA flags, and a
later process (a rerun, another README command, a notebook, a test) loads it
instead of compiling. A stale entry cannot be served: any change to the
program changes its key.

The command lines (`python -m train.main`, `train.evaluate`, ...) turn it on
by default, in `default_cache_dir()` (`train.runtime`). In a notebook or on
Colab, one call before the first jitted call does the same:

  import nbflows
  nbflows.enable_compilation_cache()                   # ~/.cache/nbflows/jax
  nbflows.enable_compilation_cache("/content/drive/MyDrive/nbflows_jax")

(a directory on Google Drive outlives the Colab runtime; the cache only
serves the same jax version and devices).

Example:
  >>> import tempfile
  >>> directory = tempfile.mkdtemp()
  >>> with settings_restored():
  ...   _ = enable_compilation_cache(directory)
  ...   _ = jax.jit(lambda x: x * 2.0 + 1.0)(1.0)
  >>> len(os.listdir(directory)) > 0
  True
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import jax
from jax.experimental.compilation_cache import compilation_cache

# Measured on `python -m train.main --config configs/ncl_digits.py:quick`
# (44 s of compiles, 32 programs): the init (31 s), the train step (8.5 s)
# and the sampler (1.7 s) compile for over JAX's default threshold of 1 s,
# the eval step and the metrics' programs for 0.6-0.7 s each (more on a
# loaded machine) and 25 eager operations for 0.01-0.09 s. Every program is
# cached (1.6 MB in all); a rerun then compiled for 7.5 s instead of 76 s.
MIN_COMPILE_TIME_SECS = 0.0
SETTINGS = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
            "jax_persistent_cache_min_compile_time_secs")


def default_cache_dir() -> str:
  """`$XDG_CACHE_HOME/nbflows/jax`, else `~/.cache/nbflows/jax`."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(root, "nbflows", "jax")


def enable_compilation_cache(
    directory: Optional[str] = None,
    min_compile_time_secs: float = MIN_COMPILE_TIME_SECS) -> str:
  """Turns on JAX's persistent compilation cache in `directory`.

  Call it before the first jitted call (later calls also work: programs
  compiled before it are not written). It sets the global
  `jax_compilation_cache_dir` and
  `jax_persistent_cache_min_compile_time_secs`, for the rest of the process.

  Args:
    directory: where the compiled programs go (created by JAX). None: the
      directory the user already chose (``JAX_COMPILATION_CACHE_DIR`` or
      `jax.config.update("jax_compilation_cache_dir", ...)`), which is then
      left as it is with its settings, else `default_cache_dir()`.
    min_compile_time_secs: programs that compile faster are not written
      (JAX's default, 1 s, would skip most of nbflows' programs).

  Returns:
    The cache directory in use.
  """
  if directory is None and jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  directory = os.path.expanduser(directory or default_cache_dir())
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    min_compile_time_secs)
  # JAX settles whether it uses a cache at the process's first compile; a
  # reset makes it look again.
  compilation_cache.reset_cache()
  return directory


def disable_compilation_cache() -> None:
  """Turns the persistent compilation cache off, whatever set it."""
  jax.config.update("jax_enable_compilation_cache", False)
  compilation_cache.reset_cache()


@contextlib.contextmanager
def settings_restored() -> Iterator[None]:
  """Restores JAX's cache settings (`SETTINGS`) on exit."""
  saved = {name: getattr(jax.config, name) for name in SETTINGS}
  try:
    yield
  finally:
    for name, value in saved.items():
      jax.config.update(name, value)
    compilation_cache.reset_cache()


@contextlib.contextmanager
def reused_compilations(directory: str) -> Iterator[None]:
  """The persistent cache in `directory` while the context is open.

  For code that jits fresh closures of identical programs (one
  `trainer.train` per class of `train.experiments.novelty`): every program
  after the first is served from the cache instead of compiled. A cache
  already set (by the user, `enable_compilation_cache` or an entry point)
  is used as it is; otherwise the settings are restored on exit.
  """
  if jax.config.jax_compilation_cache_dir:
    yield
    return
  with settings_restored():
    enable_compilation_cache(directory, 0.0)
    yield
