"""Shape buckets (`nbflows.shape_buckets`): one compile for many row counts.

Each test counts the programs a jitted function holds (`_cache_size()`)
after calls with two different counts, and compares the results with the
unpadded computation.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from nbflows import shape_buckets
from nbflows.models import registry
import test_sampling
import tiny_flow
from train.evaluation import requested_metrics
from train.evaluation import sample_quality


@functools.partial(jax.jit, static_argnums=(0, 4))
def unpadded_sample(model, params, key, cond, num):
  """The module's sampler, jitted for exactly `num` rows (no bucket)."""
  return model.module.apply(params, key, cond, num, 1.0, method="sample")


def test_bucket_size_is_the_next_power_of_two():
  assert [shape_buckets.bucket_size(n) for n in (1, 8, 9, 16, 17, 1000)] == [
      8, 8, 16, 16, 32, 1024]
  with pytest.raises(ValueError, match="num=0"):
    shape_buckets.bucket_size(0)


def test_pad_rows_repeats_the_first_row_of_numpy_and_jax_arrays():
  rows = np.arange(6.0).reshape(3, 2)
  for array in (rows, jnp.asarray(rows)):
    padded = shape_buckets.pad_rows(array, 5)
    np.testing.assert_array_equal(padded, rows[[0, 1, 2, 0, 0]])
  assert shape_buckets.pad_rows(rows, 3) is rows


def test_unconditional_sample_counts_share_one_compile():
  model = tiny_flow.tiny_model(3)
  params = {"params": {"shift": jnp.array([1.0, -2.0, 0.5]),
                       "log_scale": jnp.array([0.1, -0.3, 0.2])}}
  key = jax.random.key(7)
  ten, thirteen = model.sample(params, key, 10), model.sample(params, key, 13)
  assert model._sample._cache_size() == 1       # pylint: disable=protected-access
  assert ten.shape == (10, 3) and thirteen.shape == (13, 3)
  # Equal up to float rounding: XLA vectorises 16 rows unlike 10.
  np.testing.assert_allclose(
      ten, unpadded_sample(model, params, key, None, 10), rtol=1e-6)
  np.testing.assert_allclose(
      thirteen, unpadded_sample(model, params, key, None, 13), rtol=1e-6)


def test_conditional_sample_counts_share_one_compile():
  _, params, images, rows = test_sampling.setup()
  model = registry.build_model(test_sampling.tiny_config())   # none compiled
  cond = jnp.asarray(images[rows] + 0.5)             # [6, K, 8, 8, 1]
  key = jax.random.key(3)
  five, six = model.sample(params, key, cond[:5]), model.sample(params, key,
                                                                 cond)
  assert model._sample._cache_size() == 1       # pylint: disable=protected-access
  for samples, n in ((five, 5), (six, 6)):
    expected = np.clip(unpadded_sample(model, params, key, cond[:n], n), 0,
                       np.nextafter(np.float32(model.num_levels), 0))
    np.testing.assert_allclose(samples, expected, rtol=1e-5, atol=1e-5)


def test_the_last_partial_evaluation_batch_is_padded():
  model = tiny_flow.tiny_model(2)
  params = {"params": {"shift": jnp.array([0.5, -1.0]),
                       "log_scale": jnp.array([0.2, -0.1])}}
  x = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)
  config = ml_collections.ConfigDict({"eval_batch_size": 4})
  result = requested_metrics.marginal_on_test_split(model, params, config,
                                                    None, None, x)
  assert model._log_prob._cache_size() == 1     # pylint: disable=protected-access
  np.testing.assert_allclose(result.log_prob, model.log_prob(params, x),
                             rtol=1e-6)


def test_marginal_samples_compile_once_for_a_partial_last_batch():
  model = tiny_flow.tiny_model(2)
  params = {"params": {"shift": jnp.array([0.5, -1.0]),
                       "log_scale": jnp.array([0.2, -0.1])}}
  key = jax.random.key(5)
  samples = sample_quality.draw_marginal_samples(model, params, key, 10, None,
                                                 None, batch_size=4)
  assert model._sample._cache_size() == 1       # pylint: disable=protected-access
  expected = np.concatenate([
      unpadded_sample(model, params, jax.random.fold_in(key, i), None, n)
      for i, n in ((0, 4), (4, 4), (8, 2))])
  np.testing.assert_allclose(samples, expected, rtol=1e-5, atol=1e-6)
