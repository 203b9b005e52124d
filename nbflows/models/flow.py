"""Flow models: preprocessing, transform, prior (paper 1, Sec. 2.1, eq. 5).

A flow model maps data x to a latent z = q(x) of the same shape through a
chain q = q_m o ... o q_1 and scores it by the change of variables (eq. 5):

  log p(x | cond) = log p_Z(q(x) | cond) + log|det dq/dx|

`FlowModel` does so in data units: `Rescale` -> `Logit` (when the data are
discrete) -> transform -> prior, with the hooks that the neighbourhood
models override: `transform_condition` (what the conditional layers see,
NCT, eq. 8) and `prior_log_prob` / `prior_sample` (the latent density, NCL,
eq. 7; CC-RNVP's label-conditioned Gaussian). The transforms are assembled
from `nbflows.bijectors` (`combinators.Chain`, `Repeat`, `Flattened`,
`alternating`; `multiscale.MultiScale`).
"""
from __future__ import annotations

from typing import Optional, Tuple

import flax.linen as nn
import jax
import ml_collections

from nbflows import config_fields
from nbflows.bijectors import base
from nbflows.bijectors import combinators
from nbflows.bijectors import context
from nbflows.bijectors import preprocessing
from nbflows.data import sources
from nbflows.distributions import gaussian
from nbflows.models import base as model_base

Array = jax.Array


