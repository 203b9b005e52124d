"""Diagonal Gaussian base densities over whole events (paper 1, eqs. 5 and 7).

Every density here is over one example's event (all axes but the first), so
``log_prob`` returns shape ``[B]``:

  log N(z; mu, diag(sigma^2)) = sum_i -0.5 ((z_i - mu_i) / sigma_i)^2
                                      - log sigma_i - 0.5 log(2 pi)

The scale is given as ``log_scale = log sigma`` so the density needs no
``log(exp(.))``. The standard normal (mu = 0, sigma = 1) is the prior of the
plain flows; NCL (eq. 7) uses a per-dimension mean and scale computed from the
neighbourhood. Sampling takes a temperature T that multiplies sigma, so
``T = 0`` returns the mean (the mode).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _sum_event(x: Array) -> Array:
  return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def standard_normal_log_prob(z: Array,
                             event_ndims: Optional[int] = None) -> Array:
  """log N(z; 0, I) = sum_i -0.5 z_i^2 - 0.5 log(2 pi) over the event.

  Args:
    z: points; [B, *event] for the default `event_ndims`.
    event_ndims: how many trailing axes form the event and are summed. None
      (the flows' priors) sums every axis but the first, [B, ...] -> [B];
      1 sums the last axis only, [..., d] -> [...] (the VAEs' codes, which
      may carry leading sample axes).

  Returns:
    log-densities in nats, of `z`'s shape without the event axes.

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(standard_normal_log_prob(jnp.zeros((1, 2)))[0]), 4)
    -1.8379
    >>> standard_normal_log_prob(jnp.zeros((5, 3, 2)), event_ndims=1).shape
    (5, 3)
  """
  per_dim = -0.5 * jnp.square(z) - _HALF_LOG_2PI
  if event_ndims is None:
    return _sum_event(per_dim)
  return jnp.sum(per_dim, axis=tuple(range(-event_ndims, 0)))


def diagonal_normal_log_prob(z: Array, mean: Array, log_scale: Array) -> Array:
  """log N(z; mean, diag(exp(2 log_scale))) summed over the event (eq. 7).

  Args:
    z: [B, ...] points.
    mean: the per-dimension mean, broadcastable to `z`.
    log_scale: the per-dimension log standard deviation, broadcastable to `z`.

  Returns:
    [B] log-densities in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.ones((1, 3))
    >>> lp = diagonal_normal_log_prob(z, mean=z, log_scale=jnp.zeros((1, 3)))
    >>> bool(jnp.allclose(lp, standard_normal_log_prob(jnp.zeros((1, 3)))))
    True
  """
  standardised = (z - mean) * jnp.exp(-log_scale)
  per_dim = -0.5 * jnp.square(standardised) - log_scale - _HALF_LOG_2PI
  return _sum_event(jnp.broadcast_to(per_dim, z.shape))


def diagonal_gaussian_log_prob(z: Array, mean: Array,
                               log_variance: Array) -> Array:
  """log N(z; mean, diag exp(log_variance)), summed over the last axis only.

  The VAEs' posterior q(z | x) (paper 3, eq. 11), parametrised by its log
  variance; `z` may carry leading sample axes, [..., d] -> [...].

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.zeros((4, 1, 2))
    >>> lp = diagonal_gaussian_log_prob(z, z[0], jnp.zeros((1, 2)))
    >>> lp.shape, bool(jnp.allclose(lp, standard_normal_log_prob(z[0])[0]))
    ((4, 1), True)
  """
  return -0.5 * jnp.sum(
      math.log(2 * math.pi) + log_variance
      + (z - mean) ** 2 * jnp.exp(-log_variance), axis=-1)


def standard_normal_sample(key: Array, shape: Sequence[int],
                           temperature: float = 1.0) -> Array:
  """z ~ N(0, T^2 I) of the given shape [B, *event] (T = `temperature`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> z = standard_normal_sample(jax.random.key(0), (2, 3), temperature=0.0)
    >>> z.shape, bool(jnp.all(z == 0))      # T = 0: the mode
    ((2, 3), True)
  """
  return temperature * jax.random.normal(key, tuple(shape))


def diagonal_normal_sample(key: Array, mean: Array, log_scale: Array,
                           temperature: float = 1.0) -> Array:
  """z = mean + T exp(log_scale) eps, eps ~ N(0, I), of `mean`'s shape.

  Args:
    key: a PRNG key.
    mean: [B, ...] per-dimension means.
    log_scale: per-dimension log standard deviations, broadcastable to `mean`.
    temperature: T >= 0; T = 0 returns `mean`.

  Returns:
    Samples of the shape of `mean`.
  """
  eps = jax.random.normal(key, mean.shape, mean.dtype)
  return mean + temperature * jnp.exp(log_scale) * eps
