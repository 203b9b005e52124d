"""Tests for nbflows.objectives.iwae on a linear Gaussian with a known marginal.

Model: z ~ N(0, 1), x | z ~ N(z, s^2), so p(x) = N(x; 0, 1 + s^2) and the
posterior is N(x / (1 + s^2), s^2 / (1 + s^2)).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from nbflows.objectives import iwae

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

NOISE = 0.5  # s


def exact_log_marginal(x):
  return norm.logpdf(x, scale=jnp.sqrt(1 + NOISE ** 2))


def posterior(x):
  return x / (1 + NOISE ** 2), jnp.sqrt(NOISE ** 2 / (1 + NOISE ** 2))


def make_log_weights(x, q_mean, q_scale):
  """log p(x, z) - log q(z | x) for z ~ N(q_mean, q_scale^2), [n, B]."""

  def log_weights(key, num):
    z = q_mean + q_scale * jax.random.normal(key, (num,) + x.shape)
    return (norm.logpdf(z) + norm.logpdf(x, loc=z, scale=NOISE) -
            norm.logpdf(z, loc=q_mean, scale=q_scale))

  return log_weights


X = jnp.linspace(-2.0, 2.0, 9)


@pytest.mark.parametrize("num_samples", [1, 7])
def test_exact_posterior_gives_exact_marginal_and_zero_error(num_samples):
  # With q = p(z | x) every weight equals p(x): no variance at any S.
  est = iwae.importance_log_likelihood(
      make_log_weights(X, *posterior(X)), jax.random.key(0), num_samples)
  np.testing.assert_allclose(est.log_likelihood, exact_log_marginal(X),
                             atol=1e-5)
  np.testing.assert_allclose(est.elbo, exact_log_marginal(X), atol=1e-5)
  np.testing.assert_allclose(est.effective_sample_size, num_samples,
                             rtol=1e-5)
  if num_samples > 1:
    np.testing.assert_allclose(est.standard_error, 0.0, atol=1e-3)
  else:
    assert np.isnan(est.standard_error).all()


def test_estimate_approaches_exact_marginal_from_below_as_s_grows():
  # q = prior: a poor proposal. The expected IWAE bound increases with S
  # towards log p(x) (Burda et al. 2016, Theorem 1); average over 64 repeats
  # (the columns), taking the first S of 2000 samples.
  repeats = 64
  log_weights = make_log_weights(X, 0.0, 1.0)(jax.random.key(4),
                                              2000 * repeats)
  log_weights = log_weights.reshape(2000, repeats * X.size)   # [S, R * 9]
  exact = jnp.tile(exact_log_marginal(X), repeats)
  gaps = [float(jnp.mean(
      exact - iwae.importance_statistics(log_weights[:s]).log_likelihood))
          for s in (1, 10, 100, 2000)]
  assert all(g > -0.01 for g in gaps)  # a lower bound in expectation
  assert gaps[0] > gaps[1] > gaps[2] > gaps[3]
  assert gaps[0] > 0.5 and gaps[3] < 0.02


def test_elbo_matches_closed_form_and_lies_below_marginal():
  # With q = prior: ELBO = E_z[log N(x; z, s^2)]
  #                      = -log(2 pi s^2) / 2 - (x^2 + 1) / (2 s^2).
  est = iwae.importance_log_likelihood(make_log_weights(X, 0.0, 1.0),
                                       jax.random.key(1), 20000,
                                       chunk_size=4096)
  closed_form = (-0.5 * jnp.log(2 * jnp.pi * NOISE ** 2) -
                 (X ** 2 + 1) / (2 * NOISE ** 2))
  np.testing.assert_allclose(est.elbo, closed_form, atol=0.2)  # 3 SE
  assert (est.elbo < exact_log_marginal(X) - 0.5).all()
  np.testing.assert_allclose(est.log_likelihood, exact_log_marginal(X),
                             atol=0.05)


def test_chunked_equals_all_samples_at_once():
  # 10 samples in chunks of 3: chunks 0..3, the last padded by 2 samples.
  log_weights = make_log_weights(X, 0.3, 0.8)
  key = jax.random.key(2)
  chunked = iwae.importance_log_likelihood(log_weights, key, 10, chunk_size=3)
  all_weights = jnp.concatenate(
      [log_weights(jax.random.fold_in(key, c), 3) for c in range(4)])[:10]
  whole = iwae.importance_statistics(all_weights)
  for got, expected in zip(chunked, whole):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  # And by hand: log-mean-exp and the delta-method error from raw weights.
  w = np.exp(np.asarray(all_weights, np.float64))
  np.testing.assert_allclose(chunked.log_likelihood, np.log(w.mean(0)),
                             rtol=1e-5)
  normalised = w / w.mean(0)
  np.testing.assert_allclose(chunked.standard_error,
                             np.sqrt(normalised.var(0, ddof=1) / 10),
                             rtol=1e-4)


def test_standard_error_matches_spread_over_repeats():
  # A proposal wider than the posterior (finite weight variance): the
  # reported error should match the spread of 400 independent estimates.
  mean, _ = posterior(X)
  log_weights = make_log_weights(X, mean + 0.3, 1.0)
  keys = jax.random.split(jax.random.key(3), 400)
  est = jax.jit(jax.vmap(lambda k: iwae.importance_log_likelihood(
      log_weights, k, 200)))(keys)
  ratio = np.std(est.log_likelihood, axis=0) / np.mean(est.standard_error,
                                                        axis=0)
  assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio


def test_rejects_bad_arguments():
  log_weights = make_log_weights(X, 0.0, 1.0)
  with pytest.raises(ValueError, match="num_samples=0"):
    iwae.importance_log_likelihood(log_weights, jax.random.key(0), 0)
  with pytest.raises(ValueError, match="expected \\[4, batch\\]"):
    iwae.importance_log_likelihood(lambda k, n: jnp.zeros((n + 1, 3)),
                                   jax.random.key(0), 8, chunk_size=4)
  with pytest.raises(ValueError, match="num_samples, batch"):
    iwae.importance_statistics(jnp.zeros(3))
