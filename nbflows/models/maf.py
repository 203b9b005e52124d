"""Masked autoregressive flow for vectors (Papamakarios et al. 2017).

The "maf" model: `num_layers` `MaskedAutoregressive` layers on [B, D] data
(images are flattened to D-vectors, and z reshaped back to the image shape),
the autoregressive order reversed from one layer to the next (MAF, Sec. 3:
"reverse the order of the variables between layers"), and a standard-normal
prior. Each layer's MADE output is zero-initialised, so a fresh MAF is the
identity. Continuous data (``num_levels=None``, e.g. the 2-D toy sets) get
no preprocessing; discrete vector data are rescaled and logit-transformed
as the image models do.

With ``scan=True`` consecutive layers are stacked in (forward, reversed)
pairs with `nn.scan`; it is off by default (see `combinators.Repeat`).

``config.flow.transformer="spline"`` gives the neural spline flow's
autoregressive layers (Durkan et al. 2019, Sec. 3.2: MADE outputs the
parameters of a rational-quadratic spline per dimension;
`flow_transformer`).
"""
from __future__ import annotations

from typing import Sequence

import ml_collections

from nbflows.bijectors import combinators
from nbflows.bijectors import made
from nbflows.data import sources
from nbflows.models import base
from nbflows.models import flow
from nbflows.models import flow_transformer

ORDERS = ("forward", "reversed")   # the order of layer 0, 1, 0, 1, ...


def maf_transform(num_layers: int, hidden: Sequence[int],
                  conditional: bool = False,
                  scan: bool = False,
                  transformer: flow_transformer.Transformer =
                  flow_transformer.AFFINE) -> combinators.Chain:
  """`num_layers` MAF layers with alternating forward / reversed orders.

  Args:
    num_layers: the number of MAF layers, >= 1.
    hidden: widths of each MADE's hidden layers.
    conditional: whether every layer takes a [B, F] `cond`.
    scan: stack (forward, reversed) pairs with `nn.scan`.
    transformer: affine (MAF) or spline (neural spline flow) layers.

  Returns:
    A `combinators.Chain` mapping [B, D] data to [B, D] noise.
  """

  def make(parity: int) -> made.MaskedAutoregressive:
    return transformer.autoregressive(hidden=tuple(hidden),
                                      order=ORDERS[parity],
                                      conditional=conditional)

  return combinators.alternating(num_layers, make, scan)


def build_maf(config: ml_collections.ConfigDict) -> base.BijectiveModel:
  """The "maf" model on `config.dataset`; images are modelled as D-vectors.

  Uses config.flow.{num_layers, mlp_hidden, logit_alpha, transformer,
  num_bins, spline_bound} and config.context.dim (> 0: every MADE takes the
  context, `flow.flow_model`).
  """
  info = sources.dataset_info(config.dataset)
  transform = combinators.Flattened(
      inner=maf_transform(config.flow.num_layers, config.flow.mlp_hidden,
                          conditional=flow.configured_context_dim(config) > 0,
                          transformer=flow_transformer.from_config(config)))
  return flow.flow_model(config, info, transform)
