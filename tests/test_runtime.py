"""What the entry points set up before JAX starts (`train.runtime`)."""
from __future__ import annotations

import os
import subprocess
import sys

from absl import flags
import jax
import numpy as np
import pytest

from nbflows import compilation_cache
from train import runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Imports every entry point, then names an unknown XLA flag: XLA aborts on
# it only if no import has started a backend, so flags that the entry
# points set in main() are read.
PROBE = """
import os
import train.main, train.evaluate, train.compare, train.report
import train.novelty, train.augment, train.benchmark
os.environ["XLA_FLAGS"] = "--nbflows_probe_flag"
import jax
jax.devices()
"""
FAST_CPU_RUN = """
import os
from train import runtime
assert runtime.set_fast_cpu_flags()
import jax
print(os.environ["XLA_FLAGS"], float(jax.jit(jax.numpy.sum)(jax.numpy.ones(3))))
"""


def python(script: str, **env) -> subprocess.CompletedProcess:
  environ = {name: value for name, value in os.environ.items()
             if name != "XLA_FLAGS"}
  environ.update(TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
                 PYTHONPATH=REPO, **env)
  return subprocess.run([sys.executable, "-c", script], cwd=REPO,
                        env=environ, capture_output=True, text=True,
                        timeout=300)


@pytest.fixture
def flag_values():
  """`runtime.define_flags`' flags on their own, parsed with no arguments."""
  values = flags.FlagValues()
  runtime.define_flags(values)
  values(["test"])
  return values


@pytest.fixture
def cache_settings():
  """Restores JAX's cache settings after the test."""
  with compilation_cache.settings_restored():
    yield


def test_fast_cpu_flags_only_when_xla_flags_is_unset(monkeypatch):
  monkeypatch.setattr(runtime, "backend_will_be_cpu", lambda: True)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  assert not runtime.set_fast_cpu_flags()
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
  monkeypatch.setenv("XLA_FLAGS", "")          # set, to XLA's defaults
  assert not runtime.set_fast_cpu_flags()
  assert not os.environ["XLA_FLAGS"]
  monkeypatch.delenv("XLA_FLAGS")
  assert not runtime.set_fast_cpu_flags(enabled=False)   # --nofast_cpu_flags
  assert "XLA_FLAGS" not in os.environ
  assert runtime.set_fast_cpu_flags()
  assert os.environ["XLA_FLAGS"] == runtime.FAST_CPU_XLA_FLAGS


def test_fast_cpu_flags_not_on_an_accelerator(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.setattr(runtime, "backend_will_be_cpu", lambda: False)
  assert not runtime.set_fast_cpu_flags()
  assert "XLA_FLAGS" not in os.environ


def test_backend_will_be_cpu_follows_jax_platforms():
  saved = jax.config.jax_platforms
  try:
    jax.config.update("jax_platforms", "cuda,cpu")
    assert not runtime.backend_will_be_cpu()
    jax.config.update("jax_platforms", "cpu")
    assert runtime.backend_will_be_cpu()
  finally:
    jax.config.update("jax_platforms", saved)


def test_entry_points_start_no_backend_on_import():
  run = python(PROBE)
  assert run.returncode != 0
  assert "Unknown flag in XLA_FLAGS: --nbflows_probe_flag" in run.stderr


def test_this_jaxlib_knows_the_fast_cpu_flag():
  run = python(FAST_CPU_RUN)
  assert run.returncode == 0, run.stderr[-3000:]
  assert run.stdout.split() == [runtime.FAST_CPU_XLA_FLAGS, "3.0"]


def test_entry_point_sets_the_cache_by_default(flag_values, cache_settings,
                                              monkeypatch, tmp_path):
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  jax.config.update("jax_compilation_cache_dir", None)
  with runtime.entry_point(flag_values) as compile_time:
    jax.jit(lambda x: jax.numpy.sinh(x) * 2.0)(np.ones(5, np.float32))
  directory = tmp_path / "nbflows" / "jax"
  assert jax.config.jax_compilation_cache_dir == str(directory)
  assert os.listdir(directory)
  assert compile_time.programs == 1 and compile_time.seconds > 0


def test_entry_point_keeps_the_users_cache(flag_values, cache_settings,
                                           monkeypatch, tmp_path):
  monkeypatch.setenv("XLA_FLAGS", "")
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "users"))
  with runtime.entry_point(flag_values):
    pass
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / "users")
  flag_values.compilation_cache_dir = str(tmp_path / "flag")
  with runtime.entry_point(flag_values):
    pass
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / "flag")


def test_nocompilation_cache_turns_it_off(flag_values, cache_settings,
                                          monkeypatch, tmp_path):
  monkeypatch.setenv("XLA_FLAGS", "")
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "users"))
  flag_values.compilation_cache = False
  with runtime.entry_point(flag_values) as compile_time:
    jax.jit(lambda x: jax.numpy.cosh(x) * 2.0)(np.ones(5, np.float32))
  assert not jax.config.jax_enable_compilation_cache
  assert not os.path.exists(tmp_path / "users")
  assert compile_time.programs == 1 and compile_time.cache_hits == 0
