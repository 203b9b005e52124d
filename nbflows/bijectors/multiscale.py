"""RealNVP's multi-scale architecture (Dinh et al. 2016, Sec. 3.6).

Per scale a block, a squeeze, a second block, then half of the channels are
factored out and the rest goes to the next scale. The factored-out parts are
put back through the inverse squeezes, so z has the shape of x. RealNVP
squeezes on every scale but the last, Glow (Kingma & Dhariwal 2018, Fig. 2b)
on every scale; `max_num_scales` says how many scales an image allows under
each rule.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.bijectors import base
from nbflows.bijectors.squeeze import squeeze, unsqueeze

Array = jax.Array


class ScaleRule(NamedTuple):
  """Where a multi-scale flow squeezes and how small its blocks may work.

  Attributes:
    last_scale_squeezes: whether every scale squeezes (Glow) or every scale
      but the last (RealNVP).
    min_spatial_size: the smallest height and width a block may work on.
  """
  last_scale_squeezes: bool
  min_spatial_size: int


# RealNVP (Dinh et al. 2016, Sec. 4.1): the last scale does not squeeze, and
# no scale works on images smaller than 4 x 4.
REALNVP_SCALES = ScaleRule(last_scale_squeezes=False, min_spatial_size=4)
# Glow (Kingma & Dhariwal 2018, Fig. 2b): every scale squeezes, the last one
# down to 2 x 2 pixels.
GLOW_SCALES = ScaleRule(last_scale_squeezes=True, min_spatial_size=2)


def max_num_scales(height: int, width: int, rule: ScaleRule) -> int:
  """The most scales of a multi-scale flow an H x W image allows.

  A squeeze halves H and W, which needs both even. A flow of L scales
  squeezes L times if its last scale squeezes too (Glow) and L - 1 times
  otherwise (RealNVP); its blocks then work on images down to
  H / 2^squeezes, which may not be smaller than `rule.min_spatial_size` a
  side.

  Args:
    height: H of the images.
    width: W of the images.
    rule: the flow's `ScaleRule` (`REALNVP_SCALES` or `GLOW_SCALES`).

  Returns:
    The largest L; 0 if even one squeezing scale does not fit.

  Example:
    >>> [max_num_scales(s, s, REALNVP_SCALES) for s in (8, 28, 32)]
    [2, 3, 4]
    >>> [max_num_scales(s, s, GLOW_SCALES) for s in (8, 28, 32)]
    [2, 2, 4]
  """
  squeezes = 0
  while (height % 2 == 0 and width % 2 == 0 and
         min(height, width) // 2 >= rule.min_spatial_size):
    height, width, squeezes = height // 2, width // 2, squeezes + 1
  return squeezes if rule.last_scale_squeezes else squeezes + 1


class MultiScale(base.Bijector):
  """One scale of RealNVP's multi-scale architecture, and the scales inside.

  Forward on [B, H, W, C]:
    h = after(squeeze(before(x)))               (squeeze if `squeeze`)
    z_out, h = split(h) on channels             (only if `inner` is set)
    z_in = inner(h);  z = concat(z_out, z_in)
    z = unsqueeze(z)                            (if `squeeze`)
  so z has the shape of x: the factored-out half z_out skips the deeper
  scales and is put back where it came from. log|det| is the sum of the
  blocks' log-dets (squeeze and split are permutations).

  `cond` is a sequence with one entry per scale (`num_scales`), each an
  array or None; scale s passes entry s to its conditional blocks, so NCT
  can give each scale a condition of that scale's spatial size. None means
  no condition anywhere.

  Attributes:
    before: bijector applied before the squeeze (RealNVP: checkerboard
      couplings), or None.
    after: bijector applied after the squeeze (RealNVP: channel couplings;
      Glow: its steps), or None.
    squeeze: whether this scale squeezes [H, W, C] -> [H/2, W/2, 4C].
    inner: the next scale, fed the half of the channels that is not
      factored out; None for the last scale.
  """
  before: Optional[nn.Module] = None
  after: Optional[nn.Module] = None
  squeeze: bool = False
  inner: Optional["MultiScale"] = None

  @property
  def num_scales(self) -> int:
    return 1 + (0 if self.inner is None else self.inner.num_scales)

  @property
  def conditional(self) -> bool:
    return any(base.is_conditional(block) for block in
               (self.before, self.after, self.inner) if block is not None)

  def _split_cond(self, cond: Optional[Sequence[Optional[Array]]]):
    if cond is None:
      return None, None
    if len(cond) != self.num_scales:
      raise ValueError(f"cond has {len(cond)} entries; expected one per scale "
                       f"({self.num_scales})")
    return cond[0], (tuple(cond[1:]) if self.inner is not None else None)

  def _apply(self, block: Optional[nn.Module], method: str, x: Array,
             cond: Optional[Array]) -> Tuple[Array, Array]:
    if block is None:
      return x, base.zeros_logdet(x)
    block_cond = cond if base.is_conditional(block) else None
    return getattr(block, method)(x, block_cond)

  def forward(self, x: Array, cond: Optional[Sequence[Optional[Array]]] = None
              ) -> Tuple[Array, Array]:
    if x.ndim != 4:
      raise ValueError(f"x has shape {tuple(x.shape)}; expected [B, H, W, C]")
    here, deeper = self._split_cond(cond)
    h, logdet = self._apply(self.before, "forward", x, here)
    if self.squeeze:
      h = squeeze(h)
    h, after_logdet = self._apply(self.after, "forward", h, here)
    logdet = logdet + after_logdet
    if self.inner is not None:
      z_out, h = jnp.split(h, 2, axis=-1)
      h, inner_logdet = self.inner.forward(h, deeper)
      h = jnp.concatenate([z_out, h], axis=-1)
      logdet = logdet + inner_logdet
    if self.squeeze:
      h = unsqueeze(h)
    return h, logdet

  def inverse(self, z: Array, cond: Optional[Sequence[Optional[Array]]] = None
              ) -> Tuple[Array, Array]:
    if z.ndim != 4:
      raise ValueError(f"z has shape {tuple(z.shape)}; expected [B, H, W, C]")
    here, deeper = self._split_cond(cond)
    h = squeeze(z) if self.squeeze else z
    logdet = base.zeros_logdet(z)
    if self.inner is not None:
      z_out, h = jnp.split(h, 2, axis=-1)
      h, logdet = self.inner.inverse(h, deeper)
      h = jnp.concatenate([z_out, h], axis=-1)
    h, after_logdet = self._apply(self.after, "inverse", h, here)
    if self.squeeze:
      h = unsqueeze(h)
    x, before_logdet = self._apply(self.before, "inverse", h, here)
    return x, logdet + after_logdet + before_logdet
