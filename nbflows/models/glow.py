"""Glow-style multi-scale flow (Kingma & Dhariwal 2018, Sec. 3 and Fig. 2).

The "glow" model: data units -> Rescale -> Logit(alpha) -> per scale a
squeeze, K steps of

  ActNorm -> invertible 1x1 convolution (LU) -> affine coupling (channel mask)

and, on every scale but the last, half of the channels factored out. The
1x1 convolution learns the channel mixing that RealNVP gets from
alternating masks, so every coupling keeps the first half of the channels
(paper 1, Sec. 2.1: "learn a linear layer to better capture the correlations
along dimensions"). As for RealNVP, z has the shape of x (the factored-out
parts are put back through the inverse squeezes), the prior is a standard
normal, and ``conditional=True`` builds every coupling conditional.

Unlike RealNVP, a fresh Glow is not the identity: ActNorm is initialised
from the first batch (zero mean, unit variance per channel) and the 1x1
convolutions start as random rotations. With ``scan=True`` the K identical
steps of a scale are stacked with `nn.scan` (off by default, see
`combinators.Repeat`); ActNorm's data-dependent initialisation then still
sees each step's own input.
"""
from __future__ import annotations

from typing import Sequence

import ml_collections

from nbflows.bijectors import actnorm
from nbflows.bijectors import base as base_bijector
from nbflows.bijectors import combinators
from nbflows.bijectors import conv1x1
from nbflows.bijectors import coupling
from nbflows.bijectors import couplers
from nbflows.bijectors import multiscale
from nbflows.models import base
from nbflows.models import flow

def glow_step(hidden_channels: int, num_res_blocks: int,
              conditional: bool = False) -> combinators.Chain:
  """One step of flow: ActNorm -> Conv1x1 -> channel-mask affine coupling.

  Args:
    hidden_channels: width of the coupler's conv net.
    num_res_blocks: residual blocks of the coupler.
    conditional: whether the coupling takes `cond` (concatenated to its
      coupler's input, paper 1, eq. 8); ActNorm and Conv1x1 never do.

  Returns:
    A `combinators.Chain` of the three layers.
  """
  coupler = couplers.ConvCoupler(hidden=hidden_channels,
                                 num_blocks=num_res_blocks,
                                 cond_mode="concat" if conditional else None)
  return combinators.Chain((
      actnorm.ActNorm(), conv1x1.Conv1x1(),
      coupling.AffineCoupling(mask="channel", parity=0, coupler=coupler,
                              conditional=conditional)))


def multiscale_transform(event_shape: Sequence[int], num_scales: int,
                         steps_per_scale: int, hidden_channels: int,
                         num_res_blocks: int, conditional: bool = False,
                         scan: bool = False) -> multiscale.MultiScale:
  """Glow's multi-scale transform of [B, H, W, C] images.

  Args:
    event_shape: (H, W, C).
    num_scales: the number of scales L, 1 to
      `multiscale.max_num_scales(H, W, multiscale.GLOW_SCALES)`.
    steps_per_scale: K, the steps of flow per scale.
    hidden_channels: width of the couplers' conv nets.
    num_res_blocks: residual blocks per coupler.
    conditional: build every coupling conditional; each scale then needs a
      condition (see `multiscale.MultiScale`).
    scan: stack the K steps of a scale with `nn.scan`.

  Returns:
    A `multiscale.MultiScale` whose forward maps x to z of the same shape.

  Raises:
    ValueError: for a non-image event shape, too many scales or K < 1.
  """
  event_shape = tuple(event_shape)
  if len(event_shape) != 3:
    raise ValueError(f"event_shape={event_shape}; the Glow model needs "
                     "images (H, W, C)")
  rule = multiscale.GLOW_SCALES
  limit = multiscale.max_num_scales(*event_shape[:2], rule)
  if not 1 <= num_scales <= limit:
    raise ValueError(
        f"num_scales={num_scales}; {event_shape[0]}x{event_shape[1]} images "
        f"allow 1 to {limit} (every scale squeezes, down to "
        f"{rule.min_spatial_size}x{rule.min_spatial_size})")
  if steps_per_scale < 1:
    raise ValueError(f"steps_per_scale={steps_per_scale}; expected >= 1")

  def steps() -> base_bijector.Bijector:
    if scan:
      return combinators.Repeat(
          step=glow_step(hidden_channels, num_res_blocks, conditional),
          length=steps_per_scale)
    return combinators.Chain(tuple(
        glow_step(hidden_channels, num_res_blocks, conditional)
        for _ in range(steps_per_scale)))

  scale = None
  for _ in range(num_scales):
    scale = multiscale.MultiScale(squeeze=True, after=steps(), inner=scale)
  return scale


def build_glow(config: ml_collections.ConfigDict) -> base.BijectiveModel:
  """The "glow" model on `config.dataset`'s images.

  Uses config.flow.{num_scales, couplings_per_scale (K, steps per scale),
  hidden_channels, num_res_blocks, logit_alpha} and config.context.dim
  (> 0: every coupler takes the context, `flow.flow_model`).
  """
  info = flow.image_dataset_info(config)
  transform = multiscale_transform(
      info.event_shape, config.flow.num_scales,
      config.flow.couplings_per_scale, config.flow.hidden_channels,
      config.flow.num_res_blocks,
      conditional=flow.configured_context_dim(config) > 0)
  return flow.flow_model(config, info, transform)
