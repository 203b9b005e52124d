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
from nbflows.data import sources
from nbflows.models import registry
from train.evaluation import requested_metrics

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

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
  # The units rule (`nbflows.data_units`): integer x at its bin centres,
  # x and the training images in other units are errors naming them.
  levels = np.floor(x).astype(np.uint8)
  np.testing.assert_array_equal(
      marginal.marginal_log_prob(model, params, levels, conditions),
      marginal.marginal_log_prob(model, params, levels + np.float32(0.5),
                                 conditions))
  # (Not x / 17: uniform noise levels rescaled after dequantisation are
  # uniform on [0, 1), which is also what blank images in data units are.)
  with pytest.raises(ValueError, match=r"x is a float batch .* rescaled to "
                     r"\[0, 1\]"):
    marginal.marginal_log_prob(model, params, levels / np.float32(16),
                               conditions)
  with pytest.raises(ValueError, match=r"conditions.images holds \d+ values "
                     r"outside \[0, 17\)"):
    marginal.marginal_log_prob(model, params, x, marginal.Neighbourhoods(
        images * np.float32(15.0), rows))
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


# ------------------------------------------- routes, standard errors, bias
class FakeIndex:
  """The two attributes of a NeighbourIndex that eq. 4 reads."""

  def __init__(self, kind, train_rows, **other_splits):
    self.kind = kind
    self.neighbours = {"train": train_rows, **other_splits}


class FakeTrain:

  def __init__(self, images):
    self.images = images
    self.labels = np.zeros(len(images), np.int32)


def bits(log_prob):
  return -np.asarray(log_prob) / (64 * np.log(2.0))


def row_matrix(model, params, x, conditions, rows):
  """[len(rows), B] log p(x_b | row j), one log_prob call per row."""
  return np.stack([brute_force(model, params, x, conditions, [row],
                               np.zeros(1)) for row in rows])


def test_routes_name_their_estimator_and_exact_is_the_hand_log_mean_exp():
  images, rows, x = data()
  train = FakeTrain(images)
  conditions = marginal.Neighbourhoods(images, rows)
  nct, nct_params = setup(nct_digits)
  by_hand = special.logsumexp(
      row_matrix(nct, nct_params, x, conditions, range(NUM_ROWS)),
      axis=0) - np.log(NUM_ROWS)
  exact = marginal.marginal_over_training_set(
      nct, nct_params, x, train, FakeIndex("knn", rows), exact=True)
  assert (exact.method, exact.num_neighbourhoods) == ("exact", NUM_ROWS)
  assert exact.description == f"exact over {NUM_ROWS} neighbourhoods"
  assert exact.stderr_bpd(64) is None
  np.testing.assert_allclose(exact.log_prob, by_hand, rtol=1e-5, atol=2e-3)
  sampled = marginal.marginal_over_training_set(
      nct, nct_params, x, train, FakeIndex("knn", rows), num_neighbourhoods=3,
      key=jax.random.key(0))
  assert (sampled.method, sampled.num_neighbourhoods) == ("sampled", 3)
  assert sampled.description == f"sampled, M=3 of {NUM_ROWS} neighbourhoods"
  ncl_model, ncl_params = setup(ncl_digits, scale=0.2)
  assert marginal.marginal_over_training_set(
      ncl_model, ncl_params, x, train, FakeIndex("knn", rows)).method == "exact"


def test_kmeans_index_is_exact_over_clusters_weighted_by_their_counts():
  # App. B.5: every member of a cluster has its cluster's prototypes, so
  # eq. 4 is sum_c (n_c / N) p(x | N_c), chosen without being asked.
  model, params = setup(nct_digits)
  images, rows, x = data()
  members = np.repeat(rows[:3], [5, 2, 1], axis=0)        # N = 8 points
  result = marginal.marginal_over_training_set(
      model, params, x, FakeTrain(images), FakeIndex("kmeans", members),
      num_neighbourhoods=2, key=jax.random.key(0))
  assert (result.method, result.num_neighbourhoods, result.num_total) == (
      "exact", 3, 8)
  assert result.description == "exact over 3 k-means neighbourhoods"
  matrix = row_matrix(model, params, x,
                      marginal.Neighbourhoods(images, rows), range(3))
  expected = special.logsumexp(
      matrix + np.log(np.array([5, 2, 1]) / 8)[:, None], axis=0)
  np.testing.assert_allclose(result.log_prob, expected, rtol=1e-5, atol=2e-3)


def test_sampled_stderr_is_the_delta_method_over_the_drawn_rows():
  model, params = setup(nct_digits)
  images, rows, x = data()
  key, m = jax.random.key(3), 4
  result = marginal.marginal_over_training_set(
      model, params, x, FakeTrain(images), FakeIndex("knn", rows),
      num_neighbourhoods=m, key=key)
  drawn = np.asarray(jax.random.choice(key, NUM_ROWS, (m,), replace=False))
  matrix = row_matrix(model, params, x, marginal.Neighbourhoods(images, rows),
                      drawn)                                     # [M, B]
  log_p = special.logsumexp(matrix, axis=0) - np.log(m)
  np.testing.assert_allclose(result.log_prob, log_p, rtol=1e-5, atol=2e-3)
  ratios = np.exp(matrix - log_p).mean(axis=1)                   # r_j
  expected = np.sqrt((1 - m / NUM_ROWS) * ratios.var(ddof=1) / m) / (
      64 * np.log(2))
  assert result.stderr_bpd(64) == pytest.approx(expected, rel=1e-3)
  assert expected > 1e-4                      # the rows do differ
  # Every row drawn: the estimate is exact and so is its standard error.
  every = marginal.marginal_over_training_set(
      model, params, x, FakeTrain(images), FakeIndex("knn", rows),
      num_neighbourhoods=NUM_ROWS, key=key)
  assert every.stderr_bpd(64) == pytest.approx(0.0, abs=1e-12)


