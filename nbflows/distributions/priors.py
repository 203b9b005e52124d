"""The VAE family's priors p(z) over d-dimensional codes (paper 3, Table 9).

Each prior has ``log_prob(z)`` (z [..., B, d] -> [..., B], leading sample
axes broadcast) and ``sample(key, num, temperature)`` (-> [num, d]); a
temperature T scales the standard deviation of the prior or, for a mixture,
of each component. They hold arrays, not parameters: the
`nbflows.models.vae.VAE` module keeps the VampPrior's pseudo-inputs and the
exemplar prior's log sigma^2 where its parameter tree always had them, and
the facades build the prior from `params` for each call.

  StandardNormalPrior   p(z) = N(z; 0, I)
  VampPrior             p(z) = 1/K sum_k q(z | u_k)      (Tomczak & Welling)
  ExemplarPrior         r(z | X) = 1/M sum_j N(z; mu(x_j), sigma^2 I)
                        (paper 3, eq. 10, 12, 14; leave-one-out, eq. 4)

Example:
  >>> import jax, jax.numpy as jnp
  >>> prior = StandardNormalPrior(latent_dim=2)
  >>> prior.sample(jax.random.key(0), 3).shape
  (3, 2)
  >>> round(float(prior.log_prob(jnp.zeros((1, 2)))[0]), 4)
  -1.8379
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp

from nbflows.distributions import exemplar_prior
from nbflows.distributions import gaussian

Array = jax.Array
Encoder = Callable[[Array], Tuple[Array, Array]]


class StandardNormalPrior:
  """p(z) = N(z; 0, I) over d dimensions (paper 3's Gaussian baseline)."""

  def __init__(self, latent_dim: int):
    self.latent_dim = latent_dim

  def log_prob(self, z: Array) -> Array:
    """log N(z; 0, I), [..., B, d] -> [..., B]."""
    return gaussian.standard_normal_log_prob(z, event_ndims=1)

  def sample(self, key: Array, num: int, temperature: float = 1.0) -> Array:
    """z ~ N(0, T^2 I), [num, d]."""
    return temperature * jax.random.normal(key, (num, self.latent_dim))


class VampPrior:
  """p(z) = 1/K sum_k N(z; mu(u_k), diag Lambda(u_k)) (Tomczak & Welling).

  Args:
    pseudo_inputs: [K, *event] the pseudo-inputs u_k in [0, 1].
    encode: the VAE's encoder, inputs [n, *event] -> (mu, log Lambda) [n, d].
  """

  def __init__(self, pseudo_inputs: Array, encode: Encoder):
    self.pseudo_inputs = pseudo_inputs
    self.encode = encode

  def log_prob(self, z: Array) -> Array:
    """log 1/K sum_k q(z | u_k), [..., B, d] -> [..., B]."""
    means, log_variances = self.encode(self.pseudo_inputs)     # [K, d] each
    log_probs = gaussian.diagonal_gaussian_log_prob(
        z[..., None, :], means, log_variances)                  # [..., B, K]
    return (jax.nn.logsumexp(log_probs, axis=-1)
            - math.log(self.pseudo_inputs.shape[0]))

  def sample(self, key: Array, num: int, temperature: float = 1.0) -> Array:
    """A uniform pseudo-input u_k, then z ~ N(mu(u_k), T^2 Lambda(u_k))."""
    component_key, noise_key = jax.random.split(key)
    k = jax.random.randint(component_key, (num,), 0,
                           self.pseudo_inputs.shape[0])
    mean, log_variance = self.encode(self.pseudo_inputs[k])
    return mean + temperature * jnp.exp(0.5 * log_variance) * (
        jax.random.normal(noise_key, mean.shape))


class ExemplarPrior:
  """r(z | X) = 1/M sum_j N(z; mu(x_j), sigma^2 I) (paper 3, eq. 10, 14).

  Args:
    means: [M, d] the exemplars' latent means mu(x_j) (eq. 12).
    log_variance: the shared scalar log sigma^2 (eq. 12).
    mask: optional boolean [B, M]; False drops exemplar j from row b's
      mixture (leave-one-out, eq. 4), which stays normalised over the rest.
  """

  def __init__(self, means: Array, log_variance: Array,
               mask: Optional[Array] = None):
    self.means = means
    self.log_variance = log_variance
    self.mask = mask

  def log_prob(self, z: Array) -> Array:
    """log r(z | X) of eq. 14, [..., B, d] -> [..., B]."""
    return exemplar_prior.log_density(z, self.means, self.log_variance,
                                      self.mask)

  def sample(self, key: Array, num: int, temperature: float = 1.0) -> Array:
    """A uniform exemplar x_n, then z ~ N(mu(x_n), T^2 sigma^2 I)."""
    index_key, noise_key = jax.random.split(key)
    indices = jax.random.randint(index_key, (num,), 0, self.means.shape[0])
    return perturb(noise_key, self.means[indices], self.log_variance,
                   temperature)


def perturb(key: Array, means: Array, log_variance: Array,
            temperature: float = 1.0) -> Array:
  """means + T sigma eps, eps ~ N(0, I): one draw around each mean (eq. 12).

  The exemplar prior's component around each given mean; with the means of
  new images it is paper 3's "more like this" generation (Fig. 3).
  """
  sigma = jnp.exp(0.5 * log_variance)
  return means + temperature * sigma * jax.random.normal(key, means.shape)