class FlowModel(nn.Module):
  """A flow in data units: preprocessing, a transform and a latent prior.

    forward:  x -> Rescale(num_levels) -> Logit(logit_alpha) -> transform -> z
    log p(x | cond) = prior_log_prob(z, cond) + log|det dz/dx|     (eq. 5)
    sample:   z ~ prior_sample(...) -> inverse -> x

  With ``num_levels=None`` (continuous data such as the 2-D toy sets) there
  is no preprocessing. The preprocessing log-dets are part of log|det|, so
  ``-log_prob / (D ln 2)`` is bits per dimension of the discrete data.

  Hooks for subclasses (the neighbourhood models of paper 1):
    * `transform_condition(cond)`: what the transform's conditional layers
      receive; here `cond` itself for a conditional transform (a context
      vector, `nbflows.bijectors.context.ContextConditioned`) and None for
      an unconditional one. NCT (eq. 8) builds the transform with
      conditional couplings and returns one condition per scale.
    * `prior_log_prob(z, cond)` and `prior_sample(key, cond, n, T)`: the
      latent density; a standard normal here. NCL (eq. 7) returns a diagonal
      Gaussian whose mean and scale come from the transformed neighbourhood
      (it can call `self.forward` on the neighbours), CC-RNVP one computed
      from the label.

  Attributes:
    transform: the bijector after preprocessing; z has the shape of x.
    event_shape: shape of one example.
    num_levels: number of discrete levels of the data, or None.
    logit_alpha: RealNVP's alpha of the logit transform.
  """
  transform: nn.Module = None
  event_shape: Tuple[int, ...] = ()
  num_levels: Optional[int] = None
  logit_alpha: float = 0.05

  def setup(self):
    layers = preprocessing.image_stages(self.num_levels, self.logit_alpha)
    self.preprocessing = combinators.Chain(layers)

  def __call__(self, x: Array, cond: Optional[Array] = None) -> Array:
    return self.log_prob(x, cond)

  def transform_condition(self, cond: Optional[Array]):
    """What the transform receives: `cond` if it is conditional, else None."""
    return cond if base.is_conditional(self.transform) else None

  def prior_log_prob(self, z: Array, cond: Optional[Array]) -> Array:
    """log p_Z(z | cond), [B]: here the standard normal, log N(z; 0, I)."""
    del cond
    return gaussian.standard_normal_log_prob(z)

  def prior_sample(self, key: Array, cond: Optional[Array], num_samples: int,
                   temperature: float) -> Array:
    """z ~ p_Z(. | cond) with the scale multiplied by T: here N(0, T^2 I)."""
    del cond
    return gaussian.standard_normal_sample(
        key, (num_samples, *self.event_shape), temperature)

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    """Data units -> latent: (z [B, *event], log|det dz/dx| [B])."""
    base.check_event(x, self.event_shape)
    h, logdet = self.preprocessing.forward(x)
    z, transform_logdet = self.transform.forward(
        h, self.transform_condition(cond))
    return z, logdet + transform_logdet

  def inverse(self, z: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    """Latent -> data units: (x [B, *event], log|det dx/dz| [B])."""
    base.check_event(z, self.event_shape, "z")
    h, logdet = self.transform.inverse(z, self.transform_condition(cond))
    x, preprocessing_logdet = self.preprocessing.inverse(h)
    return x, logdet + preprocessing_logdet

  def log_prob(self, x: Array, cond: Optional[Array] = None) -> Array:
    """log p(x | cond) in nats, [B] (eq. 5; Alg. 1 of paper 1)."""
    z, logdet = self.forward(x, cond)
    return self.prior_log_prob(z, cond) + logdet

  def sample(self, key: Array, cond: Optional[Array], num_samples: int,
             temperature: float = 1.0) -> Array:
    """Draws [num_samples, *event] samples in data units (Alg. 2 of paper 1).

    z comes from `prior_sample` with its scale multiplied by `temperature`
    (0 gives the image of the prior's mode) and is mapped back by `inverse`.
    The inverse logit maps onto (-a, 1 - a) / (1 - 2a) times L (a the
    logit's alpha), a little wider than the data range [0, L): clip or
    floor the samples to get images.
    """
    z = self.prior_sample(key, cond, num_samples, temperature)
    x, _ = self.inverse(z, cond)
    return x


def image_dataset_info(config: ml_collections.ConfigDict
                       ) -> sources.DatasetInfo:
  """`config.dataset`'s description, checked to be images [H, W, C].

  Raises:
    ValueError: if the dataset is made of vectors, naming the model.
  """
  info = sources.dataset_info(config.dataset)
  if len(info.event_shape) != 3:
    raise ValueError(f"model {config.model!r} needs images; dataset "
                     f"{config.dataset!r} has event shape {info.event_shape} "
                     "(use 'rnvp_mlp' or 'maf' for vectors)")
  return info


def configured_context_dim(config: ml_collections.ConfigDict) -> int:
  """C of `config.context.dim` (0: no context), checked against the dataset.

  A config written before the field existed (an old workdir's config.json)
  has no context. A dataset with a context (`sources.DatasetInfo.context_dim`,
  e.g. "rotated_moons") may be modelled with it or without (C = 0); a model
  of a dataset without one may take contexts of any width C from its
  caller (`log_prob(params, x, c)`), but cannot be trained on the dataset's
  batches (`train.evaluation.evaluate.load_data` refuses it).

  Raises:
    ConfigError: for C < 0, or C > 0 that is not the width of the
      dataset's context.
  """
  section = config.get("context")
  dim = 0 if section is None else section.dim
  if not isinstance(dim, int) or dim < 0:
    raise config_fields.ConfigError(
        f"config.context.dim={dim!r}; expected an integer >= 0 (0: no "
        "context)")
  info = sources.dataset_info(config.dataset)
  if dim and info.context_dim and dim != info.context_dim:
    raise config_fields.ConfigError(
        f"config.context.dim={dim}, but dataset {config.dataset!r} gives a "
        f"context of width {info.context_dim}; expected 0 or "
        f"{info.context_dim}")
  return dim


def flow_model(config: ml_collections.ConfigDict, info: sources.DatasetInfo,
               transform: nn.Module) -> model_base.BijectiveModel:
  """A flow with a standard-normal prior, given a context if configured.

  With config.context.dim = C > 0 (`configured_context_dim`), `transform`
  must be built conditional; it is wrapped in `ContextConditioned` and the
  facade's condition is the batch's "context", [B, C] (condition_kind
  "context"). With C = 0 this is `unconditional_model`.
  """
  dim = configured_context_dim(config)
  if not dim:
    return unconditional_model(config, info, transform)
  model = _standard_normal_flow(
      config, info, context.ContextConditioned(transform=transform,
                                               context_dim=dim), "context")
  model.context_dim = dim
  return model


def unconditional_model(config: ml_collections.ConfigDict,
                        info: sources.DatasetInfo,
                        transform: nn.Module) -> model_base.BijectiveModel:
  """Wraps `transform` in a `FlowModel` with a standard-normal prior.

  The preprocessing follows the dataset (`info.num_levels`) and
  `config.flow.logit_alpha`; the facade is named `config.model`.
  """
  return _standard_normal_flow(config, info, transform, "none")


def _standard_normal_flow(config: ml_collections.ConfigDict,
                          info: sources.DatasetInfo, transform: nn.Module,
                          condition_kind: str) -> model_base.BijectiveModel:
  module = FlowModel(transform=transform, event_shape=info.event_shape,
                     num_levels=info.num_levels,
                     logit_alpha=config.flow.logit_alpha)
  return model_base.BijectiveModel(module, info.event_shape, condition_kind,
                                   name=config.model,
                                   num_classes=info.num_classes,
                                   num_levels=info.num_levels)
