"""A two-parameter-per-dimension flow for fast tests of the training code.

z = (x - shift) * exp(-log_scale), z ~ N(0, I): its maximum-likelihood
parameters are the data's mean and standard deviation, so a test can tell a
correct optimizer from a wrong one.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.models import base as model_base


class DiagonalAffineFlow(nn.Module):
  """A diagonal affine flow to a standard normal."""
  dim: int = 2

  def setup(self):
    self.shift = self.param("shift", nn.initializers.zeros, (self.dim,))
    self.log_scale = self.param("log_scale", nn.initializers.zeros, (self.dim,))

  def __call__(self, x, cond=None):
    return self.log_prob(x, cond)

  def forward(self, x, cond=None):
    z = (x - self.shift) * jnp.exp(-self.log_scale)
    return z, jnp.full(x.shape[:1], -jnp.sum(self.log_scale))

  def inverse(self, z, cond=None):
    x = z * jnp.exp(self.log_scale) + self.shift
    return x, jnp.full(z.shape[:1], jnp.sum(self.log_scale))

  def log_prob(self, x, cond=None):
    z, logdet = self.forward(x, cond)
    return jnp.sum(jax.scipy.stats.norm.logpdf(z), axis=-1) + logdet

  def sample(self, key, cond, num_samples, temperature=1.0):
    z = temperature * jax.random.normal(key, (num_samples, self.dim))
    return self.inverse(z, cond)[0]


def tiny_model(dim: int = 2) -> model_base.BijectiveModel:
  """The diagonal affine flow as a `BijectiveModel` ([B, dim] vectors)."""
  return model_base.BijectiveModel(DiagonalAffineFlow(dim), (dim,), name="diag")
