"""Neighbourhood conditioned likelihood, NCL (paper 1, Sec. 2.2, eq. 7 and 9).

A neighbourhood flow models p(x | N) for a target x and a set N of k training
images (eq. 4's conditional). NCL keeps the flow q unconditional and moves the
latent Gaussian with the neighbourhood (eq. 7):

  p_Z(q(x) | N) = N(q(x) | g_mu(q(N)), diag(g_sigma(q(N))^2))

where the neighbours pass through the same flow q as the target (shared
parameters, Fig. 2b). Written as one more bijector after q (eq. 9),

  z = (q(x) - g_mu(q(N))) / g_sigma(q(N)),   z ~ N(0, I)
  log p(x | N) = log N(z; 0, I) + log|det dq/dx| - sum log g_sigma

which is Alg. 1: `forward` maps x to the standardised z and the prior is the
standard normal. Sampling (Alg. 2) inverts it from z ~ N(0, T^2 I).

The transform, q followed by eq. 9, is the bijector
`nbflows.bijectors.ncl.NCLTransform`; its head `NeighbourhoodAffine` computes
g_mu and g_sigma as in App. B.1 from the neighbourhood in the form
`config.ncl.statistics` ("concat", the paper's, for the k of
`config.neighbours.k`, or "pool", NCL-pool, any k).

This module also holds what NCL and NCT (`nbflows.models.nct`) share:
`NeighbourhoodFlow` (preprocesses the neighbours like x and hands them to a
transform that is a conditional bijector of x given N), the
`NeighbourhoodModel` (condition_kind "neighbours", the k of the
concatenating forms checked, contrastive training of eq. 10 when enabled); the forms of taking the
neighbourhood (`FORMS`) live in `nbflows.bijectors.neighbourhood`.

Both also take a context vector c [B, C] with the neighbours when
config.context.dim = C > 0: cond is then {"neighbours": N, "context": c}
(batch["neighbours"] and batch["context"]); NCL's g_mu and g_sigma see c
(`nbflows.bijectors.ncl`), NCT's couplings do (`nbflows.bijectors.nct`).
No image dataset has contexts, so such a model takes its caller's
contexts (`log_prob`, `sample`) and is not trained by `train.main`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from configs import ncl_digits
  >>> model = build_ncl(ncl_digits.get_config("quick"))
  >>> x = jnp.full((2, 8, 8, 1), 8.5)
  >>> neighbours = jnp.full((2, 5, 8, 8, 1), 8.5)
  >>> params = model.init(jax.random.key(0), {"x": x, "neighbours": neighbours})
  >>> model.log_prob(params, x, neighbours).shape
  (2,)
"""
from __future__ import annotations

import functools
from typing import Dict, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from nbflows import units
from nbflows.bijectors import base as bijector_base
from nbflows.bijectors import ncl as ncl_bijectors
from nbflows.bijectors import neighbourhood
from nbflows.bijectors.neighbourhood import (FORMS, check_neighbourhood,
                                             flatten_neighbours)
from nbflows.data import sources
from nbflows.models import base
from nbflows.models import flow
from nbflows.models import realnvp
from nbflows.neighbours import index as index_lib
from nbflows.objectives import contrastive

Array = jax.Array
Params = base.Params


def latents_and_logdet(module: "NeighbourhoodFlow", x: Array
                       ) -> Tuple[Array, Array]:
  """(q(x), log|det d q(x) / dx|) of an NCL flow, preprocessing included.

  For ``module.apply(params, x, method=latents_and_logdet)``: then
  log p(x | N) = log N(q(x); g_mu, g_sigma^2) + this log-det (eq. 7), for
  any N.
  """
  h, logdet = module.preprocessing.forward(x)
  z, q_logdet = module.transform.latents(h)
  return z, logdet + q_logdet


def statistics_of_latents(module: "NeighbourhoodFlow", latents: Array
                          ) -> Tuple[Array, Array]:
  """(g_mu, log g_sigma) [B, *event] of an NCL flow from q(N) [B, k, *event].

  For ``module.apply(params, latents, method=statistics_of_latents)``.
  """
  return module.transform.head.statistics(latents)


