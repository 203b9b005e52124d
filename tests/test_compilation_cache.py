"""The persistent compilation cache (`nbflows.compilation_cache`)."""
from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from nbflows import compilation_cache


@pytest.fixture(autouse=True)
def restore_settings():
  """Each test leaves JAX's cache settings as it found them."""
  with compilation_cache.settings_restored():
    yield


def test_default_cache_dir_follows_xdg_cache_home(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache.default_cache_dir() == str(tmp_path / "nbflows" /
                                                      "jax")
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert compilation_cache.default_cache_dir() == str(
      tmp_path / "home" / ".cache" / "nbflows" / "jax")


def test_enable_writes_compiled_programs_to_the_directory(tmp_path):
  jax.config.update("jax_compilation_cache_dir", None)
  directory = str(tmp_path / "cache")
  assert compilation_cache.enable_compilation_cache(directory) == directory
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
  jax.jit(lambda x: jax.numpy.tanh(x) * 5.0)(np.ones(9, np.float32))
  assert os.listdir(directory)


def test_the_users_directory_wins_over_the_default(tmp_path):
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "users"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
  assert compilation_cache.enable_compilation_cache() == str(tmp_path /
                                                             "users")
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.0
  # An explicit directory is the caller's choice, so it wins in turn.
  assert compilation_cache.enable_compilation_cache(
      str(tmp_path / "explicit")) == str(tmp_path / "explicit")


def test_disable_turns_off_a_cache_the_user_set(tmp_path):
  jax.config.update("jax_compilation_cache_dir", str(tmp_path / "users"))
  compilation_cache.disable_compilation_cache()
  jax.jit(lambda x: jax.numpy.tanh(x) * 7.0)(np.ones(9, np.float32))
  assert not os.path.exists(tmp_path / "users")


def test_reused_compilations_compile_an_identical_program_once(tmp_path):
  jax.config.update("jax_compilation_cache_dir", None)
  directory = tmp_path / "cache"
  with compilation_cache.reused_compilations(str(directory)):
    # Two closures with the same program, as trainer.train builds per class.
    jax.jit(lambda x: jax.numpy.sin(x) * 3.0)(np.ones(7, np.float32))
    entries = set(os.listdir(directory))
    jax.jit(lambda x: jax.numpy.sin(x) * 3.0)(np.ones(7, np.float32))
    assert set(os.listdir(directory)) == entries       # served from cache
    jax.jit(lambda x: jax.numpy.cos(x) * 3.0)(np.ones(7, np.float32))
    assert len(set(os.listdir(directory)) - entries) == 1  # a new program
  assert not jax.config.jax_compilation_cache_dir     # restored on exit
