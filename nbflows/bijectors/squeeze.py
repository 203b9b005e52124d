"""Squeeze: 2x2 space-to-channel (RealNVP, Dinh et al. 2016, Sec. 3.6).

  [B, H, W, C] -> [B, H/2, W/2, 4C]

Each 2x2 block of pixels becomes one pixel with four times the channels; the
output channel of input pixel (2i + a, 2j + b, c) is ``(2a + b) * C + c``, the
ordering of `tf.nn.space_to_depth`. A squeeze only permutes values, so its
log-det is 0.
"""
from __future__ import annotations

from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from nbflows.bijectors import base

Array = jax.Array


def squeeze(x: Array) -> Array:
  """[B, H, W, C] -> [B, H/2, W/2, 4C], 2x2 space-to-channel.

  Args:
    x: images [B, H, W, C] with even H and W.

  Returns:
    The squeezed images [B, H/2, W/2, 4C].

  Raises:
    ValueError: if `x` is not of rank 4 or H or W is odd.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.arange(16.).reshape(1, 4, 4, 1)
    >>> squeeze(x).shape
    (1, 2, 2, 4)
    >>> squeeze(x)[0, 0, 0].tolist()     # the top-left 2x2 block
    [0.0, 1.0, 4.0, 5.0]
  """
  if x.ndim != 4:
    raise ValueError(f"x has shape {tuple(x.shape)}; expected [B, H, W, C] "
                     "images to squeeze")
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"x has spatial size {h}x{w}; squeezing needs even "
                     "height and width")
  x = x.reshape(b, h // 2, 2, w // 2, 2, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, H/2, W/2, 2, 2, C]
  return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(y: Array) -> Array:
  """[B, H, W, 4C] -> [B, 2H, 2W, C], the inverse of `squeeze`.

  Args:
    y: squeezed images [B, H, W, 4C].

  Returns:
    The images [B, 2H, 2W, C].

  Raises:
    ValueError: if `y` is not of rank 4 or its channels are not a multiple
      of 4.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.arange(16.).reshape(1, 4, 4, 1)
    >>> bool(jnp.all(unsqueeze(squeeze(x)) == x))
    True
  """
  if y.ndim != 4:
    raise ValueError(f"y has shape {tuple(y.shape)}; expected [B, H, W, 4C] "
                     "images to unsqueeze")
  b, h, w, c4 = y.shape
  if c4 % 4:
    raise ValueError(f"y has {c4} channels; unsqueezing needs a multiple of 4")
  c = c4 // 4
  y = y.reshape(b, h, w, 2, 2, c)
  y = y.transpose(0, 1, 3, 2, 4, 5)  # [B, H, 2, W, 2, C]
  return y.reshape(b, 2 * h, 2 * w, c)


class Squeeze(base.Bijector):
  """The squeeze as a bijector: forward `squeeze`, inverse `unsqueeze`.

  log|det| = 0 both ways. Unconditional: passing `cond` is an error.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> layer = Squeeze()
    >>> x = jnp.ones((2, 4, 4, 3))
    >>> y, logdet = layer.apply({}, x, method="forward")
    >>> y.shape, logdet.tolist()
    ((2, 2, 2, 12), [0.0, 0.0])
  """

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    base.check_cond(cond, None, x.shape[0])
    return squeeze(x), jnp.zeros(x.shape[:1], x.dtype)

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    base.check_cond(cond, None, y.shape[0])
    return unsqueeze(y), jnp.zeros(y.shape[:1], y.dtype)
