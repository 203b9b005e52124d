"""Sampling (paper 1, Alg. 2, App. B.4): unconditional, targeted, interpolated."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import ncl_digits
from nbflows import marginal
from nbflows import sampling
from nbflows.data import sources
from nbflows.models import registry
from nbflows.neighbours import knn
from nbflows.neighbours import pca

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

EVENT = (8, 8, 1)
K = 3


def tiny_config(hidden=4):
  config = ncl_digits.get_config("quick")
  with config.unlocked():
    config.flow.num_scales = 1            # four checkerboard couplings
    config.flow.hidden_channels = hidden
    config.ncl.hidden_channels = hidden
    config.neighbours.k = K
  return config


@functools.cache
def setup():
  """(model, perturbed params, training images uint8 [10], rows [6, K])."""
  model = registry.build_model(tiny_config())
  rng = np.random.default_rng(0)
  images = rng.integers(0, 17, (10, *EVENT)).astype(np.uint8)
  rows = np.stack([rng.choice(10, K, replace=False) for _ in range(6)])
  params = jax.jit(model.init)(jax.random.key(0), {
      "x": jnp.full((2, *EVENT), 8.5),
      "neighbours": jnp.asarray(images[rows[:2]] + 0.5)})
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(treedef, [
      leaf + 0.1 * jax.random.normal(k, leaf.shape)
      for leaf, k in zip(leaves, keys)])
  return model, params, images, rows


def test_interpolation_sets_swap_one_member_per_step():
  first, second = np.arange(4), 10 + np.arange(4)
  sets = sampling.interpolation_sets(first, second)
  assert sets.shape == (5, 4)
  np.testing.assert_array_equal(sets[0], first)
  np.testing.assert_array_equal(sets[-1], second)
  for j in range(5):
    assert np.sum(sets[j] >= 10) == j         # j members of the second set
  with pytest.raises(ValueError, match="equal shapes"):
    sampling.interpolation_sets(first, second[:3])


def test_interpolation_keeps_the_latent_fixed():
  model, params, images, rows = setup()
  result = sampling.interpolate_neighbourhoods(
      model, params, jax.random.key(3), images[rows[0]], images[rows[1]],
      num_samples=2, temperature=0.5)
  assert result.neighbourhoods.shape == (K + 1, K, *EVENT)
  assert result.samples.shape == (K + 1, 2, *EVENT)
  np.testing.assert_allclose(result.neighbourhoods[0], images[rows[0]] + 0.5)
  np.testing.assert_allclose(result.neighbourhoods[-1], images[rows[1]] + 0.5)
  # Mapping every sample back with its own set gives one and the same z.
  # Samples are clipped into [0, 17); at this temperature none is, so the
  # flow inverts them exactly.
  assert np.all((result.samples > 0) & (result.samples < 17 - 1e-3))
  forward = jax.jit(functools.partial(model.module.apply, method="forward"))
  latents = [forward(params, result.samples[j], jnp.broadcast_to(
      result.neighbourhoods[j], (2, K, *EVENT)))[0] for j in range(K + 1)]
  for z in latents[1:]:
    np.testing.assert_allclose(z, latents[0], atol=2e-3)
  # ... while the samples themselves move with the neighbourhood.
  assert float(jnp.abs(result.samples[0] - result.samples[-1]).max()) > 0.1


def test_zero_temperature_gives_the_image_of_the_latent_mean():
  model, params, images, rows = setup()
  neighbourhood = images[rows[2]]
  a = sampling.sample_like(model, params, jax.random.key(0), neighbourhood, 2,
                           temperature=0.0)
  b = sampling.sample_like(model, params, jax.random.key(1), neighbourhood, 2,
                           temperature=0.0)
  cond = jnp.broadcast_to(neighbourhood + 0.5, (2, K, *EVENT))
  mode, _ = model.inverse(params, jnp.zeros((2, *EVENT)), cond)
  np.testing.assert_allclose(a, b)
  np.testing.assert_allclose(a, mode, atol=1e-5)


def test_unconditional_samples_use_random_training_neighbourhoods():
  model, params, images, rows = setup()
  conditions = marginal.Neighbourhoods(images, rows)
  key = jax.random.key(4)
  samples, picked = sampling.sample_unconditional(model, params, key, 5,
                                                  conditions, temperature=0.5)
  assert samples.shape == (5, *EVENT) and picked.shape == (5,)
  assert picked.min() >= 0 and picked.max() < len(rows)
  _, sample_key = jax.random.split(key)
  expected = model.sample(params, sample_key,
                          jnp.asarray(images[rows[picked]] + 0.5), 0.5)
  np.testing.assert_allclose(samples, expected, atol=1e-5)


def test_targeted_sampling_rejects_a_wrong_set_of_images():
  model, params, images, _ = setup()
  with pytest.raises(ValueError,
                     match=r"expected a set of images \[k, 8, 8, 1\]"):
    sampling.sample_like(model, params, jax.random.key(0), images[0], 2)
  with pytest.raises(ValueError, match=r"\(3, 4, 4, 1\)"):
    sampling.sample_like(model, params, jax.random.key(0),
                         images[:3, :4, :4], 2)
  # NCL concatenates its K = 3 neighbours, so it takes no other number.
  with pytest.raises(ValueError, match=r"k = 2 neighbours.*\[2, 3, 8, 8, 1\]"):
    sampling.sample_like(model, params, jax.random.key(0), images[:2], 2)


def test_targeted_samples_resemble_their_neighbourhood():
  """After brief training on digits, samples given N are nearer N than a
  random other neighbourhood, in the PCA space the neighbours come from."""
  splits = sources.load("digits")
  images, labels = splits.train.images, splits.train.labels
  fitted = pca.fit(images, 0.99)
  features = pca.transform(fitted, images)
  neighbours, _ = knn.knn(features, K, database_labels=labels, progress=False)
  model = registry.build_model(tiny_config(hidden=16))
  optimizer = optax.adam(3e-3)
  rng = np.random.default_rng(0)

  def batch(size=32):
    rows = rng.integers(0, len(images), size)
    noise = rng.random((size, K + 1, *EVENT), np.float32)
    return {"x": images[rows] + noise[:, 0],
            "neighbours": images[neighbours[rows]] + noise[:, 1:]}

  params = jax.jit(model.init)(jax.random.key(0), batch())
  state = optimizer.init(params)

  @jax.jit
  def step(params, state, batch):
    grads = jax.grad(lambda p: model.loss(p, batch, None)[0])(params)
    updates, state = optimizer.update(grads, state)
    return optax.apply_updates(params, updates), state

  for _ in range(150):
    params, state = step(params, state, batch())

  chosen = rng.choice(len(images), 24, replace=False)
  others = np.roll(chosen, 1)
  own_distance, other_distance = [], []
  for i, j in zip(chosen, others):
    samples = sampling.sample_like(model, params, jax.random.key(int(i)),
                                   images[neighbours[i]], 4, temperature=0.7)
    sample_features = pca.transform(fitted, np.clip(np.asarray(samples), 0, 16))
    for centre, out in ((features[neighbours[i]].mean(0), own_distance),
                        (features[neighbours[j]].mean(0), other_distance)):
      out.append(np.linalg.norm(sample_features - centre, axis=1).mean())
  # Measured: about 11 against 47 after 100 steps; about equal untrained.
  assert np.mean(own_distance) < 0.5 * np.mean(other_distance)


def test_sample_grid_rows_are_a_neighbourhood_then_its_samples():
  from train.evaluation import evaluate    # pylint: disable=g-import-not-at-top
  model, params, images, rows = setup()
  neighbourhoods = images[rows].astype(np.float32) + 0.5      # [6, K, ...]
  grid = evaluate.draw_samples(model, params, jax.random.key(3), 12,
                               {"neighbours": neighbourhoods})
  assert grid.shape == (6, K + 1 + 2, *EVENT)       # 12 samples, 2 per set
  np.testing.assert_array_equal(grid[:, :K], neighbourhoods)
  assert np.isnan(grid[:, K]).all()
  samples = grid[:, K + 1:]
  assert np.isfinite(samples).all() and (samples >= 0).all()
  assert (samples < 17).all()
  assert np.abs(samples[:, 0] - samples[:, 1]).max() > 0   # two draws