def test_delta_method_stderr_matches_the_spread_over_row_draws():
  # Pure numpy: N = 300 rows, B = 30 points, M = 150 drawn without
  # replacement 2,000 times. The spread of the mean bits/dim over draws is
  # the delta method's (with the finite-population factor sqrt(1 - M/N) =
  # 0.71; without it the two would differ by 41%).
  rng = np.random.default_rng(0)
  n, b, m, d = 300, 30, 150, 64
  log_probs = (rng.normal(0, 1.0, (n, 1)) + rng.normal(0, 0.5, (n, b))
               - 100.0)
  estimates, stderrs = [], []
  for _ in range(2000):
    rows = rng.choice(n, m, replace=False)
    log_p = special.logsumexp(log_probs[rows], axis=0) - np.log(m)
    estimates.append(bits(log_p).mean())
    stderrs.append(marginal.sampled_bpd_stderr(
        np.exp(log_probs[rows] - log_p).mean(axis=1), n, d))
  assert np.mean(stderrs) == pytest.approx(np.std(estimates), rel=0.1)
  assert marginal.sampled_bpd_stderr(np.ones(1), n, d) != \
      marginal.sampled_bpd_stderr(np.ones(1), n, d)          # NaN for M = 1


def test_sampled_minus_exact_on_the_same_points():
  model, params = setup(nct_digits)
  images, rows, x = data()
  key, m = jax.random.key(5), 3
  train, index = FakeTrain(images), FakeIndex("knn", rows)
  result = marginal.sampled_minus_exact(model, params, x, train, index,
                                        num_neighbourhoods=m, key=key)
  # The same rows as the sampled route of marginal_over_training_set.
  sampled = marginal.marginal_over_training_set(
      model, params, x, train, index, num_neighbourhoods=m, key=key)
  np.testing.assert_allclose(result.sampled.log_prob, sampled.log_prob,
                             rtol=1e-12)
  assert result.exact.method == "exact" and result.sampled.method == "sampled"
  differences = bits(result.sampled.log_prob) - bits(result.exact.log_prob)
  assert result.difference_bpd == pytest.approx(differences.mean())
  assert abs(result.difference_bpd) > 1e-4
  expected = np.hypot(sampled.stderr_bpd(64),
                      differences.std(ddof=1) / np.sqrt(B))
  assert result.difference_stderr_bpd == pytest.approx(expected)
  ccrnvp, ccrnvp_params = setup(ccrnvp_digits)
  with pytest.raises(ValueError, match="neighbourhood models only"):
    marginal.sampled_minus_exact(ccrnvp, ccrnvp_params, x, train, index,
                                 num_neighbourhoods=m, key=key)


def test_eval_json_marginal_entries_name_the_estimator_and_measure_bias():
  model, params = setup(nct_digits)
  images, _, _ = data()
  rng = np.random.default_rng(1)
  labels = np.zeros(NUM_TRAIN, np.int32)
  splits = sources.Splits(
      sources.Split(images, labels), sources.Split(images[:2], labels[:2]),
      sources.Split(images[:B], labels[:B]), sources.dataset_info("digits"))
  index = FakeIndex("knn", np.stack([
      rng.choice(NUM_TRAIN, K, replace=False) for _ in range(NUM_TRAIN)]),
                    test=np.stack([rng.choice(NUM_TRAIN, K, replace=False)
                                   for _ in range(B)]))
  config = nct_digits.get_config("quick")
  config.eval.marginal_neighbourhoods = 4

  def results(*metrics):
    return requested_metrics.requested_results(
        model, params, config, splits, index, {"bpd": np.zeros(B)}, metrics)

  sampled = results("marginal_bpd")
  assert sampled["marginal_method"] == "sampled"
  assert sampled["marginal_num_neighbourhoods"] == 4
  assert sampled["marginal_description"] == "sampled, M=4 of 10 neighbourhoods"
  assert sampled["test_marginal_bpd_stderr"] > 0
  both = results("marginal_bpd", "marginal_bias")
  # The same M rows and points: the sampled entries agree.
  assert both["test_marginal_bpd"] == pytest.approx(
      both["test_marginal_bpd_sampled"], rel=1e-12)
  assert both["test_marginal_bpd_stderr"] == pytest.approx(
      both["test_marginal_bpd_sampled_stderr"], rel=1e-12)
  assert both["test_marginal_bpd"] == pytest.approx(
      sampled["test_marginal_bpd"], rel=1e-12)
  assert both["marginal_sampled_neighbourhoods"] == 4
  assert both["marginal_sampled_minus_exact_bpd"] == pytest.approx(
      both["test_marginal_bpd_sampled"] - both["test_marginal_bpd_exact"])
  assert "test_marginal_bpd_exact_stderr" not in both
  with config.unlocked():
    config.eval.exact_marginal = True
  exact = results("marginal_bpd")
  assert exact["marginal_method"] == "exact"
  assert exact["marginal_num_neighbourhoods"] == NUM_TRAIN
  assert "test_marginal_bpd_stderr" not in exact
  assert exact["test_marginal_bpd"] == pytest.approx(
      both["test_marginal_bpd_exact"], rel=1e-12)
  ccrnvp, ccrnvp_params = setup(ccrnvp_digits)
  with pytest.raises(ValueError, match="'marginal_bias' needs a neighbour"):
    requested_metrics.requested_results(
        ccrnvp, ccrnvp_params, config, splits, None, {"bpd": np.zeros(B)},
        ("marginal_bias",))
