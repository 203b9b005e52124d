"""The units rule (`nbflows.data_units`) at every entry, and the interop API.

Tiny image flows (rescale, logit, one ActNorm) on [2, 2, 1] images keep the
compiles short: one unconditional, one conditioned on neighbours through
its latent mean (the neighbours pass through the same rescale and logit, so
neighbours in the wrong units give NaN, as they do in NCL).
"""
from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from scipy import stats

from nbflows import data_units
from nbflows import sampling
from nbflows.bijectors import actnorm
from nbflows.bijectors import combinators
from nbflows.models import base
from nbflows.models import flow

EVENT = (2, 2, 1)
K = 3
ALPHA = 0.05


class NeighbourMeanFlow(flow.FlowModel):
  """z ~ N(w * mean_k h(N_k), I), h the preprocessing of the neighbours."""

  def setup(self):
    super().setup()
    self.weight = self.param("weight", nn.initializers.constant(0.5), ())

  def _mean(self, cond):
    h, _ = self.preprocessing.forward(cond.reshape(-1, *self.event_shape))
    return self.weight * h.reshape(cond.shape).mean(axis=1)

  def prior_log_prob(self, z, cond):
    return stats_normal(z - self._mean(cond))

  def prior_sample(self, key, cond, num_samples, temperature):
    return self._mean(cond) + temperature * jax.random.normal(
        key, (num_samples, *self.event_shape))


def stats_normal(z):
  return jnp.sum(jax.scipy.stats.norm.logpdf(z).reshape(z.shape[0], -1), -1)


def _images(levels, batch=4, seed=0):
  return np.random.default_rng(seed).integers(0, levels, (batch, *EVENT)
                                              ).astype(np.uint8)


@functools.cache
def unconditional(levels=256):
  module = flow.FlowModel(transform=combinators.Chain((actnorm.ActNorm(),)),
                          event_shape=EVENT, num_levels=levels,
                          logit_alpha=ALPHA)
  model = base.BijectiveModel(module, EVENT, name="tiny", num_levels=levels)
  params = model.init(jax.random.key(0), {"x": _images(levels)})
  return model, jax.tree.map(lambda p: p + 0.3, params)


@functools.cache
def conditional(levels=17):
  module = NeighbourMeanFlow(transform=combinators.Chain(()),
                             event_shape=EVENT, num_levels=levels,
                             logit_alpha=ALPHA)
  model = base.BijectiveModel(module, EVENT, condition_kind="neighbours",
                              name="tiny_nb", num_levels=levels)
  neighbours = _images(levels, 4 * K, seed=1).reshape(4, K, *EVENT)
  params = model.init(jax.random.key(0),
                      {"x": _images(levels), "neighbours": neighbours})
  return model, params, neighbours


# ------------------------------------------------------------------ x
def test_uint8_x_is_dequantised_at_bin_centres():
  model, params = unconditional()
  x = _images(256)
  centres = model.log_prob(params, x.astype(np.float32) + 0.5)
  np.testing.assert_array_equal(model.log_prob(params, x), centres)
  # The raw levels as floats are other points, with other densities.
  assert np.all(np.abs(model.log_prob(params, x.astype(np.float32)) -
                       centres) > 1e-3)


def test_a_key_dequantises_integers_with_uniform_noise():
  x = np.arange(256, dtype=np.uint8).reshape(64, 2, 2, 1)
  noisy = np.asarray(data_units.to_data_units(x, 256, "x",
                                              key=jax.random.key(0)))
  assert noisy.dtype == np.float32
  assert np.all((noisy >= x) & (noisy < x + 1.0))
  assert abs(np.mean(noisy - x) - 0.5) < 0.05          # u ~ U[0, 1)
  model, params = unconditional()
  keyed = model.log_prob(params, x[:4], key=jax.random.key(1))
  assert np.all(keyed != model.log_prob(params, x[:4]))


