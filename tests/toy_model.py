"""A new model in one module: a diagonal Gaussian density on vectors.

  log p(x) = sum_d log N(x_d; mu_d, exp(log_sigma_d)^2)

Its Flax module provides what `nbflows.models.base.DensityModel` calls
(`log_prob`, `sample`, `__call__`), so the model class itself adds nothing:
`build_toy_gaussian` is its builder, and one line in
`nbflows.models.registry.BUILDERS` (here monkeypatched by the test) makes
`config.model = "toy_gaussian"` train, evaluate and load like any model.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from nbflows.data import sources
from nbflows.distributions import gaussian
from nbflows.models import base


class DiagonalGaussian(nn.Module):
  """N(mu, diag sigma^2) on [B, dim] vectors; params "mean", "log_scale"."""
  dim: int = 2

  def setup(self):
    self.mean = self.param("mean", nn.initializers.zeros, (self.dim,))
    self.log_scale = self.param("log_scale", nn.initializers.zeros,
                                (self.dim,))

  def __call__(self, x, cond=None):
    return self.log_prob(x, cond)

  def log_prob(self, x, cond=None):
    """[B] nats: log N((x - mu) / sigma; 0, I) - sum log sigma."""
    del cond  # unconditional
    z = (x - self.mean) * jnp.exp(-self.log_scale)
    return gaussian.standard_normal_log_prob(z) - jnp.sum(self.log_scale)

  def sample(self, key, cond, num_samples, temperature=1.0):
    del cond  # unconditional
    z = temperature * jax.random.normal(key, (num_samples, self.dim))
    return self.mean + jnp.exp(self.log_scale) * z


def build_toy_gaussian(config: ml_collections.ConfigDict
                       ) -> base.DensityModel:
  """The diagonal Gaussian of `config.dataset`'s vectors."""
  info = sources.dataset_info(config.dataset)
  if len(info.event_shape) != 1:
    raise ValueError(f"model {config.model!r} needs vectors [D]; dataset "
                     f"{config.dataset!r} has event shape {info.event_shape}")
  return base.DensityModel(DiagonalGaussian(info.event_shape[0]),
                           info.event_shape, name=config.model,
                           num_levels=info.num_levels)
