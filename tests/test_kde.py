"""Tests for the KDE baseline (paper 1, eq. 2), nbflows.models.kde."""
from __future__ import annotations

import json
import math
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.spatial
import scipy.special
import scipy.stats

from configs import kde_digits
from nbflows import checkpoint_loading
from nbflows.data import pipeline
from nbflows.models import kde
from nbflows.models import protocols
from test_entry_points import run_module
from train.evaluation import evaluate
from train.loop import fitting


def scipy_kde_log_prob(x, centres, sigma):
  """log (1/N) sum_i N(x | c_i, sigma^2 I) by scipy in float64.

  The isotropic Gaussian is the product of D univariate normals.
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  centres = np.asarray(centres, np.float64).reshape(len(centres), -1)
  log_kernels = scipy.stats.norm.logpdf(
      x[:, None, :], loc=centres[None], scale=sigma).sum(-1)     # [B, N]
  return scipy.special.logsumexp(log_kernels, axis=1) - np.log(len(centres))


def digit_like_data(seed, n):
  """[n, 4, 4, 1] integer images in 0..16 from 3 prototypes, dequantised."""
  rng = np.random.default_rng(seed)
  prototypes = rng.integers(0, 17, size=(3, 4, 4, 1))
  images = prototypes[rng.integers(0, 3, n)] + rng.integers(-2, 3,
                                                            (n, 4, 4, 1))
  images = np.clip(images, 0, 16)
  return images.astype(np.float32) + rng.uniform(0, 1, images.shape)


@pytest.mark.parametrize("block_size", [7, 1024])  # 7 does not divide 50
def test_log_prob_equals_scipy(block_size):
  centres = digit_like_data(0, 50)
  x = digit_like_data(1, 6)
  model = kde.KernelDensityModel((4, 4, 1), sigma=1.3, block_size=block_size,
                                 num_levels=17)
  params = model.init(jax.random.key(0), {"x": centres})
  expected = scipy_kde_log_prob(x, centres, 1.3)
  np.testing.assert_allclose(model.log_prob(params, jnp.asarray(x)), expected,
                             rtol=1e-5, atol=1e-3)
  bpd = model.bits_per_dim(params, jnp.asarray(x))
  np.testing.assert_allclose(bpd, -expected / (16 * np.log(2)), rtol=1e-5)


def test_leave_one_out_equals_scipy_without_the_point():
  centres = digit_like_data(2, 30)
  indices = np.array([0, 5, 29])
  got = kde.leave_one_out_log_prob(jnp.asarray(centres), jnp.log(0.9),
                                   indices, block_size=8)
  for value, j in zip(np.asarray(got), indices):
    others = np.delete(centres, j, axis=0)
    assert value == pytest.approx(
        scipy_kde_log_prob(centres[j:j + 1], others, 0.9)[0], abs=1e-3)
  # Without leaving out, a training point scores higher (its own kernel).
  with_self = kde.kde_log_prob(jnp.asarray(centres[indices]),
                               jnp.asarray(centres), jnp.log(0.9))
  assert (np.asarray(with_self) > np.asarray(got)).all()


def test_integer_images_become_bin_centres():
  images = np.array([[[[0]], [[16]]]], np.uint8)   # [1, 2, 1, 1]
  np.testing.assert_array_equal(kde.to_centres(images), images + 0.5)


def test_fit_bandwidth_maximises_validation_likelihood():
  train = digit_like_data(3, 200)
  validation = digit_like_data(4, 100)
  grid = np.geomspace(0.1, 10.0, 9)
  fit = kde.fit_bandwidth(jnp.asarray(train), jnp.asarray(validation), grid,
                          batch_size=32, block_size=64)
  # Every grid value checked independently with scipy.
  expected = np.array([scipy_kde_log_prob(validation, train, s).mean()
                       for s in grid])
  np.testing.assert_allclose(fit.validation_log_prob, expected, rtol=1e-5,
                             atol=1e-3)
  assert fit.sigma == grid[np.argmax(expected)]
  assert 0 < np.argmax(expected) < len(grid) - 1  # an interior optimum

  model = kde.KernelDensityModel((4, 4, 1), num_levels=17)
  params, model_fit = model.fit(jax.random.key(0), train, validation, grid)
  assert float(jnp.exp(params["log_sigma"])) == pytest.approx(fit.sigma,
                                                              rel=1e-6)
  assert model_fit.sigma == fit.sigma


def test_2d_kde_integrates_to_one():
  rng = np.random.default_rng(5)
  centres = rng.normal(size=(20, 2)) * np.array([1.0, 0.5])
  sigma = 0.3
  step = 0.05  # a sixth of sigma
  axis = np.arange(-6.0, 6.0, step) + step / 2
  grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
  model = kde.KernelDensityModel((2,), sigma=sigma, block_size=8)
  params = model.init(jax.random.key(0), {"x": jnp.asarray(centres,
                                                          jnp.float32)})
  density = np.exp(np.concatenate([
      np.asarray(model.log_prob(params, jnp.asarray(grid[i:i + 4096],
                                                     jnp.float32)))
      for i in range(0, len(grid), 4096)]))
  assert density.sum() * step ** 2 == pytest.approx(1.0, abs=0.01)


def test_samples_are_centres_plus_scaled_gaussian_noise():
  centres = jnp.array([[0.0, 0.0], [100.0, 100.0]])
  model = kde.KernelDensityModel((2,), sigma=2.0)
  params = model.init(jax.random.key(0), {"x": centres})
  samples = np.asarray(model.sample(params, jax.random.key(1), 4000,
                                    temperature=0.5))
  near_second = samples[:, 0] > 50
  assert 0.45 < near_second.mean() < 0.55              # centres picked evenly
  noise = samples - np.where(near_second[:, None], 100.0, 0.0)
  assert np.abs(noise.mean(0)).max() < 0.1
  np.testing.assert_allclose(noise.std(0), 0.5 * 2.0, rtol=0.05)


def test_build_kde_reads_the_dataset_shape():
  config = ml_collections.ConfigDict({"model": "kde", "dataset": "digits"})
  model = kde.build_kde(config)
  assert model.event_shape == (8, 8, 1) and model.num_levels == 17


def test_errors_name_the_problem():
  model = kde.KernelDensityModel((2,))
  params = model.init(jax.random.key(0), {"x": jnp.zeros((3, 2))})
  with pytest.raises(ValueError, match="expected \\[batch, 2\\]"):
    model.log_prob(params, jnp.zeros((3, 3)))
  assert not protocols.offers(model, protocols.Bijective)  # no forward
  with pytest.raises(ValueError, match="grid="):
    kde.fit_bandwidth(jnp.zeros((3, 2)), jnp.zeros((3, 2)), [1.0, -1.0])
  with pytest.raises(ValueError, match="sigma=0"):
    kde.KernelDensityModel((2,), sigma=0.0)


def log_mean_exp_kde(x, centres, sigma):
  """Eq. 2 by SciPy in float64: exact squared distances, then log-mean-exp.

  log (1/N) sum_i exp(-||x - c_i||^2 / (2 sigma^2)) - D/2 log(2 pi sigma^2).
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  centres = np.asarray(centres, np.float64).reshape(len(centres), -1)
  sq_dist = scipy.spatial.distance.cdist(x, centres, "sqeuclidean")
  return (scipy.special.logsumexp(-sq_dist / (2 * sigma ** 2), axis=1)
          - math.log(len(centres))
          - 0.5 * x.shape[1] * math.log(2 * math.pi * sigma ** 2))