def test_x_rescaled_to_unit_interval_is_an_error_naming_the_units():
  model, params = unconditional()
  with pytest.raises(ValueError, match=r"x is a float batch in .*rescaled to "
                     r"\[0, 1\].*256-level dataset: floats in \[0, 256\)"):
    model.log_prob(params, _images(256) / 255.0)


def test_values_outside_the_levels_are_errors():
  model, params, neighbours = conditional()
  x = _images(17).astype(np.float32) * 15.0          # a 0-255 scale
  with pytest.raises(ValueError, match=r"x holds \d+ values outside \[0, 17\)"
                     r" \(min 0.0, max 240.0\).*17-level"):
    model.log_prob(params, x, neighbours)
  with pytest.raises(ValueError, match=r"x holds integer levels in \[17, 17\]; "
                     r"expected levels 0 to 16"):
    model.log_prob(params, np.full((4, *EVENT), 17, np.int32), neighbours)


def test_dequantised_training_batches_pass():
  # The pipeline's x = k + u reaches the largest float32 below L.
  model, params = unconditional(17)
  x = data_units.to_data_units(_images(17), 17, "x", key=jax.random.key(2))
  x = x.at[0, 0, 0, 0].set(np.nextafter(np.float32(17), 0))
  assert np.all(np.isfinite(model.log_prob(params, x)))
  assert np.isfinite(model.loss(params, {"x": x}, None)[0])


# ----------------------------------------------------------- neighbours
def test_neighbours_on_a_0_255_scale_are_an_error_naming_neighbours():
  model, params, neighbours = conditional()
  x = _images(17).astype(np.float32) + 0.5
  wrong = neighbours.astype(np.float32) * 15.0 + 0.5
  # Unchecked, the flow's logit of values beyond 1 is NaN.
  assert np.all(np.isnan(model._log_prob(params, x, wrong)))
  with pytest.raises(ValueError, match=r"neighbours holds \d+ values outside "
                     r"\[0, 17\).*17-level dataset"):
    model.log_prob(params, x, wrong)
  with pytest.raises(ValueError, match="neighbours holds"):
    model.sample(params, jax.random.key(0), wrong)
  with pytest.raises(ValueError, match=r"neighbours is a float batch .* "
                     r"rescaled to \[0, 1\]"):
    model.sample(params, jax.random.key(0), neighbours / 16.0)


def test_integer_neighbours_are_used_at_bin_centres():
  model, params, neighbours = conditional()
  x, key = _images(17), jax.random.key(3)
  centres = neighbours.astype(np.float32) + 0.5
  np.testing.assert_array_equal(model.log_prob(params, x, neighbours),
                                model.log_prob(params, x, centres))
  np.testing.assert_array_equal(model.sample(params, key, neighbours),
                                model.sample(params, key, centres))


def test_sample_like_applies_the_same_rule_to_its_images():
  model, params, neighbours = conditional()
  images, key = neighbours[0], jax.random.key(4)
  np.testing.assert_array_equal(
      sampling.sample_like(model, params, key, images, 5),
      sampling.sample_like(model, params, key, images + np.float32(0.5), 5))
  with pytest.raises(ValueError, match=r"images holds \d+ values outside "
                     r"\[0, 17\)"):
    sampling.sample_like(model, params, key, images * np.float32(15.0), 5)
  with pytest.raises(ValueError, match=r"images is a float batch .* rescaled"):
    sampling.sample_like(model, params, key, images / np.float32(16.0), 5)


# -------------------------------------------------------- traced checks
def test_validate_checks_traced_values_with_checkify():
  model, params = unconditional()
  x = _images(256).astype(np.float32) + 0.5
  checked = checkify.checkify(jax.jit(
      lambda v: model.log_prob(params, v, validate=True)))
  error, log_p = checked(x)
  assert error.get() is None
  np.testing.assert_allclose(log_p, model.log_prob(params, x), rtol=1e-6)
  error, _ = checked(x / 256.0)
  assert "x is a float batch in" in error.get()
  assert "rescaled to [0, 1]" in error.get()
  error, _ = checked(x + 256.0)
  assert "outside [0, 256)" in error.get()
  with pytest.raises(checkify.JaxRuntimeError, match="x holds values in"):
    error.throw()
  # Without validate, a jitted caller gets no check (and pays for none).
  unchecked = jax.jit(lambda v: model.log_prob(params, v))
  np.testing.assert_allclose(unchecked(x), log_p, rtol=1e-6)
  assert "check" not in str(jax.make_jaxpr(unchecked)(x))


