"""RealNVP (Dinh et al. 2016), the base flow of paper 1 (Sec. 2.1, eq. 6).

Images ("rnvp"): data units -> Rescale -> Logit(alpha) -> multi-scale
transform. Each scale but the last applies `couplings_per_scale` affine
couplings with alternating checkerboard masks, a squeeze, as many couplings
with alternating channel masks, and factors out half of the channels; the
last scale applies 4 checkerboard couplings (Dinh et al. 2016, Sec. 4.1).
Couplers are `ConvCoupler`s (residual conv nets, zero-initialised output),
so after the preprocessing a fresh model is the identity.

Vectors ("rnvp_mlp"): `num_layers` couplings with alternating "half" masks
and MLP couplers on [B, D] data (images flattened to D-vectors), with no
preprocessing for continuous data (the benchmark's architecture,
``shared/bench/torch_realnvp.py --arch mlp``).

Both take ``conditional=True`` to build every coupling conditional (paper 1,
eq. 8: the condition is concatenated to the coupler's input, resized to its
spatial size); NCT subclasses `FlowModel` and supplies the condition of each
scale through `FlowModel.transform_condition`.

With ``scan=True`` consecutive couplings are stacked in pairs of opposite
parity with `nn.scan`; it is off by default (see `combinators.Repeat` for
why).

``config.flow.transformer="spline"`` makes every coupling of either model a
rational-quadratic spline coupling (`flow_transformer`; Durkan et al. 2019)
in place of the affine one, with the same masks and couplers.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import ml_collections

from nbflows.bijectors import combinators
from nbflows.bijectors import coupling
from nbflows.bijectors import couplers
from nbflows.bijectors import multiscale
from nbflows.data import sources
from nbflows.models import base
from nbflows.models import flow
from nbflows.models import flow_transformer

def coupling_stack(num_couplings: int, mask: str,
                   make_coupler: Callable[[int], nn.Module], conditional: bool,
                   scan: bool,
                   transformer: flow_transformer.Transformer =
                   flow_transformer.AFFINE) -> combinators.Chain:
  """`num_couplings` couplings with alternating parity 0, 1, 0, ...

  Args:
    num_couplings: the number of couplings, >= 1.
    mask: "checkerboard", "channel" or "half" (see `coupling.make_mask`).
    make_coupler: `make_coupler(outputs_per_channel)` returns a fresh
      coupler network for each coupling.
    conditional: whether every coupling takes `cond`.
    scan: stack pairs of opposite parity with `nn.scan`
      (`combinators.alternating`).
    transformer: affine (eq. 6) or spline couplings.

  Returns:
    A `combinators.Chain` of the couplings.
  """

  def make(parity: int) -> coupling.Coupling:
    return transformer.coupling(
        mask=mask, parity=parity,
        coupler=make_coupler(transformer.outputs_per_channel),
        conditional=conditional)

  return combinators.alternating(num_couplings, make, scan)


def multiscale_transform(event_shape: Sequence[int], num_scales: int,
                         couplings_per_scale: int, hidden_channels: int,
                         num_res_blocks: int, conditional: bool = False,
                         scan: bool = False,
                         last_scale_couplings: int = 4,
                         transformer: flow_transformer.Transformer =
                         flow_transformer.AFFINE) -> multiscale.MultiScale:
  """RealNVP's multi-scale transform of [B, H, W, C] images.

  Args:
    event_shape: (H, W, C).
    num_scales: the number of scales, 1 to
      `multiscale.max_num_scales(H, W, multiscale.REALNVP_SCALES)`.
    couplings_per_scale: checkerboard (and channel) couplings per scale.
    hidden_channels: width of the couplers' conv nets.
    num_res_blocks: residual blocks per coupler.
    conditional: build every coupling conditional (NCT, eq. 8); each scale
      then needs a condition (see `multiscale.MultiScale`).
    scan: stack pairs of couplings with `nn.scan`.
    last_scale_couplings: checkerboard couplings of the last scale (4 in
      Dinh et al. 2016, Sec. 4.1).
    transformer: affine (eq. 6) or spline couplings.

  Returns:
    A `multiscale.MultiScale` whose forward maps x to z of the same shape.

  Raises:
    ValueError: for a non-image event shape or too many scales.
  """
  event_shape = tuple(event_shape)
  if len(event_shape) != 3:
    raise ValueError(f"event_shape={event_shape}; the multi-scale RealNVP "
                     "needs images (H, W, C)")
  rule = multiscale.REALNVP_SCALES
  limit = multiscale.max_num_scales(*event_shape[:2], rule)
  if not 1 <= num_scales <= limit:
    raise ValueError(
        f"num_scales={num_scales}; {event_shape[0]}x{event_shape[1]} images "
        f"allow 1 to {limit} (each squeeze halves the size, down to "
        f"{rule.min_spatial_size}x{rule.min_spatial_size})")
  cond_mode = "concat" if conditional else None

  def make_coupler(outputs_per_channel: int) -> nn.Module:
    return couplers.ConvCoupler(hidden=hidden_channels,
                                num_blocks=num_res_blocks, cond_mode=cond_mode,
                                outputs_per_channel=outputs_per_channel)

  def stack(num: int, mask: str) -> combinators.Chain:
    return coupling_stack(num, mask, make_coupler, conditional, scan,
                          transformer)

  scale = multiscale.MultiScale(
      before=stack(last_scale_couplings, "checkerboard"))
  for _ in range(num_scales - 1):
    scale = multiscale.MultiScale(
        before=stack(couplings_per_scale, "checkerboard"), squeeze=True,
        after=stack(couplings_per_scale, "channel"), inner=scale)
  return scale


def vector_transform(num_layers: int, hidden: Sequence[int],
                     conditional: bool = False,
                     scan: bool = False,
                     transformer: flow_transformer.Transformer =
                     flow_transformer.AFFINE) -> combinators.Chain:
  """RealNVP with "half"-mask MLP couplings for [B, D] vectors.

  Args:
    num_layers: the number of couplings (alternating halves).
    hidden: widths of each coupler's hidden layers.
    conditional: build every coupling conditional.
    scan: stack pairs of couplings with `nn.scan`.
    transformer: affine (eq. 6) or spline couplings.

  Returns:
    A `combinators.Chain` of the couplings.
  """
  cond_mode = "concat" if conditional else None
  return coupling_stack(
      num_layers, "half",
      lambda outputs: couplers.MLPCoupler(hidden=tuple(hidden),
                                          cond_mode=cond_mode,
                                          outputs_per_channel=outputs),
      conditional, scan, transformer)


def build_rnvp(config: ml_collections.ConfigDict) -> base.BijectiveModel:
  """The "rnvp" model: multi-scale RealNVP on `config.dataset`'s images.

  Uses config.flow.{num_scales, couplings_per_scale, hidden_channels,
  num_res_blocks, logit_alpha, transformer, num_bins, spline_bound} and
  config.context.dim (> 0: every coupler takes the context, broadcast over
  space and concatenated, `flow.flow_model`).
  """
  info = flow.image_dataset_info(config)
  transform = multiscale_transform(
      info.event_shape, config.flow.num_scales,
      config.flow.couplings_per_scale, config.flow.hidden_channels,
      config.flow.num_res_blocks,
      conditional=flow.configured_context_dim(config) > 0,
      transformer=flow_transformer.from_config(config))
  return flow.flow_model(config, info, transform)


def build_rnvp_mlp(config: ml_collections.ConfigDict) -> base.BijectiveModel:
  """The "rnvp_mlp" model: RealNVP with MLP couplings on D-vectors.

  Images are flattened to D-vectors (z is reshaped back). Uses
  config.flow.{num_layers, mlp_hidden, logit_alpha, transformer, num_bins,
  spline_bound}; discrete data (`num_levels` set) are rescaled and
  logit-transformed first. With config.context.dim > 0 every coupler takes
  the context, concatenated to its input (`flow.flow_model`).
  """
  info = sources.dataset_info(config.dataset)
  transform = combinators.Flattened(
      inner=vector_transform(
          config.flow.num_layers, config.flow.mlp_hidden,
          conditional=flow.configured_context_dim(config) > 0,
          transformer=flow_transformer.from_config(config)))
  return flow.flow_model(config, info, transform)
