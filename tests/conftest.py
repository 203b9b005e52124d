"""Shared by the test session: one JAX compilation cache for its subprocesses.

The README's commands, the TFDS command line and the notebooks start
`python -m train.*` processes that compile the same quick models; with the
cache in the environment they inherit, a process finds the programs an
earlier one compiled. The cache directory is shared by the xdist workers of
a run. Set after `jax` is imported, so this process's own config keeps its
default (tests/test_novelty.py checks a cache it sets is undone on exit).
"""
import os

import jax  # pylint: disable=unused-import
import pytest


@pytest.fixture(scope="session", autouse=True)
def subprocess_compilation_cache(tmp_path_factory):
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent          # shared by every xdist worker of this run
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                        str(root / "jax_compilation_cache"))


@pytest.fixture(scope="module")
def fast_compiles():
  """XLA's optimisations off for a module's compiles (opt-in, by
  `pytestmark = pytest.mark.usefixtures("fast_compiles")`): the values
  agree to float32 rounding and a compile is two to four times faster, so
  modules whose time is compiles of tiny programs ask for it."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)