def test_validate_checks_traced_neighbours():
  model, params, neighbours = conditional()
  checked = checkify.checkify(jax.jit(
      lambda n: model.sample(params, jax.random.key(0), n, validate=True)))
  error, _ = checked(neighbours.astype(np.float32) + 0.5)
  assert error.get() is None
  error, _ = checked(neighbours.astype(np.float32) * 15.0 + 0.5)
  assert "neighbours holds values in" in error.get()


# ---------------------------------------------------------------- interop
def test_as_distribution_agrees_with_the_model():
  model, params = unconditional()
  dist, key = model.as_distribution(params), jax.random.key(5)
  samples = dist.sample(seed=key, sample_shape=(3,))
  np.testing.assert_array_equal(samples, model.sample(params, key, 3))
  x = _images(256).astype(np.float32) + 0.5
  np.testing.assert_allclose(dist.log_prob(x), model.log_prob(params, x),
                             rtol=1e-6)
  assert dist.event_shape == EVENT and dist.batch_shape == ()


def test_conditional_distribution_has_a_batch_of_neighbourhoods():
  model, params, neighbours = conditional()
  dist, key = model.as_distribution(params, neighbours), jax.random.key(6)
  assert dist.batch_shape == (4,)
  np.testing.assert_array_equal(dist.sample(seed=key),
                                model.sample(params, key, neighbours))
  draws = dist.sample(seed=key, sample_shape=(2,))             # [2, 4, ...]
  assert draws.shape == (2, 4, *EVENT)
  np.testing.assert_allclose(
      dist.log_prob(draws)[1], model.log_prob(params, draws[1], neighbours),
      rtol=1e-6)
  with pytest.raises(ValueError, match=r"value has shape \(3, 2, 2, 1\)"):
    dist.log_prob(draws[0, :3])


def test_sample_and_log_prob_is_sample_then_log_prob():
  model, params, neighbours = conditional()
  key = jax.random.key(7)
  samples, log_p = model.sample_and_log_prob(params, key, neighbours, 0.8)
  np.testing.assert_array_equal(samples,
                                model.sample(params, key, neighbours, 0.8))
  np.testing.assert_allclose(log_p, model.log_prob(params, samples,
                                                   neighbours), rtol=1e-6)


def test_temperature_can_be_traced():
  model, params = unconditional()
  key = jax.random.key(8)
  jitted = jax.jit(lambda t: model.sample(params, key, 3, temperature=t))
  for t in (0.0, 0.7):
    np.testing.assert_allclose(jitted(t), model.sample(params, key, 3, t),
                               rtol=1e-6)
  assert np.any(jitted(0.0) != jitted(0.7))
  with pytest.raises(ValueError, match="temperature=-1.0; expected >= 0"):
    model.sample(params, key, 3, -1.0)


def _log_prob_by_hand(params, x, levels=256):
  """Rescale, logit, ActNorm and N(0, I) in float64 NumPy, [B]."""
  layer = jax.tree.map(np.asarray, params)["params"]["transform"]["layers_0"]
  log_scale, shift = (np.float64(layer[name]) for name in ("log_scale",
                                                           "shift"))
  p = ALPHA + (1 - 2 * ALPHA) * x / levels
  h = np.log(p) - np.log1p(-p)
  logdet = (np.log(1 - 2 * ALPHA) - np.log(p) - np.log1p(-p)).sum((1, 2, 3))
  z = np.exp(log_scale) * h + shift
  logdet += x[0].size * (log_scale - np.log(levels))
  return stats.norm.logpdf(z).sum((1, 2, 3)) + logdet


