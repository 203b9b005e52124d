"""Invertible 1x1 convolution, LU-parametrised (Glow, Kingma & Dhariwal 2018,
Sec. 3.2 and 3.3, Table 1).

Every pixel's channel vector is multiplied by one learned C x C matrix,

  y_hw = W x_hw,        W = P L (U + diag(s))
  log|det dy/dx| = H * W * sum_c log|s_c|

with P a fixed permutation, L lower triangular with a unit diagonal, U
strictly upper triangular and s = exp(log_s) (eq. 10 of Glow). Glow writes
``diag(sign(s) exp(log|s|))`` and keeps sign(s) fixed; here the initial
rotation is chosen with s > 0 (see `Conv1x1`), so the sign is +1 throughout
and needs no storage. L, U and log_s are learned; P is a random permutation
drawn from `permutation_seed`, a constant rather than a parameter, so no
optimiser can change it.

Built as `distrax.LowerUpperTriangularAffine` followed by the permutation,
inside `distrax.Block` over the spatial axes.
"""
from __future__ import annotations

from typing import Optional, Tuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nbflows.bijectors import base

Array = jax.Array


def random_lu_rotation(key: Array, channels: int
                       ) -> Tuple[Array, Array, Array]:
  """L, U and log s of a random rotation, up to a permutation, with s > 0.

  Draws an orthogonal Q, factorises Q = P_Q L U (partial pivoting) and flips
  the signs of U's columns so its diagonal s is positive: L U D = P_Q^T Q D
  with D = diag(sign(s)) is still orthogonal, and so is P L U D for any
  permutation P.

  Args:
    key: a PRNG key.
    channels: C.

  Returns:
    (lower [C, C] with unit diagonal, strictly upper [C, C], log_s [C]).
  """
  q = jax.random.orthogonal(key, channels)
  _, lower, upper = jax.scipy.linalg.lu(q)
  sign = jnp.sign(jnp.diag(upper))
  upper = upper * sign[None, :]
  return lower, jnp.triu(upper, 1), jnp.log(jnp.diag(upper))


class Conv1x1(base.Bijector):
  """Invertible 1x1 convolution over the last axis of [B, ..., C].

  Images [B, H, W, C] get the same matrix at every pixel; vectors [B, D]
  are multiplied once. Initialised to a random rotation (|det W| = 1, so the
  log-det starts at 0). Unconditional.

  Attributes:
    permutation_seed: seed of the fixed permutation P; give stacked layers
      different seeds for different permutations.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> layer = Conv1x1()
    >>> x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    >>> params = layer.init(jax.random.key(1), x)
    >>> y, logdet = layer.apply(params, x, method="forward")
    >>> bool(jnp.allclose(jnp.sum(y**2), jnp.sum(x**2), rtol=1e-5))  # rotation
    True
  """
  permutation_seed: int = 0

  @nn.compact
  def _bijector(self, x: Array, cond: Optional[Array]) -> distrax.Bijector:
    base.check_channels(self, x, "log_s")
    base.check_cond(cond, None, x.shape[0])
    channels = x.shape[-1]
    # The three parameters come from one rotation, so they share one key.
    # Outside `init`, Flax only evaluates the initialisers' shapes, and any
    # key will do.
    if self.is_initializing():
      key = self.make_rng("params")
    else:
      key = jax.random.key(0)
    lower = self.param("lower", lambda _: random_lu_rotation(key, channels)[0])
    upper = self.param("upper", lambda _: random_lu_rotation(key, channels)[1])
    log_s = self.param("log_s", lambda _: random_lu_rotation(key, channels)[2])
    # distrax reads L from the strict lower part and U from the upper part
    # (diagonal included) of one matrix.
    matrix = (jnp.tril(lower, -1) + jnp.triu(upper, 1) +
              jnp.diag(jnp.exp(log_s)))
    lu = distrax.LowerUpperTriangularAffine(
        matrix=matrix, bias=jnp.zeros(channels, matrix.dtype))
    perm = np.random.default_rng(self.permutation_seed).permutation(channels)
    inverse_perm = np.argsort(perm)
    permute = distrax.Lambda(
        forward=lambda v: v[..., perm],
        inverse=lambda v: v[..., inverse_perm],
        forward_log_det_jacobian=lambda v: jnp.zeros(v.shape[:-1], v.dtype),
        inverse_log_det_jacobian=lambda v: jnp.zeros(v.shape[:-1], v.dtype),
        event_ndims_in=1, event_ndims_out=1, is_constant_jacobian=True)
    # distrax.Chain applies its last bijector first: y = P (L U x).
    return distrax.Block(distrax.Chain([permute, lu]), ndims=x.ndim - 2)

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._bijector(x, cond).forward_and_log_det(x)

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._bijector(y, cond).inverse_and_log_det(y)