# ------------------------------------- shared by the neighbourhood flows
class NeighbourhoodFlow(flow.FlowModel):
  """A `FlowModel` whose transform is a conditional bijector of x given N.

  The neighbours [B, k, *event] arrive in data units, like x, and go through
  the same preprocessing (rescale, logit) before the transform sees them
  (`transform_condition`); a context c, in {"neighbours": N, "context": c},
  passes unchanged. The prior is the standard normal (Alg. 1). The
  transform must offer `forward_targets` (P targets per neighbourhood), used
  by `targets_log_prob` for contrastive training.
  """

  def transform_condition(self, cond):
    """The neighbourhood in the transform's input space, [B, k, *event]
    (with the context beside it when cond has one)."""
    if cond is None:
      raise ValueError("cond is missing; a neighbourhood flow needs "
                       "neighbourhoods of shape [batch, k, "
                       f"{', '.join(str(d) for d in self.event_shape)}]")
    if isinstance(cond, Mapping):      # {"neighbours": N, "context": c}
      if neighbourhood.NEIGHBOURS not in cond:
        return cond          # the transform's check names what is missing
      return {**cond, neighbourhood.NEIGHBOURS: self.transform_condition(
          cond[neighbourhood.NEIGHBOURS])}
    check_neighbourhood(cond, self.event_shape, cond.shape[0])
    h, _ = self.preprocessing.forward(flatten_neighbours(cond))
    return h.reshape(cond.shape)

  def targets_log_prob(self, targets: Array, cond: Array) -> Array:
    """log p(x_p | N) for P targets per neighbourhood: [P, B, *event] -> [P, B].

    Used for eq. 10, where every neighbourhood scores its own example and a
    negative; the neighbourhood is processed once.
    """
    num, batch = targets.shape[:2]
    bijector_base.check_event(targets[0], self.event_shape, "targets[p]")
    h, logdet = self.preprocessing.forward(
        targets.reshape(num * batch, *self.event_shape))
    z, transform_logdet = self.transform.forward_targets(
        h.reshape(targets.shape), self.transform_condition(cond))
    log_prior = self.prior_log_prob(z.reshape(h.shape), None)
    return (log_prior + logdet).reshape(num, batch) + transform_logdet


class NeighbourhoodModel(base.BijectiveModel):
  """The flow of NCT (and NCL's base): cond is a neighbourhood [B, k, *event],
  or {"neighbours": N, "context": c [B, C]} with a context (`context_dim`).

  With `contrastive` set, `loss` is eq. 10 (see
  `nbflows.objectives.contrastive`): the batch rolled by a random shift
  gives each neighbourhood a negative, and both are scored in one pass.

  Attributes:
    contrastive: the margin and weight of eq. 10, or None for the plain
      conditional likelihood.
    num_neighbours: the k the model takes (its neighbours are concatenated,
      as in the paper), or None for any k (the -pool variants).
    context_dim: C of a context vector taken with the neighbours, or None.
  """

  def __init__(self, module: NeighbourhoodFlow, event_shape: Sequence[int],
               name: str, num_levels: Optional[int],
               num_classes: Optional[int] = None,
               contrastive_settings: Optional[
                   contrastive.ContrastiveSettings] = None,
               num_neighbours: Optional[int] = None,
               context_dim: int = 0):
    super().__init__(module, event_shape, condition_kind="neighbours",
                     name=name, num_classes=num_classes,
                     num_levels=num_levels)
    self.contrastive = (None if contrastive_settings is None
                        else contrastive_settings.validate())
    self.num_neighbours = num_neighbours
    self.context_dim = context_dim or None

  def check_cond(self, cond, batch: Optional[int]) -> None:
    """`TrainableModel.check_cond`, and k = `num_neighbours` where fixed;
    with a context, both parts of the dict
    (`neighbourhood.split_condition`)."""
    if not self.context_dim and not isinstance(cond, Mapping):
      super().check_cond(cond, batch)
      check_neighbourhood(cond, self.event_shape, cond.shape[0],
                          num_neighbours=self.num_neighbours)
      return
    if cond is None:
      raise ValueError(f"model {self.name!r} needs cond: "
                       f"{self._cond_description(batch)}")
    neighbours = (cond.get(neighbourhood.NEIGHBOURS)
                  if isinstance(cond, Mapping) else None)
    if batch is None and hasattr(neighbours, "shape"):
      batch = neighbours.shape[0]
    neighbourhood.split_condition(
        cond, self.event_shape, "batch" if batch is None else batch,
        self.num_neighbours, self.context_dim or 0)

  def _cond_description(self, batch: Optional[int]) -> str:
    return neighbourhood.condition_description(
        self.event_shape, "batch" if batch is None else batch,
        self.num_neighbours, self.context_dim or 0)

  def loss(self, params: Params, batch: Mapping[str, Array],
           key: Array) -> Tuple[Array, Dict[str, Array]]:
    """Mean bits/dim of x given N(x), plus eq. 10's hinge when contrastive."""
    if self.contrastive is None:
      return super().loss(params, batch, key)
    x, cond = batch["x"], self.condition(batch)
    targets = jnp.stack([x, contrastive.roll_negatives(key, x)])
    log_prob = self.module.apply(params, targets, cond,
                                 method="targets_log_prob")
    bpd = units.bits_per_dim(log_prob, self.num_dims)
    return contrastive.contrastive_loss(bpd[0], bpd[1],
                                        self.contrastive.margin_bpd,
                                        self.contrastive.weight)


