"""What every entry point sets up before JAX starts, and its flags.

Each command line (`python -m train.main`, `train.evaluate`,
`train.compare`, `train.report`, `train.novelty`, `train.augment`) runs its
main inside `with runtime.entry_point(flags.FLAGS):`, which

  1. puts XLA's fast CPU path in ``XLA_FLAGS`` (`FAST_CPU_XLA_FLAGS`:
     XLA's YNNPACK fusions of dot products and elementwise operations;
     PERFORMANCE.md: the conv flow trains 1.7x faster, NCL on mnist5k 1.15x)
     when the user has not set ``XLA_FLAGS`` (an empty ``XLA_FLAGS=`` counts
     as set) and the backend will be the CPU: JAX reads the variable once,
     when it starts its backends, so this comes first. The flag only
     concerns XLA's CPU compiler, so where an accelerator is in use
     (``JAX_PLATFORMS`` naming another platform first, or a GPU/TPU plugin
     installed) nothing is set. It changes float32 rounding (0.016 nats in
     -1,100 nats per image). `--nofast_cpu_flags` turns it off;
  2. turns on the persistent compilation cache (`nbflows.compilation_cache`)
     in `--compilation_cache_dir` (default: the directory the user set with
     ``JAX_COMPILATION_CACHE_DIR``, else ~/.cache/nbflows/jax), so a second
     run of a command loads its programs instead of compiling them;
     `--nocompilation_cache` turns it off;
  3. logs on exit the seconds spent compiling (or loading from the cache),
     ``compile_s``.

`python -m train.benchmark` takes only step 1 (`set_fast_cpu_flags`): a
cache would hide the compile times it measures.

Importing this module does not import JAX (each function imports it when it
runs), so a command line's ``--help`` and flag errors stay quick
(`train.cli`).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import time
from typing import Iterator

from absl import flags
from absl import logging

FAST_CPU_XLA_FLAGS = "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise"
# Wraps XLA's compile, or the persistent cache's read when it serves one.
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The flags of `entry_point`, for each command line's `define_flags`."""
  flags.DEFINE_bool("compilation_cache", True, "Keep compiled programs in a "
                    "persistent cache, so a rerun loads instead of compiling "
                    "(--nocompilation_cache: off).", flag_values=flag_values)
  flags.DEFINE_string("compilation_cache_dir", None, "The persistent "
                      "compilation cache's directory (default: "
                      "JAX_COMPILATION_CACHE_DIR if set, else "
                      "$XDG_CACHE_HOME/nbflows/jax or ~/.cache/nbflows/jax).",
                      flag_values=flag_values)
  flags.DEFINE_bool("fast_cpu_flags", True, "On the CPU, when XLA_FLAGS is "
                    f"unset, run with XLA_FLAGS={FAST_CPU_XLA_FLAGS} "
                    "(--nofast_cpu_flags: XLA's defaults).",
                    flag_values=flag_values)


def backend_will_be_cpu() -> bool:
  """Whether JAX will compute on the CPU, decided without starting it.

  ``JAX_PLATFORMS`` (or `jax_platforms`) decides where it is set; otherwise
  JAX picks an accelerator when a PJRT plugin (jax-cuda12-plugin, ...) or
  libtpu is installed.
  """
  import jax  # pylint: disable=g-import-not-at-top
  platforms = jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS")
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  return not (importlib.metadata.entry_points(group="jax_plugins")
              or importlib.util.find_spec("jax_plugins") is not None
              or importlib.util.find_spec("libtpu") is not None)


def set_fast_cpu_flags(enabled: bool = True) -> bool:
  """Sets ``XLA_FLAGS`` to `FAST_CPU_XLA_FLAGS` where the module doc says.

  Must run before JAX starts its backends (the first array or
  `jax.devices()`); importing jax is fine.

  Returns:
    Whether it set them.
  """
  if not enabled or "XLA_FLAGS" in os.environ or not backend_will_be_cpu():
    return False
  os.environ["XLA_FLAGS"] = FAST_CPU_XLA_FLAGS
  return True


class CompileTime:
  """Seconds JAX spends compiling (or loading from the cache) while open."""

  def __init__(self):
    self.seconds = 0.0
    self.programs = 0
    self.cache_hits = 0

  def _on_duration(self, event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event == BACKEND_COMPILE_EVENT:
      self.seconds += duration
      self.programs += 1

  def _on_event(self, event: str, **kwargs) -> None:
    del kwargs
    if event == CACHE_HIT_EVENT:
      self.cache_hits += 1

  def __enter__(self) -> CompileTime:
    import jax  # pylint: disable=g-import-not-at-top
    jax.monitoring.register_event_duration_secs_listener(self._on_duration)
    jax.monitoring.register_event_listener(self._on_event)
    return self

  def __exit__(self, *exc_info) -> None:
    import jax  # pylint: disable=g-import-not-at-top
    jax.monitoring.unregister_event_duration_listener(self._on_duration)
    jax.monitoring.unregister_event_listener(self._on_event)


@contextlib.contextmanager
def entry_point(flag_values: flags.FlagValues = flags.FLAGS
                ) -> Iterator[CompileTime]:
  """Steps 1-3 of the module doc around an entry point's main.

  Args:
    flag_values: parsed flags that include `define_flags`'.

  Yields:
    The `CompileTime` of the run.
  """
  set_fast_cpu_flags(flag_values.fast_cpu_flags)
  from nbflows import compilation_cache  # pylint: disable=g-import-not-at-top
  if flag_values.compilation_cache:
    directory = compilation_cache.enable_compilation_cache(
        flag_values.compilation_cache_dir)
    logging.info("persistent compilation cache: %s", directory)
  else:
    compilation_cache.disable_compilation_cache()
  start = time.time()
  with CompileTime() as compile_time:
    yield compile_time
  logging.info("compile_s=%.1f (%d programs, %d from the persistent cache) "
               "in %.1f s", compile_time.seconds, compile_time.programs,
               compile_time.cache_hits, time.time() - start)
