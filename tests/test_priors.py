"""Tests of the VAE family's priors: each log_prob is a normalised density."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from nbflows.distributions import priors

GRID = jnp.linspace(-10.0, 10.0, 801)
STEP = float(GRID[1] - GRID[0])


def grid_2d():
  zs = jnp.stack(jnp.meshgrid(GRID, GRID, indexing="ij"), -1)  # [G, G, 2]
  return zs.reshape(-1, 1, 2)                                   # [G^2, 1, 2]


def integral(log_prob):
  """Riemann sum of exp(log p) over the 2-D grid, per batch row."""
  return np.asarray(jnp.sum(jnp.exp(log_prob), axis=0)) * STEP ** 2


def toy_encoder(inputs):
  """[n, 2] inputs -> mean = 2 u - 1, log variance = u - 1 (a fixed map)."""
  return 2.0 * inputs - 1.0, inputs - 1.0


def test_standard_normal_prior_integrates_to_one_and_matches_scipy():
  prior = priors.StandardNormalPrior(latent_dim=2)
  np.testing.assert_allclose(integral(prior.log_prob(grid_2d())), 1.0,
                             rtol=1e-4)
  z = jnp.array([[0.3, -1.2]])
  np.testing.assert_allclose(
      prior.log_prob(z), stats.multivariate_normal.logpdf(z[0], np.zeros(2)),
      rtol=1e-6)


def test_vampprior_is_a_normalised_mixture_of_encoded_pseudo_inputs():
  pseudo = jnp.array([[0.1, 0.9], [0.5, 0.5], [0.8, 0.2]])
  prior = priors.VampPrior(pseudo, toy_encoder)
  np.testing.assert_allclose(integral(prior.log_prob(grid_2d())), 1.0,
                             rtol=1e-4)
  z = np.array([0.2, -0.4])
  means, log_vars = map(np.asarray, toy_encoder(pseudo))
  expected = math.log(np.mean([stats.multivariate_normal.pdf(
      z, means[k], np.diag(np.exp(log_vars[k]))) for k in range(3)]))
  np.testing.assert_allclose(prior.log_prob(jnp.asarray([z], jnp.float32)),
                             [expected], rtol=1e-5)


def test_exemplar_prior_normalises_with_and_without_leave_one_out():
  means = jnp.array([[0.0, 0.0], [2.0, -1.0], [-1.0, 3.0]])
  log_variance = jnp.asarray(math.log(0.7))
  full = priors.ExemplarPrior(means, log_variance)
  np.testing.assert_allclose(integral(full.log_prob(grid_2d())), 1.0,
                             rtol=1e-4)
  # Leave-one-out (eq. 4): row b drops exemplar b; each row is the mixture
  # of the other two, still a density.
  loo = priors.ExemplarPrior(means, log_variance, mask=~jnp.eye(3, dtype=bool))
  z = jnp.broadcast_to(grid_2d(), (grid_2d().shape[0], 3, 2))
  np.testing.assert_allclose(integral(loo.log_prob(z)), 1.0, rtol=1e-4)
  point = np.array([0.5, 0.5])
  sigma2 = 0.7 * np.eye(2)
  expected = math.log(0.5 * (stats.multivariate_normal.pdf(point, means[1],
                                                             sigma2)
                             + stats.multivariate_normal.pdf(point, means[2],
                                                             sigma2)))
  got = loo.log_prob(jnp.broadcast_to(jnp.asarray(point, jnp.float32),
                                      (3, 2)))
  np.testing.assert_allclose(got[0], expected, rtol=1e-5)


def test_samples_follow_each_prior():
  key = jax.random.key(0)
  normal = priors.StandardNormalPrior(2).sample(key, 20000, temperature=0.5)
  np.testing.assert_allclose(np.std(np.asarray(normal), axis=0), 0.5,
                             rtol=0.03)
  means = jnp.array([[-5.0, 0.0], [5.0, 0.0]])
  exemplar = priors.ExemplarPrior(means, jnp.asarray(0.0))
  draws = np.asarray(exemplar.sample(key, 4000))
  assert abs(np.mean(draws[:, 0] > 0) - 0.5) < 0.05         # uniform component
  assert np.all(np.asarray(exemplar.sample(key, 5, temperature=0.0))[:, 0] ** 2
                == 25.0)                                     # T = 0: the means
  pseudo = jnp.array([[0.5, 0.5]])                           # one component
  vamp = np.asarray(priors.VampPrior(pseudo, toy_encoder).sample(key, 20000))
  np.testing.assert_allclose(np.mean(vamp, axis=0), [0.0, 0.0], atol=0.03)
  np.testing.assert_allclose(np.var(vamp, axis=0), math.exp(-0.5), rtol=0.05)
