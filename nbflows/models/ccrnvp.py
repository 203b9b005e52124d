"""Class-conditioned RealNVP, CC-RNVP: paper 1's labelled baseline (Sec. 3).

The flow q is RealNVP's; the latent Gaussian depends on the label y:

  p(x | y) = N(q(x) | mu(y), diag(sigma(y)^2)) |det dq/dx|

with one dense layer from the one-hot label to a mean and a log-scale for
every latent dimension ("we do not share the class conditioned Gaussian over
spatial dimensions"). log sigma = s tanh(raw / s) is bounded by s =
`max_log_scale`. The dense layer is zero-initialised, so a fresh model is
RNVP. There is no classification loss (App. B.1). `forward` returns q(x), the
latent before the label's Gaussian, as for RNVP.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from configs import ccrnvp_digits
  >>> model = build_ccrnvp(ccrnvp_digits.get_config("quick"))
  >>> x, labels = jnp.full((2, 8, 8, 1), 8.5), jnp.array([3, 7])
  >>> params = model.init(jax.random.key(0), {"x": x, "label": labels})
  >>> model.log_prob(params, x, labels).shape
  (2,)
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nbflows.distributions import gaussian
from nbflows.models import base
from nbflows.models import flow
from nbflows.models import ncl
from nbflows.models import realnvp

Array = jax.Array


class ClassConditionedFlow(flow.FlowModel):
  """A `FlowModel` whose prior is a diagonal Gaussian chosen by the label.

  Attributes:
    num_classes: the number of labels; cond holds integers in [0, num_classes).
    max_log_scale: bound on |log sigma|.
  """
  num_classes: int = 10
  max_log_scale: float = 3.0

  def setup(self):
    super().setup()
    self.label_gaussian = nn.Dense(2 * math.prod(self.event_shape),
                                   kernel_init=nn.initializers.zeros)

  def label_statistics(self, labels: Array) -> Tuple[Array, Array]:
    """(mu(y), log sigma(y)), each [B, *event], from [B] integer labels."""
    if labels is None or labels.ndim != 1:
      raise ValueError(f"cond is {None if labels is None else labels.shape}; "
                       "expected integer labels of shape [batch]")
    raw = self.label_gaussian(jax.nn.one_hot(labels, self.num_classes))
    mean, raw_log_scale = jnp.split(raw, 2, axis=-1)
    s = self.max_log_scale
    shape = (labels.shape[0], *self.event_shape)
    return (mean.reshape(shape),
            (s * jnp.tanh(raw_log_scale / s)).reshape(shape))

  def prior_log_prob(self, z: Array, cond: Optional[Array]) -> Array:
    """log N(z; mu(y), diag(sigma(y)^2)), [B]."""
    mean, log_scale = self.label_statistics(cond)
    return gaussian.diagonal_normal_log_prob(z, mean, log_scale)

  def prior_sample(self, key: Array, cond: Optional[Array], num_samples: int,
                   temperature: float) -> Array:
    """z = mu(y) + T sigma(y) eps, one per label in `cond`."""
    mean, log_scale = self.label_statistics(cond)
    if mean.shape[0] != num_samples:
      raise ValueError(f"{mean.shape[0]} labels for {num_samples} samples; "
                       "expected one label per sample")
    return gaussian.diagonal_normal_sample(key, mean, log_scale, temperature)


class ClassConditionedModel(base.BijectiveModel):
  """The CC-RNVP facade: cond is [B] integer labels in [0, num_classes)."""

  def check_cond(self, cond: Optional[Array], batch: Optional[int]) -> None:
    """The facade's shape checks, and the labels' range when concrete."""
    super().check_cond(cond, batch)
    if isinstance(cond, jax.core.Tracer):
      return
    labels = np.asarray(cond)
    if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
      raise ValueError(f"cond holds labels from {labels.min()} to "
                       f"{labels.max()}; expected integers in [0, "
                       f"{self.num_classes})")


def build_ccrnvp(config: ml_collections.ConfigDict) -> ClassConditionedModel:
  """The "ccrnvp" model on a labelled image dataset.

  Uses config.flow.{num_scales, couplings_per_scale, hidden_channels,
  num_res_blocks, logit_alpha} and config.ccrnvp.max_log_scale.
  """
  info = ncl.image_info(config)
  if not info.num_classes:
    raise ValueError(f"model 'ccrnvp' needs class labels; dataset "
                     f"{config.dataset!r} has none")
  transform = realnvp.multiscale_transform(
      info.event_shape, config.flow.num_scales,
      config.flow.couplings_per_scale, config.flow.hidden_channels,
      config.flow.num_res_blocks)
  module = ClassConditionedFlow(
      transform=transform, event_shape=info.event_shape,
      num_levels=info.num_levels, logit_alpha=config.flow.logit_alpha,
      num_classes=info.num_classes,
      max_log_scale=config.ccrnvp.max_log_scale)
  return ClassConditionedModel(module, info.event_shape, "label", config.model,
                               info.num_classes, info.num_levels)
