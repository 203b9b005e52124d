"""A fixed random permutation of the last axis (paper 5, Fig. 1b, "P").

Between coupling blocks it mixes which dimensions each coupling keeps; a
permutation only relabels coordinates, so its log-det is 0.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from nbflows.bijectors import base

Array = jax.Array


class Permutation(base.Bijector):
  """A fixed random permutation of the last axis (Fig. 1b, "P").

  Forward: y = x[..., perm]; inverse: x = y[..., argsort(perm)]; log|det| = 0.

  Attributes:
    seed: fixes the permutation (drawn with NumPy, so it is a constant of
      the model, not a parameter).

  Example:
    >>> import jax.numpy as jnp
    >>> layer = Permutation(seed=0)
    >>> y, _ = layer.apply({}, jnp.arange(4.)[None], method="forward")
    >>> x, _ = layer.apply({}, y, method="inverse")
    >>> x.tolist()
    [[0.0, 1.0, 2.0, 3.0]]
  """
  seed: int = 0

  def _permutation(self, size: int) -> np.ndarray:
    return np.random.default_rng(self.seed).permutation(size)

  def forward(self, x: Array, cond: Optional[Array] = None):
    del cond  # a permutation takes no condition
    y = x[..., self._permutation(x.shape[-1])]
    return y, jnp.zeros(x.shape[:-1], x.dtype)

  def inverse(self, y: Array, cond: Optional[Array] = None):
    del cond  # a permutation takes no condition
    x = y[..., np.argsort(self._permutation(y.shape[-1]))]
    return x, jnp.zeros(y.shape[:-1], y.dtype)
