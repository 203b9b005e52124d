"""Shared by the test session: one JAX compilation cache for the session.

The README's commands, the TFDS command line, the notebooks and the
end-to-end tests compile the same quick models; with one persistent cache a
process (or an in-process run) finds the programs an earlier one compiled.
Every program is written (`nbflows.compilation_cache.MIN_COMPILE_TIME_SECS`:
JAX's default of 1 s would skip most of them). The cache directory is shared
by the xdist workers of a run. XLA_FLAGS are part of a program's key: the
command lines (`train.runtime`'s fast CPU flags) share programs with each
other, in-process runs and notebook kernels with each other.

Subprocesses and notebook kernels inherit it through the environment, set
after `jax` is imported, so this process's own config keeps its default
(tests/test_novelty.py checks a cache it sets is undone on exit); an
in-process run opts in with `compilation_cache.reused_compilations(
compilation_cache_dir)`, which restores the settings on exit.
"""
import os

import jax
import pytest


@pytest.fixture(scope="session", autouse=True)
def subprocess_compilation_cache(tmp_path_factory):
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent          # shared by every xdist worker of this run
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                        str(root / "jax_compilation_cache"))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


@pytest.fixture(scope="session")
def compilation_cache_dir(subprocess_compilation_cache) -> str:
  """The session's persistent compilation cache directory."""
  del subprocess_compilation_cache
  return os.environ["JAX_COMPILATION_CACHE_DIR"]


@pytest.fixture(scope="module")
def fast_compiles():
  """XLA's optimisations off for a module's compiles (opt-in, by
  `pytestmark = pytest.mark.usefixtures("fast_compiles")`): the values
  agree to float32 rounding and a compile is two to four times faster, so
  modules whose time is compiles of tiny programs ask for it."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)