@pytest.fixture(scope="module")
def kde_run(tmp_path_factory):
  """`python -m train.main --config configs/kde_digits.py:quick`."""
  workdir = str(tmp_path_factory.mktemp("kde_digits"))
  run = run_module("train.main", "--config", "configs/kde_digits.py:quick",
                   "--workdir", workdir, "--config.eval.metrics=bpd")
  assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
  # Its one validation, on the console (train.loop.fitting).
  assert len(re.findall(r"fitted: validation bits/dim \d+\.\d{4} ",
                        run.stderr)) == 1, run.stderr[-3000:]
  config = kde_digits.get_config("quick")
  model, params, _ = checkpoint_loading.load_checkpoint(workdir)
  splits, _ = evaluate.load_data(config, model)
  with open(os.path.join(workdir, evaluate.EVAL_FILE)) as f:
    return workdir, config, splits, params, json.load(f)


def test_train_main_centres_the_kde_on_the_whole_training_split(kde_run):
  _, _, splits, params, report = kde_run
  # Every training image at the middle of its bin: not one batch of them.
  np.testing.assert_array_equal(params["train"], splits.train.images + 0.5)
  assert report["steps_trained"] == 0          # fitted, no gradient steps
  assert report["num_params"] == splits.train.images.size + 1


def test_train_main_picks_the_bandwidth_on_validation_data(kde_run):
  _, config, splits, params, _ = kde_run
  centres = splits.train.images + 0.5
  validation = fitting.validation_points(splits, config.eval_batch_size)
  grid = kde.default_bandwidth_grid(centres)
  scores = [log_mean_exp_kde(validation, centres, s).mean() for s in grid]
  assert float(jnp.exp(params["log_sigma"])) == pytest.approx(
      grid[np.argmax(scores)], rel=1e-6)
  assert 0 < np.argmax(scores) < len(grid) - 1  # an interior optimum


def test_train_main_test_bpd_equals_a_scipy_log_mean_exp(kde_run):
  workdir, config, splits, params, report = kde_run
  test_x = np.concatenate([batch["x"] for batch in pipeline.eval_iterator(
      splits, None, "test", config.eval_batch_size)])
  sigma = float(jnp.exp(params["log_sigma"]))
  bpd = -log_mean_exp_kde(test_x, splits.train.images + 0.5, sigma) / (
      test_x[0].size * math.log(2.0))
  assert report["test_bpd"] == pytest.approx(bpd.mean(), rel=1e-5)
  # train.evaluate restores the fitted checkpoint (nbflows.load_checkpoint).
  again = evaluate.evaluate(config, workdir, "bpd")
  assert again["test_bpd"] == pytest.approx(report["test_bpd"], rel=1e-6)
