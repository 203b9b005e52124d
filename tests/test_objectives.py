"""Tests of the objectives: exact likelihood, ELBO terms and GLF's losses."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nbflows.distributions import gaussian
from nbflows.objectives import elbo
from nbflows.objectives import iwae
from nbflows.objectives import latent_flow
from nbflows.objectives import likelihood


def test_likelihood_loss_is_the_mean_bits_per_dim():
  log_prob = jnp.array([-8 * math.log(2.0), -24 * math.log(2.0)])  # D = 8
  loss, metrics = likelihood.likelihood_loss(log_prob, 8)
  np.testing.assert_allclose(loss, 2.0, rtol=1e-6)      # mean of 1 and 3 bpd
  assert float(metrics["bpd"]) == float(metrics["loss"]) == float(loss)


def test_bernoulli_log_prob_by_hand():
  x = jnp.array([[1.0, 0.0, 1.0]])
  logits = jnp.array([[0.0, 2.0, -1.0]])
  sigmoid = lambda l: 1 / (1 + math.exp(-l))
  expected = (math.log(0.5) + math.log(1 - sigmoid(2.0))
              + math.log(sigmoid(-1.0)))
  np.testing.assert_allclose(elbo.bernoulli_log_prob(x, logits), [expected],
                             rtol=1e-6)
  # Leading sample axes broadcast: [S, B, *event] -> [S, B].
  stacked = elbo.bernoulli_log_prob(x, jnp.stack([logits, logits]))
  np.testing.assert_allclose(stacked, [[expected], [expected]], rtol=1e-6)


def tiny_model(x):
  """A 1-D latent, 2-pixel model: logits = w z + c, prior N(0, 1)."""
  w, c = jnp.array([1.5, -0.5]), jnp.array([0.2, 0.1])
  decode = lambda z: z * w + c                 # [..., B, 1] -> [..., B, 2]
  prior = lambda z: gaussian.standard_normal_log_prob(z, event_ndims=1)
  mean = jnp.full((x.shape[0], 1), 0.3)
  log_var = jnp.full((x.shape[0], 1), math.log(0.25))
  return mean, log_var, decode, prior, w, c


def test_elbo_terms_of_a_tiny_model_match_the_direct_formula():
  x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  mean, log_var, decode, prior, w, c = tiny_model(x)
  key = jax.random.key(3)
  reconstruction, kl = elbo.elbo_terms(x, mean, log_var, decode, prior, key)
  z = 0.3 + 0.5 * np.asarray(jax.random.normal(key, (2, 1)))[:, 0]
  p = 1 / (1 + np.exp(-(z[:, None] * np.asarray(w) + np.asarray(c))))
  expected_rec = np.sum(np.where(np.asarray(x) == 1, np.log(p), np.log(1 - p)),
                        axis=-1)
  expected_kl = (stats.norm.logpdf(z, 0.3, 0.5) - stats.norm.logpdf(z))
  np.testing.assert_allclose(reconstruction, expected_rec, rtol=1e-5)
  np.testing.assert_allclose(kl, expected_kl, rtol=1e-5, atol=1e-6)
  loss, metrics = elbo.training_loss(reconstruction, kl, beta=2.0)
  np.testing.assert_allclose(loss, -np.mean(expected_rec - 2 * expected_kl),
                             rtol=1e-5)
  np.testing.assert_allclose(metrics["elbo"],
                             np.mean(expected_rec - expected_kl), rtol=1e-5)


def test_importance_weights_give_the_exact_likelihood_of_a_tiny_model():
  x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  _, _, decode, prior, _, _ = tiny_model(x)
  # The prior as the proposal: weights p(x | z) <= 1, a low-variance estimate.
  proposal = jnp.zeros((2, 1))
  log_weights = elbo.importance_log_weights(x, proposal, proposal, decode,
                                            prior)
  estimate = iwae.importance_log_likelihood(log_weights, jax.random.key(0),
                                            num_samples=20000,
                                            chunk_size=5000)
  grid = jnp.linspace(-8.0, 8.0, 4001)[:, None, None]           # [G, 1, 1]
  log_joint = (elbo.bernoulli_log_prob(x, decode(jnp.broadcast_to(
      grid, (4001, 2, 1)))) + prior(grid))                      # [G, B]
  exact = jax.nn.logsumexp(log_joint, axis=0) + math.log(16.0 / 4000)
  np.testing.assert_allclose(estimate.log_likelihood, exact, atol=0.02)
  # The ELBO (mean log weight) lies below log p(x).
  assert bool(jnp.all(estimate.elbo < exact))


@pytest.mark.parametrize("objective,weight", [("stop_gradient", 1.0),
                                              ("regularised", 3.0),
                                              ("vae", 3.0)])
def test_latent_flow_losses_are_eqs_3_to_5(objective, weight):
  rec, nll, log_q = jnp.array([2.0, 1.0]), jnp.array([0.5, -1.0]), jnp.array(
      [0.25, 0.0])
  got = latent_flow.per_example_loss(rec, nll, log_q, objective, beta=3.0)
  np.testing.assert_allclose(got, weight * rec + nll + log_q)


def test_flow_input_stops_the_gradient_only_for_glf():
  def grad(objective):
    return jax.grad(lambda z: jnp.sum(latent_flow.flow_input(z, objective)
                                      ** 2))(jnp.ones(3))
  np.testing.assert_array_equal(grad("stop_gradient"), 0.0)
  np.testing.assert_array_equal(grad("regularised"), 2.0)


def test_reconstruction_loss_and_invalid_objective():
  x = jnp.ones((2, 2, 2, 1))
  np.testing.assert_allclose(latent_flow.reconstruction_loss(x, 0.0 * x),
                             [2.0, 2.0])
  with pytest.raises(ValueError, match="objective='flow'"):
    latent_flow.check_objective("flow")
