"""Neighbourhood conditioned transformations, NCT (paper 1, Sec. 2.2, eq. 8).

Every coupling layer's scale and shift also see the neighbourhood N (eq. 8),
so z = q_N(x) and z ~ N(0, I) (Alg. 1). The conditional flow q_N is the
bijector `nbflows.bijectors.nct.NCTTransform` around a multi-scale RealNVP
built with conditional couplings; `config.nct.condition` picks the form the
neighbourhood takes ("concat", NCT, for the k of `config.neighbours.k`, or
"pool", NCT-pool, any k). The flow and facade are NCL's
(`ncl.NeighbourhoodFlow`, `ncl.NeighbourhoodModel`).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from configs import nct_digits
  >>> model = build_nct(nct_digits.get_config("quick"))
  >>> model.num_neighbours          # eq. 8 concatenates config.neighbours.k
  5
  >>> x = jnp.full((2, 8, 8, 1), 8.5)
  >>> neighbours = jnp.full((2, 5, 8, 8, 1), 8.5)
  >>> params = model.init(jax.random.key(0), {"x": x, "neighbours": neighbours})
  >>> model.log_prob(params, x, neighbours).shape
  (2,)
"""
from __future__ import annotations

import ml_collections

from nbflows.bijectors import nct as nct_bijectors
from nbflows.models import flow
from nbflows.models import ncl
from nbflows.models import realnvp


def build_nct(config: ml_collections.ConfigDict) -> ncl.NeighbourhoodModel:
  """The "nct" model: multi-scale RealNVP with eq. 8 couplings.

  Uses config.flow.{num_scales, couplings_per_scale, hidden_channels,
  num_res_blocks, logit_alpha}, config.nct.condition ("concat": NCT, eq. 8,
  for the k of config.neighbours; "pool": NCT-pool, any k),
  config.contrastive and config.context.dim (> 0: every coupling also sees
  a context vector, broadcast over space).
  """
  info = ncl.image_info(config)
  num_neighbours = ncl.configured_num_neighbours(config, "nct.condition")
  context_dim = flow.configured_context_dim(config)
  transform = realnvp.multiscale_transform(
      info.event_shape, config.flow.num_scales,
      config.flow.couplings_per_scale, config.flow.hidden_channels,
      config.flow.num_res_blocks, conditional=True)
  module = ncl.NeighbourhoodFlow(
      transform=nct_bijectors.NCTTransform(transform=transform,
                                           condition=config.nct.condition,
                                           num_neighbours=num_neighbours,
                                           context_dim=context_dim),
      event_shape=info.event_shape, num_levels=info.num_levels,
      logit_alpha=config.flow.logit_alpha)
  return ncl.NeighbourhoodModel(module, info.event_shape, config.model,
                                info.num_levels, info.num_classes,
                                ncl.contrastive_settings(config),
                                num_neighbours, context_dim)
