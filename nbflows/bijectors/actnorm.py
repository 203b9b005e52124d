"""Activation normalisation (Glow, Kingma & Dhariwal 2018, Sec. 3.1, Table 1).

  y = exp(log_scale) * x + shift          per channel (last axis)
  log|det dy/dx| = (number of positions) * sum_c log_scale_c
                 = H * W * sum_c log_scale_c  for [B, H, W, C] images

Data-dependent initialisation: when the layer is initialised (`layer.init`),
``log_scale = -log(std)`` and ``shift = -mean * exp(log_scale)`` with the
per-channel mean and standard deviation of the initialisation batch (over
batch and spatial axes), so that batch's output has zero mean and unit
variance per channel. Afterwards both are ordinary learned parameters.
Built as `distrax.Block(distrax.ScalarAffine(shift, log_scale))`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.bijectors import base

Array = jax.Array


class ActNorm(base.Bijector):
  """Per-channel affine layer with data-dependent initialisation.

  Works on any input [B, ..., C] (images [B, H, W, C] or vectors [B, D]);
  the statistics are taken over every axis but the last. Unconditional.

  Attributes:
    eps: added to the variance at initialisation, so a constant channel
      gives a finite scale.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (64, 4, 4, 2))
    >>> layer = ActNorm()
    >>> params = layer.init(jax.random.key(1), x)
    >>> y, logdet = layer.apply(params, x, method="forward")
    >>> bool(jnp.allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5))
    True
    >>> bool(jnp.allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-4))
    True
  """
  eps: float = 1e-6

  @nn.compact
  def _bijector(self, x: Array, cond: Optional[Array]) -> distrax.Bijector:
    base.check_channels(self, x, "log_scale")
    base.check_cond(cond, None, x.shape[0])
    axes = tuple(range(x.ndim - 1))

    def init_log_scale(_):
      base.check_finite(x, "x (the ActNorm initialisation batch)")
      return -0.5 * jnp.log(jnp.var(x, axis=axes) + self.eps)

    log_scale = self.param("log_scale", init_log_scale)
    shift = self.param(
        "shift", lambda _: -jnp.mean(x, axis=axes) * jnp.exp(log_scale))
    affine = distrax.ScalarAffine(shift=shift, log_scale=log_scale)
    return distrax.Block(affine, ndims=x.ndim - 1)

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._bijector(x, cond).forward_and_log_det(x)

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._bijector(y, cond).inverse_and_log_det(y)
