"""The marginal of eq. 4 (paper 1, App. B.3 and B.5) against brute force."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from configs import ccrnvp_digits
from configs import ncl_digits
from configs import ncl_pool_digits
from configs import nct_digits
from nbflows import marginal
from nbflows.models import registry

EVENT = (8, 8, 1)
NUM_TRAIN, K, NUM_ROWS, B = 10, 3, 8, 5


def perturb(params, key, scale):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [
      leaf + scale * jax.random.normal(k, leaf.shape)
      for leaf, k in zip(leaves, keys)])


def data():
  """(training images uint8, neighbourhood rows [8, 3], x [5] data units)."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 17, (NUM_TRAIN, *EVENT)).astype(np.uint8)
  rows = np.stack([rng.choice(NUM_TRAIN, K, replace=False)
                   for _ in range(NUM_ROWS)])
  x = (rng.integers(0, 17, (B, *EVENT)) + rng.random((B, *EVENT))
       ).astype(np.float32)
  return images, rows, x


@functools.cache
def setup(config_module, scale=0.1):
  config = config_module.get_config("quick")
  with config.unlocked():
    config.flow.num_scales = 1
    config.flow.hidden_channels = 4
    config.neighbours.k = K
  model = registry.build_model(config)
  images, rows, x = data()
  batch = {"x": jnp.asarray(x), "label": jnp.zeros(B, jnp.int32),
           "neighbours": jnp.asarray(images[rows[:B]] + 0.5)}
  params = jax.jit(model.init)(jax.random.key(1), batch)
  return model, perturb(params, jax.random.key(2), scale)


def brute_force(model, params, x, conditions, rows, log_weights=None):
  """log sum_j w_j p(x | condition of row j), one log_prob call per row."""
  log_probs = np.stack([
      np.asarray(model.log_prob(params, jnp.asarray(x), jnp.broadcast_to(
          jnp.asarray(marginal.gather(conditions, row)),
          (len(x), *marginal.gather(conditions, row).shape))))
      for row in rows])
  if log_weights is None:
    log_weights = np.full(len(rows), -np.log(len(rows)))
  return special.logsumexp(log_probs + log_weights[:, None], axis=0)


@pytest.mark.parametrize("config_module", [ncl_digits, ncl_pool_digits],
                         ids=["ncl", "ncl-pool"])
def test_ncl_exact_marginal_equals_the_average_over_all_neighbourhoods(
    config_module):
  model, params = setup(config_module, scale=0.2)
  images, rows, x = data()
  conditions = marginal.Neighbourhoods(images, rows)
  exact = marginal.marginal_log_prob(model, params, x, conditions)
  expected = brute_force(model, params, x, conditions, np.arange(NUM_ROWS))
  np.testing.assert_allclose(exact, expected, rtol=1e-5, atol=2e-3)
  # Not a trivial average: the neighbourhoods give different densities.
  single = brute_force(model, params, x, conditions, [0], np.zeros(1))
  assert np.max(np.abs(single - expected)) > 0.1


def test_sampled_estimate_approaches_the_exact_marginal_as_m_grows():
  model, params = setup(ncl_digits, scale=0.2)
  images, rows, x = data()
  conditions = marginal.Neighbourhoods(images, rows)
  exact = marginal.marginal_log_prob(model, params, x, conditions)
  errors = []
  for m in (1, 2, 4, NUM_ROWS):
    estimates = [marginal.marginal_log_prob(
        model, params, x, conditions, num_neighbourhoods=m,
        key=jax.random.key(seed)) for seed in range(12)]
    errors.append(np.mean(np.abs(np.array(estimates) - exact)))
  assert errors[0] > 0.05                     # one neighbourhood is far off
  assert errors[0] > errors[1] > errors[2] > errors[3]
  assert errors[3] < 1e-6                     # M = N rows is exact


def test_repeated_rows_count_as_weights_as_for_kmeans_clusters():
  model, params = setup(ncl_digits, scale=0.2)
  images, rows, x = data()
  # Three clusters of sizes 5, 2 and 1: every member has its cluster's row.
  members = np.repeat(rows[:3], [5, 2, 1], axis=0)
  exact = marginal.marginal_log_prob(
      model, params, x, marginal.Neighbourhoods(images, members))
  weighted = marginal.marginal_log_prob(
      model, params, x, marginal.Neighbourhoods(images, rows[:3], [5, 2, 1]))
  expected = brute_force(model, params, x,
                         marginal.Neighbourhoods(images, rows), np.arange(3),
                         np.log(np.array([5, 2, 1]) / 8))
  np.testing.assert_allclose(exact, expected, rtol=1e-5, atol=2e-3)
  np.testing.assert_allclose(weighted, exact, rtol=1e-6, atol=1e-4)


def test_generic_route_for_nct_exact_and_sampled():
  model, params = setup(nct_digits)
  images, rows, x = data()
  conditions = marginal.Neighbourhoods(images, rows[:4])
  exact = marginal.marginal_log_prob(model, params, x, conditions,
                                     batch_size=2, block_size=3)
  expected = brute_force(model, params, x, conditions, np.arange(4))
  np.testing.assert_allclose(exact, expected, rtol=1e-5, atol=2e-3)
  every_row = marginal.marginal_log_prob(
      model, params, x, conditions, num_neighbourhoods=4,
      key=jax.random.key(0), batch_size=2, block_size=3)
  np.testing.assert_allclose(every_row, exact, rtol=1e-6, atol=1e-4)


def test_label_model_marginalises_over_the_training_labels():
  model, params = setup(ccrnvp_digits)
  _, _, x = data()
  labels = np.array([0, 0, 0, 3, 3, 7])
  result = marginal.marginal_log_prob(model, params, x, labels)
  per_class = np.stack([np.asarray(model.log_prob(
      params, jnp.asarray(x), jnp.full(B, c, jnp.int32))) for c in (0, 3, 7)])
  expected = special.logsumexp(
      per_class + np.log(np.array([3, 2, 1]) / 6)[:, None], axis=0)
  np.testing.assert_allclose(result, expected, rtol=1e-5, atol=2e-3)
  bits = marginal.marginal_bits_per_dim(model, params, x, labels)
  np.testing.assert_allclose(bits, -expected / (64 * np.log(2)), rtol=1e-5)


def test_invalid_requests_raise():
  model, params = setup(ncl_digits, scale=0.2)
  images, rows, x = data()
  conditions = marginal.Neighbourhoods(images, rows)
  with pytest.raises(ValueError, match="dtype uint8; expected data units"):
    marginal.marginal_log_prob(model, params, x.astype(np.uint8), conditions)
  with pytest.raises(ValueError, match="num_neighbourhoods=9; expected 1 to"):
    marginal.marginal_log_prob(model, params, x, conditions,
                               num_neighbourhoods=9, key=jax.random.key(0))
  with pytest.raises(ValueError, match="key is None"):
    marginal.marginal_log_prob(model, params, x, conditions,
                               num_neighbourhoods=2)
  with pytest.raises(ValueError, match="Neighbourhoods"):
    marginal.marginal_log_prob(model, params, x, np.zeros(4, int))
  with pytest.raises(ValueError, match="indices range from 0 to 12"):
    marginal.marginal_log_prob(model, params, x, marginal.Neighbourhoods(
        images, np.array([[0, 12, 1]])))
  # NCL concatenates its k = 3 neighbours: rows of 2 are not neighbourhoods.
  with pytest.raises(ValueError, match=r"shape \(8, 2\); expected \[N, 3\]"):
    marginal.marginal_log_prob(model, params, x, marginal.Neighbourhoods(
        images, rows[:, :2]))