class NCLModel(NeighbourhoodModel):
  """NCL: a `NeighbourhoodModel` whose latent Gaussian moves with N (eq. 7).

  Offers `protocols.LatentGaussians`: q does not depend on N, so
  log p(x | N) = log N(q(x); g_mu(q(N)), g_sigma(q(N))^2) + log|det dq/dx|
  splits into one flow pass per point and one head pass per neighbourhood
  (`nbflows.marginal`'s exact route).
  """

  def latents_and_logdet(self, params: Params, x: Array
                         ) -> Tuple[Array, Array]:
    """(q(x) [B, *event], log|det dq/dx| [B]) of x in data units (jitted)."""
    return self._latents(params, x)

  def neighbourhood_gaussians(self, params: Params, latents: Array
                              ) -> Tuple[Array, Array]:
    """(g_mu, log g_sigma) [B, *event] of q(N) [B, k, *event] (jitted)."""
    return self._statistics(params, latents)

  @functools.cached_property
  def _latents(self):
    return jax.jit(lambda p, x: self.module.apply(
        p, x, method=latents_and_logdet))

  @functools.cached_property
  def _statistics(self):
    return jax.jit(lambda p, latents: self.module.apply(
        p, latents, method=statistics_of_latents))


def contrastive_settings(config: ml_collections.ConfigDict
                         ) -> Optional[contrastive.ContrastiveSettings]:
  """config.contrastive as `ContrastiveSettings`, None when not enabled."""
  if not config.contrastive.enabled:
    return None
  return contrastive.ContrastiveSettings(config.contrastive.margin_bpd,
                                         config.contrastive.weight)


def configured_num_neighbours(config: ml_collections.ConfigDict,
                              field: str) -> Optional[int]:
  """The k a model built with form `config.<field>` takes; None for "pool".

  The concatenating form takes the neighbour index's k (config.neighbours.k,
  or num_prototypes for k-means neighbourhoods), nearest first.

  Args:
    config: the run's config.
    field: "ncl.statistics" or "nct.condition".

  Raises:
    ValueError: for a form outside `FORMS`, or "concat" with
      config.neighbours.train_subset_k (a random subset in random order).
  """
  group, name = field.split(".")
  form = config[group][name]
  if form not in FORMS:
    raise ValueError(f"config.{field}={form!r}; expected one of {FORMS}")
  if form == "pool":
    return None
  subset = config.neighbours.train_subset_k
  if subset:
    raise ValueError(
        f"config.neighbours.train_subset_k={subset} with config.{field}="
        "'concat'; expected 0: concatenation takes all k neighbours in order "
        f"of distance, in training as in evaluation (or {field}='pool', the "
        "pooled variant, which takes any k)")
  return index_lib.neighbourhood_size(config.neighbours)


def image_info(config: ml_collections.ConfigDict) -> sources.DatasetInfo:
  """`config.dataset`'s info; raises ValueError unless it holds images."""
  info = sources.dataset_info(config.dataset)
  if len(info.event_shape) != 3:
    raise ValueError(f"model {config.model!r} needs images; dataset "
                     f"{config.dataset!r} has event shape {info.event_shape}")
  return info


def build_ncl(config: ml_collections.ConfigDict) -> NCLModel:
  """The "ncl" model: multi-scale RealNVP q with the eq. 9 head.

  Uses config.flow.{num_scales, couplings_per_scale, hidden_channels,
  num_res_blocks, logit_alpha}, config.ncl.{hidden_channels,
  max_log_scale, statistics} (statistics "concat": NCL, App. B.1, for the
  k of config.neighbours; "pool": NCL-pool, any k), config.contrastive and
  config.context.dim (> 0: g_mu and g_sigma also see a context vector).
  """
  info = image_info(config)
  num_neighbours = configured_num_neighbours(config, "ncl.statistics")
  context_dim = flow.configured_context_dim(config)
  q = realnvp.multiscale_transform(
      info.event_shape, config.flow.num_scales,
      config.flow.couplings_per_scale, config.flow.hidden_channels,
      config.flow.num_res_blocks)
  head = ncl_bijectors.NeighbourhoodAffine(
      hidden=config.ncl.hidden_channels,
      max_log_scale=config.ncl.max_log_scale, form=config.ncl.statistics,
      num_neighbours=num_neighbours, context_dim=context_dim)
  module = NeighbourhoodFlow(
      transform=ncl_bijectors.NCLTransform(transform=q, head=head),
      event_shape=info.event_shape, num_levels=info.num_levels,
      logit_alpha=config.flow.logit_alpha)
  return NCLModel(module, info.event_shape, config.model, info.num_levels,
                  info.num_classes, contrastive_settings(config),
                  num_neighbours, context_dim)
