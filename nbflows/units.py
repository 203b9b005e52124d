"""Bits per dimension, the unit every likelihood in nbflows is reported in.

A density of a D-dimensional point, log p in nats, is reported as

  bpd = -log p / (D ln 2)

(with the flows' rescale and logit log-dets inside log p, bits per dimension
of the discrete data). The functions take and return
NumPy or JAX arrays alike (or Python floats), so they serve jitted losses and
host-side reports.
"""
from __future__ import annotations

import math
from typing import Union

import jax
import numpy as np

ArrayLike = Union[jax.Array, np.ndarray, float]
NATS_PER_BIT = math.log(2.0)


def bits_per_dim(log_prob: ArrayLike, num_dims: int) -> ArrayLike:
  """-log p / (D ln 2): nats of a D-dimensional point to bits per dimension.

  Args:
    log_prob: log p in nats, any shape.
    num_dims: D, the number of dimensions of one point.

  Returns:
    Bits per dimension, of the shape and array type of `log_prob`.

  Example:
    >>> import numpy as np
    >>> round(float(bits_per_dim(-64 * np.log(2.0), 64)), 6)
    1.0
  """
  return -log_prob / (num_dims * NATS_PER_BIT)


def log_prob_from_bits_per_dim(bpd: ArrayLike, num_dims: int) -> ArrayLike:
  """log p = -bpd D ln 2, the inverse of `bits_per_dim`.

  Args:
    bpd: bits per dimension, any shape.
    num_dims: D, the number of dimensions of one point.

  Returns:
    log p in nats, of the shape and array type of `bpd`.

  Example:
    >>> round(float(log_prob_from_bits_per_dim(1.0, 64) / np.log(2.0)), 6)
    -64.0
  """
  return -bpd * num_dims * NATS_PER_BIT
