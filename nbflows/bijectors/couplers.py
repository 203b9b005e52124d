"""Conditioner networks for coupling layers (the s and t of eq. 6, paper 1).

A coupler maps the kept half of the input, and optionally a condition, to
``2 * C`` raw outputs (shift and unbounded log-scale for every channel). Its
last layer is zero-initialised, so a fresh coupling layer is the identity.

Conditions enter in one of two ways (``cond_mode``):
  - ``"concat"``: an image condition ``[B, h, w, c]`` is resized to the input's
    spatial size and concatenated along channels (NCT, eq. 8: "we re-size the
    neighbours before concatenating them"); a vector condition ``[B, f]`` is
    broadcast over space and concatenated.
  - ``"project"``: the condition is flattened and projected by a dense layer
    to the hidden width, then added to the first hidden activation.
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
COND_MODES = (None, "concat", "project")


def _check_cond_mode(cond_mode):
  if cond_mode not in COND_MODES:
    raise ValueError(f"cond_mode={cond_mode!r}; expected one of {COND_MODES}")


def concat_condition(x: Array, cond: Array) -> Array:
  """Concatenates `cond` to `x` along the last axis, resizing images.

  Args:
    x: [B, H, W, C] image or [B, D] vector features.
    cond: [B, h, w, c] image (resized bilinearly to H x W) or [B, F] vector
      (broadcast over space for image `x`).

  Returns:
    [B, H, W, C + c'] or [B, D + F].
  """
  if x.ndim == 4:
    if cond.ndim == 4:
      if cond.shape[1:3] != x.shape[1:3]:
        cond = jax.image.resize(
            cond, (cond.shape[0], *x.shape[1:3], cond.shape[-1]), "linear")
    elif cond.ndim == 2:
      cond = jnp.broadcast_to(cond[:, None, None, :],
                              (*x.shape[:3], cond.shape[-1]))
    else:
      raise ValueError(f"cond has shape {cond.shape}; expected [B, h, w, c] "
                       "or [B, features] to condition an image coupler")
  else:
    cond = cond.reshape(cond.shape[0], -1)
  return jnp.concatenate([x, cond.astype(x.dtype)], axis=-1)


class ConvCoupler(nn.Module):
  """conv3x3 -> residual blocks (relu, conv3x3, relu, conv3x3) -> relu -> conv3x3.

  The architecture of ``../shared/bench/torch_realnvp.py --arch conv``, with
  the output convolution zero-initialised.
  """
  hidden: int = 32
  num_blocks: int = 2
  cond_mode: Optional[str] = None

  @nn.compact
  def __call__(self, x: Array, cond: Optional[Array] = None) -> Array:
    _check_cond_mode(self.cond_mode)
    out_channels = 2 * x.shape[-1]
    if self.cond_mode == "concat" and cond is not None:
      x = concat_condition(x, cond)
    h = nn.Conv(self.hidden, (3, 3), padding="SAME", name="input")(x)
    if self.cond_mode == "project" and cond is not None:
      h = h + nn.Dense(self.hidden, name="cond_projection")(
          cond.reshape(cond.shape[0], -1))[:, None, None, :]
    for i in range(self.num_blocks):
      r = nn.relu(h)
      r = nn.Conv(self.hidden, (3, 3), padding="SAME", name=f"block{i}_a")(r)
      r = nn.relu(r)
      r = nn.Conv(self.hidden, (3, 3), padding="SAME", name=f"block{i}_b")(r)
      h = h + r
    return nn.Conv(out_channels, (3, 3), padding="SAME",
                   kernel_init=nn.initializers.zeros, name="output")(nn.relu(h))


class MLPCoupler(nn.Module):
  """Dense layers with relu, last layer zero-initialised (bench ``--arch mlp``)."""
  hidden: Sequence[int] = (256, 256)
  cond_mode: Optional[str] = None

  @nn.compact
  def __call__(self, x: Array, cond: Optional[Array] = None) -> Array:
    _check_cond_mode(self.cond_mode)
    out_features = 2 * x.shape[-1]
    if self.cond_mode == "concat" and cond is not None:
      x = concat_condition(x, cond)
    h = x
    for i, width in enumerate(self.hidden):
      h = nn.Dense(width, name=f"dense{i}")(h)
      if i == 0 and self.cond_mode == "project" and cond is not None:
        h = h + nn.Dense(width, name="cond_projection")(
            cond.reshape(cond.shape[0], -1))
      h = nn.relu(h)
    return nn.Dense(out_features, kernel_init=nn.initializers.zeros,
                    name="output")(h)
