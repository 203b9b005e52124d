"""Tests of the exemplar prior and the Exemplar VAE (paper 3)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from configs import evae_digits
from nbflows.distributions import exemplar_prior
from nbflows.models import exemplar_vae
from nbflows.models import vae

EVENT = (4, 4, 1)
LEVELS = 17


def direct_log_density(z, means, log_variance, keep=None):
  """1/M sum_j N(z; mu_j, sigma^2 I) by scipy, one row at a time (eq. 10)."""
  z, means = np.asarray(z, np.float64), np.asarray(means, np.float64)
  sigma2 = math.exp(float(log_variance))
  out = []
  for b in range(z.shape[0]):
    rows = range(means.shape[0]) if keep is None else np.flatnonzero(keep[b])
    logs = [stats.multivariate_normal.logpdf(z[b], means[j],
                                             sigma2 * np.eye(z.shape[1]))
            for j in rows]
    out.append(special.logsumexp(logs) - math.log(len(logs)))
  return np.array(out)


def random_codes(seed, batch=5, num=7, dim=3):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(batch, dim)), jnp.float32),
          jnp.asarray(rng.normal(size=(num, dim)), jnp.float32))


def make_model(images, **kwargs):
  network = vae.VAE(event_shape=EVENT, latent_dim=3, hidden=(16,),
                    prior="exemplar")
  return exemplar_vae.ExemplarVAEModel(network, images, num_levels=LEVELS,
                                       iwae_samples=8, iwae_chunk=4, **kwargs)


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(0).integers(0, LEVELS, (12, *EVENT)).astype(
      np.uint8)


def batch_of(images, index):
  index = jnp.asarray(index, jnp.int32)
  return {"x": jnp.asarray(images[np.asarray(index)], jnp.float32) + 0.5,
          "index": index}


# ------------------------------------------------------------ the prior itself
@pytest.mark.parametrize("log_variance", [-1.5, 0.0, 0.7])
def test_log_density_equals_direct_logsumexp(log_variance):
  z, means = random_codes(0)
  got = exemplar_prior.log_density(z, means, jnp.asarray(log_variance))
  np.testing.assert_allclose(got, direct_log_density(z, means, log_variance),
                             rtol=1e-5, atol=1e-4)


def test_log_density_broadcasts_over_leading_sample_axes():
  z, means = random_codes(1)
  stacked = jnp.stack([z, 2 * z])                      # [2, B, d]
  got = exemplar_prior.log_density(stacked, means, jnp.asarray(0.3))
  for s in range(2):
    np.testing.assert_allclose(
        got[s], exemplar_prior.log_density(stacked[s], means,
                                           jnp.asarray(0.3)), rtol=1e-6)


def test_masked_log_density_equals_direct_over_kept_exemplars():
  z, means = random_codes(2)
  keep = np.random.default_rng(3).random((5, 7)) < 0.6
  keep[:, 0] = True                                      # >= 1 kept per row
  got = exemplar_prior.log_density(z, means, jnp.asarray(-0.4),
                                   jnp.asarray(keep))
  np.testing.assert_allclose(got, direct_log_density(z, means, -0.4, keep),
                             rtol=1e-5, atol=1e-4)


def test_leave_one_out_gives_own_exemplar_zero_weight():
  z, means = random_codes(4, batch=4, num=6)
  query = jnp.array([0, 2, 3, 5])
  mask = exemplar_prior.leave_one_out_mask(query, jnp.arange(6))
  assert mask.shape == (4, 6)
  assert not bool(jnp.any(mask[jnp.arange(4), query]))
  assert int(jnp.sum(mask)) == 4 * 5

  def row_log_density(means):
    return exemplar_prior.log_density(z, means, jnp.asarray(0.0), mask)

  # Moving a point's own exemplar anywhere leaves its prior unchanged ...
  moved = means.at[2].add(100.0)
  before = np.asarray(row_log_density(means))
  after = np.asarray(row_log_density(moved))
  np.testing.assert_allclose(after[1], before[1], rtol=1e-6)
  # ... while the other rows, which use exemplar 2, do change.
  assert not np.allclose(after[[0, 2, 3]], before[[0, 2, 3]])
  # Zero weight also means zero gradient with respect to that exemplar.
  grads = jax.jacrev(row_log_density)(means)         # [B, M, d]
  for row, own in enumerate(np.asarray(query)):
    np.testing.assert_array_equal(grads[row, own], 0.0)
  # And the density is the (N - 1)-component mixture over the others.
  np.testing.assert_allclose(before, direct_log_density(z, means, 0.0,
                                                        np.asarray(mask)),
                             rtol=1e-5, atol=1e-4)


def test_subsample_draws_distinct_indices_uniformly():
  draws = np.stack([np.asarray(exemplar_prior.subsample(
      jax.random.key(s), 10, 4)) for s in range(400)])
  assert draws.shape == (400, 4)
  assert all(len(set(row)) == 4 and np.all(np.diff(row) > 0) for row in draws)
  assert draws.min() >= 0 and draws.max() <= 9
  counts = np.bincount(draws.ravel(), minlength=10)
  expected = 400 * 4 / 10                              # each index: 160
  assert np.all(np.abs(counts - expected) < 5 * math.sqrt(expected))
  with pytest.raises(ValueError, match="num_kept=11"):
    exemplar_prior.subsample(jax.random.key(0), 10, 11)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_bound_is_below_exact_prior_and_tight_at_k_equals_m(k):
  z, means = random_codes(5, batch=6, num=7)
  log_variance = jnp.asarray(-0.5)
  exact = exemplar_prior.log_density(z, means, log_variance)
  cache = exemplar_prior.ExemplarCache(np.asarray(means))
  neighbours = jnp.asarray(cache.neighbours(np.asarray(z), k))   # [B, k]
  bound = exemplar_prior.knn_log_density(z, means[neighbours], log_variance,
                                         num_components=7)
  assert bool(jnp.all(bound <= exact + 1e-5))
  if k == 7:
    np.testing.assert_allclose(bound, exact, rtol=1e-5, atol=1e-5)
  else:
    assert bool(jnp.all(bound < exact))
    # The nearest exemplars give the tightest k-term bound; other k do worse.
    others = jnp.tile(jnp.arange(7 - k, 7), (6, 1))
    worst = exemplar_prior.knn_log_density(z, means[others], log_variance, 7)
    assert bool(jnp.all(bound >= worst - 1e-5))


def test_cache_neighbours_and_update():
  _, means = random_codes(6, num=9)
  means = np.asarray(means)
  cache = exemplar_prior.ExemplarCache(means)
  query = means[[1, 4]] + 1e-3
  brute = np.argsort(np.sum((query[:, None] - means) ** 2, -1), axis=1)[:, :3]
  np.testing.assert_array_equal(cache.neighbours(query, 3), brute)
  candidates = np.array([0, 2, 4, 6, 8])
  within = cache.neighbours(query, 2, candidates)
  assert set(within.ravel()) <= {0, 2, 4, 6, 8}
  assert within[1, 0] == 4                              # its own, in the subset
  brute_within = candidates[np.argsort(np.sum(
      (query[:, None] - means[candidates]) ** 2, -1), axis=1)[:, :2]]
  np.testing.assert_array_equal(within, brute_within)
  cache.update(np.array([3]), np.full((1, 3), 7.0))
  np.testing.assert_array_equal(cache.means[3], 7.0)
  np.testing.assert_array_equal(np.delete(cache.means, 3, 0),
                                np.delete(means, 3, 0))
  with pytest.raises(ValueError, match="k=6"):
    cache.neighbours(query, 6, candidates)


# ------------------------------------------------------------------- the model
def test_training_prior_ignores_own_exemplar_under_leave_one_out(images):
  model = make_model(images, leave_one_out=True, subsample_ratio=1.0, knn=2)
  batch = batch_of(images, [0, 5, 7])
  params = model.init(jax.random.key(0), batch)
  z = jax.random.normal(jax.random.key(1), (3, 3))
  before = model.training_log_prior(params, z, batch, jax.random.key(2))
  # Replace point 5's own exemplar by another image: its row is unchanged,
  # the rows of points 0 and 7 (which use exemplar 5) change.
  changed = images.copy()
  changed[5] = images[1] // 2
  altered = make_model(changed, leave_one_out=True, subsample_ratio=1.0,
                       knn=2)
  after = altered.training_log_prior(params, z, batch, jax.random.key(2))
  np.testing.assert_allclose(after[1], before[1], rtol=1e-5)
  after, before = np.asarray(after), np.asarray(before)
  assert not np.allclose(after[[0, 2]], before[[0, 2]])
  # Without leave-one-out point 5's own exemplar counts in its row.
  keep_all = make_model(images, leave_one_out=False, subsample_ratio=1.0,
                        knn=2)
  keep_all_changed = make_model(changed, leave_one_out=False,
                                subsample_ratio=1.0, knn=2)
  assert not np.allclose(
      keep_all.training_log_prior(params, z, batch, jax.random.key(2))[1],
      keep_all_changed.training_log_prior(params, z, batch,
                                          jax.random.key(2))[1])


def test_evaluation_prior_uses_every_exemplar(images):
  model = make_model(images, subsample_ratio=0.5, knn=2)
  batch = batch_of(images, [0, 1])
  params = model.init(jax.random.key(0), batch)
  z = jax.random.normal(jax.random.key(1), (2, 3))
  means = model.exemplar_means(params)                  # all 12 exemplars
  assert means.shape == (12, 3)
  got = model.evaluation_log_prior(params)(z)
  expected = direct_log_density(z, means, model.log_variance(params))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_exemplars_enter_as_grey_levels_not_binarised(images):
  model = make_model(images, knn=2)
  np.testing.assert_allclose(model.exemplar_inputs(jnp.array([3])),
                             images[3:4] / (LEVELS - 1), rtol=1e-6)


def test_knn_loss_equals_exact_loss_when_k_covers_all_and_bounds_it_otherwise(
    images):
  batch = batch_of(images, [0, 4, 9])
  key = jax.random.key(3)
  full = make_model(images, leave_one_out=True, subsample_ratio=1.0, knn=11)
  params = full.init(jax.random.key(0), batch)
  exact_loss, exact_metrics = full.loss(params, batch, key)
  cache = full.init_cache(params)
  knn_batch = full.knn_batch(params, cache, batch, jax.random.key(5))
  assert knn_batch["exemplar_neighbours"].shape == (3, 11)   # all but self
  np.testing.assert_array_equal(knn_batch["exemplar_count"], 11.0)
  knn_loss, (metrics, neighbour_means) = full.knn_loss(params, knn_batch, key)
  np.testing.assert_allclose(knn_loss, exact_loss, rtol=1e-5)
  assert float(metrics["loss"]) == pytest.approx(float(knn_loss))
  # Both losses log the shared log sigma^2 of eq. 12.
  for logged in (metrics, exact_metrics):
    assert float(logged["log_variance"]) == float(full.log_variance(params))
  # Alg. 1: the batch points' cache rows hold their current encodings ...
  np.testing.assert_allclose(cache.means[np.asarray(batch["index"])],
                             full.encode(params, batch["x"])[0], rtol=1e-5,
                             atol=1e-6)
  # ... and the neighbours' rows are refreshed from the loss's means.
  cache.means[:] = 0.0
  cache.update(knn_batch["exemplar_neighbours"], neighbour_means)
  np.testing.assert_allclose(cache.means, full.exemplar_means(params),
                             rtol=1e-5, atol=1e-6)
  few = make_model(images, leave_one_out=True, subsample_ratio=1.0, knn=2)
  few_batch = few.knn_batch(params, few.init_cache(params), batch,
                            jax.random.key(5))
  assert few_batch["exemplar_neighbours"].shape == (3, 2)
  few_loss, _ = few.knn_loss(params, few_batch, key)
  assert float(few_loss) > float(exact_loss)          # a looser bound (eq. 15)


def test_knn_batch_searches_inside_the_subsample(images):
  model = make_model(images, leave_one_out=True, subsample_ratio=0.5, knn=3)
  batch = batch_of(images, [0, 1, 2, 3])
  params = model.init(jax.random.key(0), batch)
  key = jax.random.key(7)
  subset = set(np.asarray(model._subsample(key)).tolist())
  knn_batch = model.knn_batch(params, model.init_cache(params), batch, key)
  assert set(np.asarray(knn_batch["exemplar_neighbours"]).ravel()) <= subset
  in_subset = np.isin(np.asarray(batch["index"]), list(subset))
  np.testing.assert_array_equal(knn_batch["exemplar_count"], 6 - in_subset)
  grad_fn = jax.jit(jax.value_and_grad(model.knn_loss, has_aux=True))
  (loss, _), grads = grad_fn(params, knn_batch, jax.random.key(1))
  assert np.isfinite(float(loss))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  # sigma^2 is learned: the prior's variance gets a gradient.
  assert float(jnp.abs(grads["params"]["exemplar_log_variance"])) > 0


def test_sampling_draws_around_exemplar_means(images):
  model = make_model(images, knn=2)
  params = model.init(jax.random.key(0), batch_of(images, [0]))
  z = model.sample_latents(params, jax.random.key(1), 20, temperature=0.0)
  means = np.asarray(model.exemplar_means(params))
  distances = np.min(np.sum((np.asarray(z)[:, None] - means) ** 2, -1), 1)
  np.testing.assert_allclose(distances, 0.0, atol=1e-8)
  samples = model.sample(params, jax.random.key(2), 5)
  assert samples.shape == (5, *EVENT)
  assert bool(jnp.all((samples >= 0) & (samples < LEVELS)))
  like = model.sample_like(params, jax.random.key(3), batch_of(images, [0, 1])
                           ["x"], num_per_exemplar=3, temperature=0.0)
  assert like.shape == (2, 3, *EVENT)
  np.testing.assert_allclose(like[:, 0], like[:, 2], rtol=1e-6)  # T = 0
  chain = model.cyclic_samples(params, jax.random.key(4),
                               batch_of(images, [0, 1])["x"], num_steps=3)
  assert chain.shape == (3, 2, *EVENT)


def test_invalid_settings_raise(images):
  with pytest.raises(ValueError, match="subsample_ratio=0"):
    make_model(images, subsample_ratio=0.0)
  with pytest.raises(ValueError, match="knn=12"):
    make_model(images, subsample_ratio=1.0, knn=12)
  with pytest.raises(ValueError, match="prior='gaussian'"):
    exemplar_vae.ExemplarVAEModel(vae.VAE(event_shape=EVENT), images,
                                  num_levels=LEVELS)


def test_augmentation_loss_is_eq_16():
  from train.experiments import augment  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  real, synthetic = rng.normal(size=(2, 4, 3))
  labels = np.array([0, 2, 1, 2])
  log_p_real = real - special.logsumexp(real, axis=1, keepdims=True)
  log_p_synthetic = synthetic - special.logsumexp(synthetic, axis=1,
                                                  keepdims=True)
  expected = -np.mean(0.3 * log_p_real[np.arange(4), labels]
                      + 0.7 * log_p_synthetic[np.arange(4), labels])
  got = augment.augmentation_loss(jnp.asarray(real), jnp.asarray(synthetic),
                                  jnp.asarray(labels), weight=0.3)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # lambda = 1 ignores the synthetic images entirely.
  np.testing.assert_allclose(
      augment.augmentation_loss(jnp.asarray(real), jnp.asarray(0 * synthetic),
                                jnp.asarray(labels), weight=1.0),
      -np.mean(log_p_real[np.arange(4), labels]), rtol=1e-5)


def test_exemplar_vae_refuses_a_kl_weight():
  config = evae_digits.get_config("quick")
  config.vae.beta = 1.5
  with pytest.raises(ValueError, match=r"config.vae.beta=1.5"):
    exemplar_vae.build_evae(config)


def test_knn_batch_gives_exactly_k_neighbours_without_the_point(images):
  model = make_model(images, leave_one_out=True, subsample_ratio=1.0, knn=3)
  batch = batch_of(images, [0, 5, 7])
  params = model.init(jax.random.key(0), batch)
  cache = model.init_cache(params)
  prepared = model.knn_batch(params, cache, batch, jax.random.key(2))
  neighbours = np.asarray(prepared["exemplar_neighbours"])
  means = np.asarray(model.exemplar_means(params))
  query = np.asarray(model.encode(params, batch["x"])[0])
  for row, point, i in zip(neighbours, query, [0, 5, 7]):
    distances = np.sum((means - point) ** 2, axis=1)
    distances[i] = np.inf                        # leave-one-out (eq. 4)
    np.testing.assert_array_equal(row, np.argsort(distances)[:3])


def test_trainer_trains_through_the_knn_prior_when_knn_is_set(tmp_path):
  """Alg. 1 in the training path: the prior sees K exemplars per example."""
  import json  # pylint: disable=g-import-not-at-top
  from nbflows.models import protocols  # pylint: disable=g-import-not-at-top
  from nbflows.models import registry  # pylint: disable=g-import-not-at-top
  from train.loop import trainer  # pylint: disable=g-import-not-at-top
  config = evae_digits.get_config("quick")
  assert config.vae.exemplar.knn == 0          # the exact prior by default
  config.vae.exemplar.knn = 3
  config.num_train_steps = config.eval_every_steps = 4
  config.log_every_steps = 1
  config.optimizer.warmup_steps = 0
  config.num_sample_images = 0
  config.eval.metrics = "iwae"
  model = registry.build_model(config)
  assert protocols.offers(model, protocols.HostBatchPreparation)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / "metrics.jsonl") as f:
    train_rows = [json.loads(line)["values"] for line in f
                  if json.loads(line)["split"] == "train"]
  assert len(train_rows) == 4
  assert [row["prior_components"] for row in train_rows] == [3.0] * 4
  # The KL warm-up of the quick config (2 steps) reaches the kNN loss too.
  assert [row["kl_weight"] for row in train_rows] == [0.5, 1.0, 1.0, 1.0]
  assert np.isfinite(results["test_iwae"])
  # The exact prior (knn = 0) takes the full mixture and logs no k.
  # Not blank images: a float batch all at level 0 reads as rescaled units.
  images = (np.arange(12 * int(np.prod(EVENT))) % LEVELS).astype(
      np.uint8).reshape(12, *EVENT)
  exact = make_model(images, subsample_ratio=1.0)
  batch = batch_of(images, [0, 1])
  params = exact.init(jax.random.key(0), batch)
  prepare = exact.train_batch_preparer(params)
  assert prepare(params, batch, jax.random.key(1)) is batch
  _, metrics = exact.loss_at_step(params, batch, jax.random.key(1), 0)
  assert "prior_components" not in metrics
