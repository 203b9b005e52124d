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

The files run longest first (`pytest_collection_modifyitems`). Under
`-n 2 --dist loadfile` (setup.cfg) a file runs whole on one worker and the
workers take files in collection order (`--no-loadscope-reorder`; xdist's
default order, most tests first, sends the few-test end-to-end files last,
where one of them keeps a worker busy while the other has nothing left).
Longest first, the short files fill the end of both workers' queues.
"""
import collections
import os
import pathlib

import jax
import pytest

# The files of end-to-end runs, subprocesses and notebooks, longest first
# (rank them again with a run's `--durations=0` when one grows); the other
# files follow, most tests first.
LONGEST_FILES = (
    "test_tfds_on_disk.py", "test_report.py", "test_notebooks.py",
    "test_readme.py", "test_kill_resume.py", "test_entry_points.py",
    "test_workdir_files.py", "test_paper_configs.py", "test_report_seeds.py",
    "test_cli.py", "test_sharding.py", "test_novelty.py", "test_fsdp.py",
    "test_vae_features.py", "test_checkpoint_format.py", "test_toy_model.py",
    "test_import_rule.py", "test_evaluation_protocol.py")


def pytest_collection_modifyitems(items):
  """Orders the items file by file, longest files first (see above)."""
  missing = set(LONGEST_FILES) - {
      path.name for path in pathlib.Path(__file__).parent.glob("test_*.py")}
  if missing:
    raise pytest.UsageError(
        f"tests/conftest.py: LONGEST_FILES names {sorted(missing)}, which "
        "are not in tests/")
  rank = {name: i for i, name in enumerate(LONGEST_FILES)}
  counts = collections.Counter(item.path.name for item in items)
  # Stable: a file's items stay together and in their order.
  items.sort(key=lambda item: (rank.get(item.path.name, len(rank)),
                               -counts[item.path.name], item.path.name))


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
