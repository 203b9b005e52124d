"""The names of the metrics a test report can hold, and their parsing.

Apart from `train.evaluation.requested_metrics`, which computes them (and
imports JAX and the data pipeline), so that ``python -m train.evaluate
--help`` can list them in under 2 s.

Example:
  >>> parse_metrics("bpd, marginal_bpd")
  ('bpd', 'marginal_bpd')
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

METRICS = ("bpd", "iwae", "log_likelihood", "marginal_bpd", "marginal_bias",
           "fd", "prd")


def parse_metrics(metrics: Union[str, Sequence[str]]) -> Tuple[str, ...]:
  """Metric names from "a,b" or a sequence; () for an empty choice.

  Example:
    >>> parse_metrics("bpd, fd")
    ('bpd', 'fd')

  Raises:
    ValueError: for a name outside `METRICS`, listing the valid ones.
  """
  if isinstance(metrics, str):
    metrics = metrics.split(",")
  names = tuple(name.strip() for name in metrics if name.strip())
  unknown = [name for name in names if name not in METRICS]
  if unknown:
    raise ValueError(f"unknown metrics {unknown}; expected names from "
                     f"{', '.join(METRICS)}")
  return names
