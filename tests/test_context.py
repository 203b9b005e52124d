"""Flows conditioned on a context vector c [B, C] (condition_kind="context").

The layers go through the property suite (tests/test_bijectors.py, the
"context-*" cases); here the model level: the facade's checks of c, the
config's, the pipeline's "context" field, and c changing log p(x | c).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import maf_context_rotated_moons
from nbflows import config_fields
from nbflows import marginal
from nbflows.models import registry

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

X = jnp.array([[0.5, -0.2], [1.0, 0.3], [-0.7, 0.1]])
CONTEXT = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])


@functools.lru_cache(maxsize=None)
def trained_like():
  """The quick context MAF with perturbed (far from identity) parameters."""
  model = registry.build_model(maf_context_rotated_moons.get_config("quick"))
  params = model.init(jax.random.key(0), {"x": X, "context": CONTEXT})
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda p: p + 0.5 * rng.standard_normal(p.shape).astype(p.dtype), params)
  return model, params


@pytest.mark.parametrize("what, context, match", [
    ("another width", CONTEXT[:, :1], r"shape \(3, 1\).*\[3, 2\]"),
    ("another batch", CONTEXT[:2], r"shape \(2, 2\).*\[3, 2\]"),
    ("a 3-D array", CONTEXT[:, None], r"shape \(3, 1, 2\).*\[3, 2\]"),
    ("integers", CONTEXT.astype(jnp.int32), r"dtype int32.*float context"),
    ("NaN", CONTEXT.at[1, 0].set(jnp.nan), r"NaN.*\[3, 2\]"),
    ("None", None, r"needs cond: a float context of shape \[3, 2\]"),
])
def test_log_prob_refuses_a_bad_context(what, context, match):
  del what
  model, params = trained_like()
  with pytest.raises(ValueError, match=match):
    model.log_prob(params, X, context)


def test_the_context_changes_log_prob_and_samples():
  model, params = trained_like()
  assert model.condition_kind == "context" and model.context_dim == 2
  log_prob = np.asarray(model.log_prob(params, X, CONTEXT))
  turned = np.asarray(model.log_prob(params, X, CONTEXT[::-1]))
  assert np.all(np.isfinite(log_prob))
  assert np.abs(log_prob - turned).max() > 1e-2
  # One sample per context row; the same noise under another context lands
  # elsewhere.
  key = jax.random.key(1)
  samples = np.asarray(model.sample(params, key, CONTEXT))
  assert samples.shape == (3, 2)
  assert np.abs(samples - np.asarray(
      model.sample(params, key, CONTEXT[::-1]))).max() > 1e-2
  with pytest.raises(ValueError, match="samples from a condition"):
    model.sample(params, key, 3)


@pytest.mark.parametrize("model_name, dataset, dim, match", [
    ("maf", "rotated_moons", 3, "context of width 2; expected 0 or 2"),
    ("ccrnvp", "digits", 2, "model 'ccrnvp' does not take a context vector"),
    ("maf", "rotated_moons", -1, "expected an integer >= 0"),
])
def test_config_errors(model_name, dataset, dim, match):
  config = default.get_config("quick")
  config.model, config.dataset, config.context.dim = model_name, dataset, dim
  with pytest.raises(config_fields.ConfigError, match=match):
    registry.build_model(config)


def test_an_image_flow_takes_a_context_its_caller_gives():
  """RealNVP on digits given c [B, 3] (broadcast over space into every
  coupler): log p(x | c) depends on c; training it on digits, which have
  no contexts, is refused before any data are loaded."""
  from train.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  config = default.get_config("quick")
  config.context.dim = 3
  config.flow.num_scales = 1            # 4 checkerboard couplings
  model = registry.build_model(config)
  x = jnp.linspace(0.5, 16.5, 2 * 64).reshape(2, 8, 8, 1)
  context = jnp.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
  params = model.init(jax.random.key(0), {"x": x, "context": context})
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda p: p + 0.1 * rng.standard_normal(p.shape).astype(p.dtype), params)
  log_prob = np.asarray(model.log_prob(params, x, context))
  assert np.all(np.isfinite(log_prob))
  assert np.abs(log_prob - np.asarray(
      model.log_prob(params, x, context + 1.0))).max() > 1e-3
  with pytest.raises(ValueError, match=r"expected a float context of shape "
                     r"\[2, 3\]"):
    model.log_prob(params, x, context[:, :2])
  with pytest.raises(config_fields.ConfigError,
                     match="'digits' has no context to train or test on"):
    evaluate.load_data(config, model)


def test_the_unconditional_maf_ignores_the_datasets_context():
  config = maf_context_rotated_moons.get_config("quick")
  config.context.dim = 0
  assert registry.build_model(config).condition_kind == "none"


def test_marginal_refuses_a_context_model():
  model, params = trained_like()
  with pytest.raises(ValueError, match="conditions on a context vector"):
    marginal.marginal_over_training_set(model, params, X, train=None)


def test_batches_carry_the_splits_contexts():
  from nbflows.data import pipeline  # pylint: disable=g-import-not-at-top
  from nbflows.data import sources  # pylint: disable=g-import-not-at-top
  splits = sources.load("rotated_moons", num_toy_examples=200)
  assert splits.train.context.shape == (len(splits.train.labels), 2)
  config = default.get_config("quick")
  batch = next(pipeline.train_iterator(splits, None, config, seed=0))
  np.testing.assert_array_equal(batch["context"],
                                splits.train.context[batch["index"]])
  np.testing.assert_array_equal(batch["x"],
                                splits.train.images[batch["index"]])
  test_batch = next(pipeline.eval_iterator(splits, None, "test", 8))
  np.testing.assert_array_equal(test_batch["context"],
                                splits.test.context[:8])
  rings = sources.load("rings", num_toy_examples=200)
  assert rings.train.context is None
  assert "context" not in next(pipeline.eval_iterator(rings, None, "test", 8))