def test_float64_is_computed_in_float64_with_x64_on():
  model, params = unconditional()
  x = _images(256).astype(np.float64) + 0.123456789
  expected = _log_prob_by_hand(params, x)
  with jax.enable_x64(True):
    log_p = model.log_prob(params, x)
  assert log_p.dtype == np.float64
  np.testing.assert_allclose(log_p, expected, rtol=1e-12)
  # In float32 (x64 off) the same points are only good to float32 rounding.
  error32 = np.abs(np.asarray(model.log_prob(params, x)) - expected)
  assert np.all(error32 < 1e-3 * np.abs(expected)) and np.max(error32) > 1e-9


def test_sample_and_log_prob_is_in_float64_like_log_prob_with_x64_on():
  model, params = unconditional()
  key = jax.random.key(9)
  with jax.enable_x64(True):
    samples, log_p = model.sample_and_log_prob(params, key, 3, 0.7)
    expected = model.log_prob(params, samples)
  assert samples.dtype == log_p.dtype == np.float64
  # log_prob's float64 params (`params_like`), not float32 ones: the two
  # differ by float32 rounding, ~1e-7 relative.
  np.testing.assert_allclose(log_p, expected, rtol=1e-13)
  np.testing.assert_allclose(log_p, _log_prob_by_hand(params,
                                                      np.asarray(samples)),
                             rtol=1e-12)


# ------------------------------------------------- blank or rescaled
@functools.cache
def _digits():
  """16 of sklearn's 8x8 digits, levels 0..16 (L = 17), [16, 8, 8, 1]."""
  from sklearn import datasets
  return datasets.load_digits().images[:16, :, :, None].astype(np.float32)


@functools.cache
def _staged_units(levels):
  return checkify.checkify(jax.jit(lambda v: data_units.to_data_units(
      v, levels, "x", validate=True)))


BLANK = np.zeros((16, 8, 8, 1), np.uint8)
UNIFORM = np.random.default_rng(0).random((16, 8, 8, 1), np.float32)


BATCHES = [
    ("blank at bin centres", BLANK + np.float32(0.5), 17, False),
    ("blank dequantised", BLANK + UNIFORM, 17, False),
    ("blank dequantised, 256 levels", BLANK + UNIFORM, 256, False),
    ("digits / 16", lambda: _digits() / 16, 17, True),
    ("digits / 17 at bin centres", lambda: (_digits() + 0.5) / 17, 17, True),
    ("digits dequantised / 17", lambda: (_digits() + UNIFORM) / 17, 17, True),
    ("digits / 255 of 256 levels", lambda: _digits() / 255, 256, True),
    ("blank / 16", BLANK / np.float32(16), 17, True),
]


@pytest.mark.parametrize("name, values, levels, rescaled", BATCHES,
                         ids=[batch[0] for batch in BATCHES])
def test_blank_batches_in_data_units_pass_rescaled_digits_do_not(
    name, values, levels, rescaled):
  values = values() if callable(values) else values
  assert values.max() <= 1, name
  match = r"x is a float batch in .* looks like images rescaled to \[0, 1\]"
  error, _ = _staged_units(levels)(values)
  if rescaled:
    with pytest.raises(ValueError, match=match):
      data_units.check(values, levels, "x")
    assert re.search(match, error.get())
  else:
    data_units.check(values, levels, "x")
    assert error.get() is None


def test_a_model_scores_blank_images_in_data_units():
  model, params = unconditional()
  blank = np.zeros((4, *EVENT), np.uint8)
  centres = model.log_prob(params, blank + np.float32(0.5))
  np.testing.assert_array_equal(centres, model.log_prob(params, blank))
  noisy = data_units.to_data_units(blank, 256, "x", key=jax.random.key(3))
  assert np.all(np.isfinite(model.log_prob(params, noisy)))
