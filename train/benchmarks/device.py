"""The machine a benchmark job ran on, for its JSON line."""
from __future__ import annotations

import os
import platform
from typing import Any, Dict


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def describe() -> Dict[str, Any]:
  """JAX's platform, device kind and count, and the host's CPUs and load."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return {"platform": devices[0].platform, "kind": devices[0].device_kind,
          "count": len(devices), "host_cpu": _cpu_model(),
          "host_cpus": os.cpu_count(),
          "loadavg": [round(v, 2) for v in os.getloadavg()]}
