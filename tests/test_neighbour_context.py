"""NCL and NCT given a context vector with their neighbours (issue 20).

With config.context.dim = C > 0 their cond is {"neighbours": N [B, k,
*event], "context": c [B, C]}; the layers go through the property suite
(tests/test_bijectors.py, "ncl-transform-context" and "nct-context"). Here
the model level: c changes log p(x | N, c) and the samples, the batch gives
both parts, bad dicts are refused by name, C = 0 is the model of before,
and the paths that need neighbourhoods alone refuse a context model.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ncl_digits
from configs import nct_digits
from nbflows import marginal
from nbflows.models import registry

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

B, K, C = 2, 2, 3
X = jnp.linspace(0.5, 16.5, B * 64).reshape(B, 8, 8, 1)
NEIGHBOURS = jnp.linspace(16.4, 0.6, B * K * 64).reshape(B, K, 8, 8, 1)
CONTEXT = jnp.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
CONFIGS = {"ncl": ncl_digits, "nct": nct_digits}


def tiny_config(name: str, context_dim: int):
  """The quick config of `name` on one scale, k = 2, given C."""
  config = CONFIGS[name].get_config("quick")
  config.flow.num_scales = 1
  config.flow.hidden_channels = 4
  config.neighbours.k = K
  config.context.dim = context_dim
  return config


def perturbed_params(model, cond):
  params = model.init(jax.random.key(0), {"x": X, **(
      cond if isinstance(cond, dict) else {"neighbours": cond})})
  rng = np.random.default_rng(0)
  return jax.tree.map(
      lambda p: p + 0.1 * rng.standard_normal(p.shape).astype(p.dtype), params)


@functools.lru_cache(maxsize=None)
def built(name: str):
  """(model with C = 3, perturbed params)."""
  model = registry.build_model(tiny_config(name, C))
  return model, perturbed_params(
      model, {"neighbours": NEIGHBOURS, "context": CONTEXT})


@pytest.mark.parametrize("name", ["ncl", "nct"])
def test_the_context_changes_log_prob_and_samples(name):
  model, params = built(name)
  assert model.condition_kind == "neighbours" and model.context_dim == C
  batch = {"x": X, "neighbours": NEIGHBOURS, "context": CONTEXT}
  cond = model.condition(batch)
  assert sorted(cond) == ["context", "neighbours"]
  log_prob = np.asarray(model.log_prob(params, X, cond))
  assert np.all(np.isfinite(log_prob))
  other = {"neighbours": NEIGHBOURS, "context": CONTEXT[::-1]}
  assert np.abs(log_prob - np.asarray(
      model.log_prob(params, X, other))).max() > 1e-3
  np.testing.assert_allclose(
      model.as_distribution(params, cond).log_prob(X), log_prob, rtol=1e-6)
  # One sample per row of the dict; the same noise under another context
  # lands elsewhere.
  key = jax.random.key(1)
  samples = np.asarray(model.sample(params, key, cond))
  assert samples.shape == X.shape
  assert np.abs(samples - np.asarray(
      model.sample(params, key, other))).max() > 1e-2


def test_contrastive_nct_scores_its_negatives_given_the_context():
  """Eq. 10's pass over P = 2 targets per neighbourhood tiles c with N."""
  model, params = built("nct")
  batch = {"x": X, "neighbours": NEIGHBOURS, "context": CONTEXT}
  targets = jnp.stack([X, X[::-1]])
  both = model.module.apply(params, targets, model.condition(batch),
                            method="targets_log_prob")
  for p in range(2):
    np.testing.assert_allclose(
        both[p], model.log_prob(params, targets[p], model.condition(batch)),
        rtol=1e-5)


@pytest.mark.parametrize("what, cond, match", [
    ("no context", {"neighbours": NEIGHBOURS},
     r"cond is a dict with keys \['neighbours'\]; expected \{\"neighbours\""),
    ("context of another width",
     {"neighbours": NEIGHBOURS, "context": CONTEXT[:, :2]},
     r"cond\['context'\] has shape \(2, 2\).*\[2, 3\]"),
    ("context of another batch",
     {"neighbours": NEIGHBOURS, "context": CONTEXT[:1]},
     r"cond\['context'\] has shape \(1, 3\)"),
    ("integer context",
     {"neighbours": NEIGHBOURS, "context": CONTEXT.astype(jnp.int32)},
     r"dtype int32; expected a float context"),
    ("bare neighbours", NEIGHBOURS, r"cond is of type .*; expected \{"),
    ("None", None, r"needs cond: \{\"neighbours\": neighbourhoods"),
])
@pytest.mark.parametrize("name", ["ncl", "nct"])
def test_a_bad_condition_is_refused_by_name(name, what, cond, match):
  del what
  model, params = built(name)
  with pytest.raises(ValueError, match=match):
    model.log_prob(params, X, cond)
  with pytest.raises(ValueError, match=match):
    model.sample(params, jax.random.key(0), cond)


def test_a_batch_without_contexts_is_refused():
  model, _ = built("ncl")
  with pytest.raises(ValueError, match=r"batch\['context'\], but the batch "
                     r"has only \['neighbours', 'x'\]"):
    model.condition({"x": X, "neighbours": NEIGHBOURS})


def test_without_a_context_the_model_is_the_one_of_before():
  """C = 0 builds the model of a config without the context section (an
  old config.json): the same Flax module (so the same function of the
  same parameters, bit for bit) and no context; a dict cond is refused.
  (Against main's code before NCL / NCT took a context, outputs compared
  bit for bit: the README's context section.)"""
  old = tiny_config("nct", 0)
  with old.unlocked():
    del old["context"]
  model, old_model = (registry.build_model(tiny_config("nct", 0)),
                      registry.build_model(old))
  assert model.module == old_model.module and model.context_dim is None
  assert model.module != built("nct")[0].module
  params = jax.eval_shape(model.init, jax.random.key(0),
                          {"x": X, "neighbours": NEIGHBOURS})
  with pytest.raises(ValueError, match="takes no context"):
    model.log_prob(params, X, {"neighbours": NEIGHBOURS, "context": CONTEXT})


def test_the_samples_grid_takes_each_rows_context():
  """samples.png's rows: each neighbourhood, a blank, its samples drawn
  given that neighbourhood and its example's context."""
  from train.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  model, params = built("ncl")
  batch = {"x": X, "neighbours": NEIGHBOURS, "context": CONTEXT}
  key = jax.random.key(1)
  grid = evaluate.draw_samples(model, params, key, B, batch)
  assert grid.shape == (B, K + 2, 8, 8, 1)
  np.testing.assert_array_equal(grid[:, :K], NEIGHBOURS)
  np.testing.assert_array_equal(grid[:, -1], model.sample(
      params, key, model.condition(batch)))


def test_paths_over_training_neighbourhoods_refuse_a_context():
  from train.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from nbflows import config_fields  # pylint: disable=g-import-not-at-top
  from train.evaluation import sample_quality  # pylint: disable=g-import-not-at-top
  model, params = built("ncl")
  with pytest.raises(ValueError, match="conditions on a context vector"):
    marginal.marginal_over_training_set(model, params, X, train=None)
  with pytest.raises(config_fields.ConfigError,
                     match="'digits' has no context to train or test on"):
    evaluate.load_data(tiny_config("ncl", C), model)
  with pytest.raises(ValueError, match="training neighbourhoods, which have "
                     "no contexts"):
    sample_quality.draw_marginal_samples(model, params, jax.random.key(0), 4,
                                         train=None, index=None, batch_size=4)
