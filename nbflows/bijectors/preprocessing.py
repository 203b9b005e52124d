"""Pre-processing bijectors (RealNVP, Dinh et al. 2016, Sec. 4.1).

Data arrive in "data units" (see `nbflows.models.base`): x = k + u with k
the integer pixel value in {0, ..., L - 1} and u ~ U[0, 1), so x lies in
[0, L). A density p(x) on that space is also the probability of k, averaged
over u, with no further correction (the unit cube around k has volume 1).
The model then applies, counting every log-det,

  Rescale(L):  y = x / L                         in [0, 1)
               log|det| = -D log L
  Logit(a):    p = a + (1 - 2a) y                 in [a, 1 - a)
               z = log p - log(1 - p)
               log|det| = sum_i log(1 - 2a) - log p_i - log(1 - p_i)

so that ``-log p(x) / (D ln 2)`` is bits per dimension of the discrete data.
`uniform_dequantise` produces x from the integers.
"""
from __future__ import annotations

from typing import Optional, Tuple

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from nbflows.bijectors import base

Array = jax.Array


def uniform_dequantise(key: Array, x: Array) -> Array:
  """Integer data -> data units: ``float32(x) + u``, ``u ~ U[0, 1)``.

  Near the top of a float32 range ``k + u`` can round up to ``k + 1`` (at
  k = 255 any u > 1 - 2**-17 does); the result is therefore capped at the
  largest float32 below ``k + 1``, so it always lies in ``[k, k + 1)``.

  Args:
    key: a PRNG key.
    x: integer array (e.g. uint8 pixels) of any shape.

  Returns:
    float32 array of the shape of `x`.

  Raises:
    ValueError: if `x` is not of an integer dtype.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.array([[0, 255]], jnp.uint8)
    >>> y = uniform_dequantise(jax.random.key(0), x)
    >>> bool(jnp.all((y >= x) & (y < x.astype(jnp.float32) + 1)))
    True
  """
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(f"x has dtype {x.dtype}; expected integer data (e.g. "
                     "uint8) to dequantise")
  k = x.astype(jnp.float32)
  u = jax.random.uniform(key, x.shape, jnp.float32)
  return jnp.minimum(k + u, jnp.nextafter(k + 1.0, k))


def _check_range(x: Array, low: float, high: float, name: str) -> None:
  """Raises ValueError if a concrete `x` has values outside [low, high)."""
  if isinstance(x, jax.core.Tracer):
    return
  values = np.asarray(x)
  outside = ~((values >= low) & (values < high))
  if np.any(outside):
    raise ValueError(
        f"{name} holds {int(np.count_nonzero(outside))} values outside "
        f"[{low}, {high}) (min {np.nanmin(values)}, max {np.nanmax(values)}); "
        f"expected data units in [{low}, {high})")


def _check_rank(x: Array, name: str) -> None:
  if x.ndim < 2:
    raise ValueError(f"{name} has shape {tuple(x.shape)}; expected [batch, "
                     "...] with at least one event axis")


class Rescale(base.Bijector):
  """y = x / num_levels: data units [0, L) -> [0, 1).

  log|det dy/dx| = -D log(num_levels), D the number of event dimensions.
  Forward checks that concrete inputs lie in [0, num_levels).

  Attributes:
    num_levels: L, the number of discrete values (256 for 8-bit images).

  Example:
    >>> import jax.numpy as jnp
    >>> layer = Rescale(num_levels=256)
    >>> y, logdet = layer.apply({}, jnp.full((1, 2), 128.), method="forward")
    >>> y.tolist(), round(float(logdet[0]), 4)      # -2 log 256
    ([[0.5, 0.5]], -11.0904)
  """
  num_levels: int = 256

  def _bijector(self, x: Array, cond: Optional[Array]) -> distrax.Bijector:
    if self.num_levels < 2:
      raise ValueError(f"num_levels={self.num_levels}; expected >= 2")
    _check_rank(x, "x")
    base.check_cond(cond, None, x.shape[0])
    affine = distrax.ScalarAffine(shift=0.0, scale=1.0 / self.num_levels)
    return distrax.Block(affine, ndims=x.ndim - 1)

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    bijector = self._bijector(x, cond)
    _check_range(x, 0, self.num_levels, "x")
    y, logdet = bijector.forward_and_log_det(x)
    return y, jnp.broadcast_to(logdet, x.shape[:1])

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    x, logdet = self._bijector(y, cond).inverse_and_log_det(y)
    return x, jnp.broadcast_to(logdet, y.shape[:1])


class Logit(base.Bijector):
  """RealNVP's logit transform of [0, 1] data (Sec. 4.1).

  Forward:  p = alpha + (1 - 2 alpha) y,  z = logit(p) = log p - log(1 - p)
  log|det dz/dy| = sum_i log(1 - 2 alpha) - log p_i - log(1 - p_i)

  The inverse is ``y = (sigmoid(z) - alpha) / (1 - 2 alpha)``; both log-dets
  use distrax's `Sigmoid`, whose log-det is ``-softplus(-z) - softplus(z)``
  (= log sigmoid(z) + log sigmoid(-z)), finite for every float z. Forward
  checks that concrete inputs lie in [0, 1].

  Attributes:
    alpha: keeps p away from 0 and 1 (RealNVP uses 0.05).

  Example:
    >>> import jax.numpy as jnp
    >>> layer = Logit(alpha=0.05)
    >>> z, logdet = layer.apply({}, jnp.full((1, 1), 0.5), method="forward")
    >>> float(z[0, 0]), round(float(logdet[0]), 4)   # log(0.9 / 0.25)
    (0.0, 1.2809)
  """
  alpha: float = 0.05

  def _bijector(self, x: Array, cond: Optional[Array]) -> distrax.Bijector:
    if not 0 <= self.alpha < 0.5:
      raise ValueError(f"alpha={self.alpha}; expected 0 <= alpha < 0.5")
    _check_rank(x, "x")
    base.check_cond(cond, None, x.shape[0])
    # y -> p -> logit(p); distrax.Chain applies the last bijector first.
    squash = distrax.ScalarAffine(shift=self.alpha, scale=1 - 2 * self.alpha)
    logit = distrax.Inverse(distrax.Sigmoid())
    return distrax.Block(distrax.Chain([logit, squash]), ndims=x.ndim - 1)

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    bijector = self._bijector(x, cond)
    if not isinstance(x, jax.core.Tracer):
      values = np.asarray(x)
      if np.any(~((values >= 0) & (values <= 1))):
        raise ValueError(f"x holds values outside [0, 1] (min "
                         f"{np.nanmin(values)}, max {np.nanmax(values)}); "
                         "expected rescaled data in [0, 1]")
    return bijector.forward_and_log_det(x)

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._bijector(y, cond).inverse_and_log_det(y)


def image_stages(num_levels: Optional[int],
                 logit_alpha: float) -> Tuple[base.Bijector, ...]:
  """RealNVP's preprocessing of discrete data: Rescale, then Logit.

  Continuous data (`num_levels` None) gets no stages.

  Example:
    >>> [type(stage).__name__ for stage in image_stages(17, 0.05)]
    ['Rescale', 'Logit']
    >>> image_stages(None, 0.05)
    ()
  """
  if num_levels is None:
    return ()
  return (Rescale(num_levels=num_levels), Logit(alpha=logit_alpha))
