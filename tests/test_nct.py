"""NCT (paper 1, eq. 8) and NCT-pool: conditions per scale, order, errors.

The bijector contract of `NCTTransform` in both forms (round trip, log-det
against autodiff, jit against eager, with a neighbourhood as cond) runs in
tests/test_bijectors.py.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neighbourhood_checks
from configs import nct_digits
from nbflows.bijectors import neighbourhood
from nbflows.models import registry

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

B, K = 3, 4
EVENT = (8, 8, 1)


def perturb(params, key, scale=0.1):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [
      leaf + scale * jax.random.normal(k, leaf.shape)
      for leaf, k in zip(leaves, keys)])


@functools.cache
def setup(condition: str = "concat"):
  """(model, perturbed params, x [B], neighbours [B, K]) for a 2-scale NCT."""
  config = nct_digits.get_config("quick")
  with config.unlocked():
    config.flow.couplings_per_scale = 1
    config.flow.hidden_channels = 4
    config.nct.condition = condition
    config.neighbours.k = K
  model = registry.build_model(config)
  kx, kn = jax.random.split(jax.random.key(0))
  x = jax.random.uniform(kx, (B, *EVENT), maxval=16.99)
  neighbours = jax.random.uniform(kn, (B, K, *EVENT), maxval=16.99)
  params = jax.jit(model.init)(jax.random.key(1),
                               {"x": x, "neighbours": neighbours})
  return model, perturb(params, jax.random.key(2)), x, neighbours


def conditions_and_logits(condition):
  """(the per-scale conditions of `condition`, the neighbours' logits in
  float64 NumPy [B, K, 8, 8, 1])."""
  model, params, _, neighbours = setup(condition)
  conditions = model.module.apply(
      params, neighbours,
      method=lambda m, n: m.transform.scale_conditions(
          m.transform_condition(n)))
  alpha = model.module.logit_alpha
  p = alpha + (1 - 2 * alpha) * np.asarray(neighbours, np.float64) / 17
  return conditions, np.log(p) - np.log1p(-p)


def check_scales(conditions, expected):
  """Scale 0 gets `expected`, scale 1 its means of 2 x 2 blocks."""
  c = expected.shape[-1]
  assert [x.shape for x in conditions] == [(B, 8, 8, c), (B, 4, 4, c)]
  np.testing.assert_allclose(conditions[0], expected, rtol=1e-4, atol=1e-4)
  blocks = expected.reshape(B, 4, 2, 4, 2, c).mean(axis=(2, 4))
  np.testing.assert_allclose(conditions[1], blocks, rtol=1e-4, atol=1e-4)


def test_eq8_condition_is_the_k_neighbours_in_order_in_logit_space():
  conditions, logits = conditions_and_logits("concat")
  # Channel j holds neighbour j (one channel per image), nearest first.
  check_scales(conditions, np.moveaxis(logits[..., 0], 1, -1))


def test_pool_is_mean_and_std_over_neighbours_in_logit_space():
  conditions, logits = conditions_and_logits("pool")
  check_scales(conditions,
               np.concatenate([logits.mean(1), logits.std(1)], axis=-1))


def test_concat_layout():
  neighbours = jnp.arange(2 * 3 * 2 * 2 * 1.0).reshape(2, 3, 2, 2, 1)
  stacked = neighbourhood.concat_neighbourhood(neighbours)
  assert stacked.shape == (2, 2, 2, 3)
  np.testing.assert_array_equal(stacked[1, 0, 1], neighbours[1, :, 0, 1, 0])


def test_pool_is_order_invariant_works_for_any_k_and_uses_the_neighbours():
  model, params, x, neighbours = setup("pool")
  assert model.num_neighbours is None
  lp = model.log_prob(params, x, neighbours)
  shuffled = neighbours[:, np.array([3, 1, 0, 2])]
  np.testing.assert_allclose(model.log_prob(params, x, shuffled), lp,
                             rtol=1e-6, atol=1e-4)
  # Doubling every neighbour keeps the mean and std: same density, k = 8.
  doubled = jnp.concatenate([neighbours, neighbours], axis=1)
  np.testing.assert_allclose(model.log_prob(params, x, doubled), lp,
                             rtol=1e-6, atol=1e-4)
  single = model.log_prob(params, x, neighbours[:, :1])
  assert np.all(np.isfinite(single)) and not np.allclose(single, lp)


def test_round_trip_through_the_model():
  model, params, x, neighbours = setup()
  z, logdet = model.forward(params, x, neighbours)
  x_back, logdet_inverse = model.inverse(params, z, neighbours)
  np.testing.assert_allclose(x_back, x, atol=1e-4)
  np.testing.assert_allclose(logdet_inverse, -logdet, rtol=1e-5, atol=1e-3)
  assert float(jnp.abs(z - model.forward(params, x, neighbours[::-1])[0]
                       ).max()) > 1e-3     # the transformation depends on N


def test_concat_depends_on_order_and_needs_its_k():
  neighbourhood_checks.check_order_matters_and_k_is_fixed(*setup())


def test_targets_log_prob_matches_log_prob_per_target():
  model, params, x, neighbours = setup()
  targets = jnp.stack([x, x[::-1]])
  both = model.module.apply(params, targets, neighbours,
                            method="targets_log_prob")
  for p in range(2):
    np.testing.assert_allclose(both[p], model.log_prob(params, targets[p],
                                                       neighbours),
                               rtol=1e-5, atol=1e-3)


def test_missing_or_wrong_neighbourhood_names_the_expected_shape():
  model, params, x, neighbours = setup()
  with pytest.raises(ValueError, match=r"needs cond.*\[3, 4, 8, 8, 1\]"):
    model.log_prob(params, x, None)
  with pytest.raises(ValueError, match=r"\(3, 4, 8, 8\).*\[3, 4, 8, 8, 1\]"):
    model.log_prob(params, x, neighbours[..., 0])


def test_unknown_condition_or_a_train_subset_with_concat_is_an_error():
  config = nct_digits.get_config("quick")
  config.nct.condition = "mean"
  with pytest.raises(ValueError, match="'mean'.*concat.*pool"):
    registry.build_model(config)
  config.nct.condition = "concat"
  config.neighbours.train_subset_k = 3
  with pytest.raises(ValueError, match="train_subset_k=3 with "
                                       "config.nct.condition='concat'"):
    registry.build_model(config)
