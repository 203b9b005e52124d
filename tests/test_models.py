"""Tests of the flow models (RealNVP multi-scale, Glow, MAF, RealNVP-MLP).

Tiny architectures keep compile times down. Parameters are perturbed away
from their initial values wherever the identity at initialisation would make
a check vacuous.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

import nbflows
from configs import default
from nbflows.bijectors import actnorm
from nbflows.bijectors import combinators
from nbflows.bijectors import multiscale
from nbflows.data import sources
from nbflows.distributions import gaussian
from nbflows.models import base, flow, glow, maf, realnvp

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

ALPHA = 0.05
LEVELS = 17   # the digits' 0..16


class Case(NamedTuple):
  model: base.BijectiveModel
  params: object       # perturbed parameters
  init_params: object  # parameters as initialised
  x: jax.Array


def _init_key(seed=1):
  # Initialisers drawing from the default threefry keys compile about four
  # times slower than from "rbg" keys; the tests only need some draw.
  return jax.random.key(seed, impl="rbg")


def _perturb(params, seed=2, scale=0.1):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda leaf: leaf + scale * rng.standard_normal(leaf.shape, np.float32),
      params)


def _image_batch(batch=4, shape=(8, 8, 1), levels=LEVELS, seed=0):
  rng = np.random.default_rng(seed)
  k = rng.integers(0, levels, (batch, *shape))
  return jnp.asarray(k + 0.999 * rng.random(k.shape), jnp.float32)


def _transform(name):
  if name == "rnvp":   # 2 scales: 1 + 1 couplings, then 2; hidden 4, no blocks
    return realnvp.multiscale_transform((8, 8, 1), 2, 1, 4, 0,
                                        last_scale_couplings=2)
  if name == "glow_scan":   # 1 scale of 2 scanned steps
    return glow.multiscale_transform((8, 8, 1), 1, 2, 4, 0, scan=True)
  if name == "maf":
    return maf.maf_transform(3, (8,))
  if name == "rnvp_mlp_scan":   # a scanned pair and one more coupling
    return realnvp.vector_transform(3, (8,), scan=True)
  raise ValueError(name)


IMAGE_MODELS = ("rnvp", "glow_scan")
ALL_MODELS = IMAGE_MODELS + ("maf", "rnvp_mlp_scan")


@functools.lru_cache(maxsize=None)
def _case(name: str) -> Case:
  """A tiny model of each kind, initialised once per test session."""
  if name in IMAGE_MODELS:
    shape, levels, x = (8, 8, 1), LEVELS, _image_batch()
  else:   # continuous vectors: no preprocessing
    shape, levels = (4,), None
    x = 2.0 * jax.random.normal(jax.random.key(0), (4, 4))
  module = flow.FlowModel(transform=_transform(name), event_shape=shape,
                          num_levels=levels, logit_alpha=ALPHA)
  model = base.BijectiveModel(module, shape, name=name, num_levels=levels)
  init_params = model.init(_init_key(), {"x": x})
  params = _perturb(init_params)
  return Case(model, params, init_params, x)


@pytest.fixture(params=ALL_MODELS)
def case(request) -> Case:
  return _case(request.param)


def _preprocess_by_hand(x, levels, alpha=ALPHA):
  """Rescale + logit in float64 NumPy: (z, log-det per example)."""
  x = np.asarray(x, np.float64)
  p = alpha + (1 - 2 * alpha) * x / levels
  z = np.log(p) - np.log1p(-p)
  per_dim = np.log(1 - 2 * alpha) - np.log(p) - np.log1p(-p)
  d = x[0].size
  logdet = per_dim.reshape(len(x), -1).sum(-1) - d * np.log(levels)
  return z, logdet


# ------------------------------------------------------------- the density
def test_log_prob_is_standard_normal_of_z_plus_logdet(case):
  z, logdet = case.model.forward(case.params, case.x)
  expected = (stats.norm.logpdf(np.asarray(z, np.float64))
              .reshape(len(z), -1).sum(-1) + np.asarray(logdet))
  np.testing.assert_allclose(case.model.log_prob(case.params, case.x),
                             expected, rtol=1e-5, atol=1e-3)


def test_logdet_equals_log_abs_det_jacobian(case):
  model, params = case.model, case.params
  x = case.x[:1]

  def forward_flat(v):
    z, _ = model.module.apply(params, v.reshape(x.shape), method="forward")
    return z.reshape(-1)

  jacobian = jax.jit(jax.jacfwd(forward_flat))(x.reshape(-1))
  sign, expected = np.linalg.slogdet(np.asarray(jacobian, np.float64))
  _, logdet = model.forward(params, x)
  assert sign != 0
  np.testing.assert_allclose(logdet[0], expected, rtol=1e-4, atol=2e-3)


def test_inverse_of_forward_is_identity(case):
  z, logdet = case.model.forward(case.params, case.x)
  assert z.shape == case.x.shape
  x, inverse_logdet = case.model.inverse(case.params, z)
  np.testing.assert_allclose(x, case.x, atol=1e-4, rtol=1e-5)
  np.testing.assert_allclose(inverse_logdet, -logdet, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", ["maf", "rnvp_mlp_scan"])
def test_jitted_equals_eager(name):
  case = _case(name)
  eager = case.model.module.apply(case.params, case.x, method="log_prob")
  np.testing.assert_allclose(case.model.log_prob(case.params, case.x), eager,
                             rtol=1e-5, atol=1e-4)


def test_samples_have_the_event_shape_and_are_finite(case):
  samples = case.model.sample(case.params, jax.random.key(3), 2)
  assert samples.shape == (2, *case.model.event_shape)
  assert np.all(np.isfinite(samples))
  assert float(jnp.std(samples[0] - samples[1])) > 0   # distinct draws
  if case.model.num_levels is not None:
    # The inverse logit reaches a L / (1 - 2a) beyond [0, L); samples are
    # clipped into the data range, so the model can score its own samples.
    hot = case.model.sample(case.params, jax.random.key(4), 64, 3.0)
    assert np.all(hot >= 0) and np.all(hot < case.model.num_levels)
    assert np.any(hot == 0)   # the clip was exercised at this temperature
    assert np.all(np.isfinite(case.model.log_prob(case.params, hot)))


def test_temperature_zero_gives_the_image_of_the_prior_mode(case):
  samples = case.model.sample(case.params, jax.random.key(3), 2, 0.0)
  mode, _ = case.model.inverse(
      case.params, jnp.zeros((1, *case.model.event_shape)))
  np.testing.assert_allclose(samples, jnp.broadcast_to(mode, samples.shape),
                             atol=1e-5)


# -------------------------------------------------- identity at initialisation
@pytest.mark.parametrize("name", ["rnvp", "maf", "rnvp_mlp_scan"])
def test_flow_after_preprocessing_is_the_identity_at_init(name):
  model, _, params, x = _case(name)
  if model.num_levels is None:   # no preprocessing: z = x
    z_hand, logdet_hand = np.asarray(x, np.float64), np.zeros(len(x))
  else:
    z_hand, logdet_hand = _preprocess_by_hand(x, model.num_levels)
  z, logdet = model.forward(params, x)
  np.testing.assert_allclose(z, z_hand, atol=1e-4)
  np.testing.assert_allclose(logdet, logdet_hand, rtol=1e-5, atol=1e-6)
  expected = stats.norm.logpdf(z_hand).reshape(len(x), -1).sum(-1) + logdet_hand
  np.testing.assert_allclose(model.log_prob(params, x), expected, rtol=1e-5)
  # T = 0 gives z = 0; through the logit, p = 1/2, so x = L / 2 everywhere.
  mode = model.sample(params, jax.random.key(0), 2, 0.0)
  np.testing.assert_allclose(mode, (model.num_levels or 0) / 2, atol=1e-5)


def test_bits_per_dim_counts_dequantisation_and_logit_by_hand():
  # A 2x2x1 image through the preprocessing alone (an empty transform).
  levels, alpha = 4, 0.1
  x = jnp.array([[[[0.5], [3.25]], [[1.0], [2.75]]]])   # [1, 2, 2, 1]
  module = flow.FlowModel(transform=combinators.Chain(()),
                          event_shape=(2, 2, 1), num_levels=levels,
                          logit_alpha=alpha)
  model = base.BijectiveModel(module, (2, 2, 1), num_levels=levels)
  params = model.init(jax.random.key(0), {"x": x})
  values = np.array([0.5, 3.25, 1.0, 2.75])
  p = alpha + (1 - 2 * alpha) * values / levels
  z = np.log(p / (1 - p))
  log_px = (np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi))           # prior
            + np.sum(np.log(1 - 2 * alpha) - np.log(p * (1 - p)))   # logit
            - 4 * np.log(levels))                                    # rescale
  bpd = -log_px / (4 * np.log(2))
  np.testing.assert_allclose(model.bits_per_dim(params, x), [bpd], rtol=1e-5)
  loss, metrics = model.loss(params, {"x": x}, jax.random.key(0))
  np.testing.assert_allclose(loss, bpd, rtol=1e-5)
  np.testing.assert_allclose(metrics["bpd"], bpd, rtol=1e-5)


# ----------------------------------------------------------------- nn.scan
def test_scanned_and_unrolled_stacks_compute_the_same_function():
  x = jax.random.normal(jax.random.key(0), (3, 4))
  unrolled = realnvp.vector_transform(4, (8,), scan=False)
  scanned = realnvp.vector_transform(4, (8,), scan=True)
  shapes = jax.eval_shape(unrolled.init, _init_key(), x)
  p = _perturb(jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes),
               scale=0.3)["params"]
  # Unrolled layers 0..3 -> pairs (0, 1) and (2, 3) stacked on a new axis.
  stack = lambda a, b: jax.tree.map(lambda u, v: jnp.stack([u, v]), a, b)
  scanned_params = {"params": {"layers_0": {"step": {
      "layers_0": stack(p["layers_0"], p["layers_2"]),
      "layers_1": stack(p["layers_1"], p["layers_3"])}}}}
  jax.tree.map(lambda a, b: np.testing.assert_equal(a.shape, b.shape),
               scanned_params, jax.eval_shape(scanned.init, _init_key(), x))
  for method, inputs in (("forward", x), ("inverse", x)):
    expected = unrolled.apply({"params": p}, inputs, method=method)
    actual = scanned.apply(scanned_params, inputs, method=method)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(actual[1], expected[1], rtol=1e-5, atol=1e-5)


def test_actnorm_inside_scan_is_initialised_on_each_copys_input():
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (64, 4, 4, 2))
  layer = combinators.Repeat(step=actnorm.ActNorm(), length=3)
  params = layer.init(jax.random.key(1), x)
  scales = params["params"]["step"]["log_scale"]   # [3, C]
  np.testing.assert_allclose(scales[0], -np.log(np.std(x, axis=(0, 1, 2))),
                             rtol=1e-3)
  # Copies 2 and 3 see normalised inputs, so they start as the identity.
  np.testing.assert_allclose(scales[1:], 0.0, atol=1e-3)
  y, _ = layer.apply(params, x, method="forward")
  np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-3)


# ------------------------------------------------------------- conditioning
class _NeighbourConditioned(flow.FlowModel):
  """NCT-style test model: scale s's couplings see neighbour s."""

  def transform_condition(self, cond):   # cond: [B, num_scales, H, W, C]
    return tuple(cond[:, s] / LEVELS for s in range(cond.shape[1]))


def test_conditional_couplings_get_their_scales_condition():
  transform = realnvp.multiscale_transform((8, 8, 1), 2, 1, 4, 0,
                                           conditional=True,
                                           last_scale_couplings=2)
  module = _NeighbourConditioned(transform=transform, event_shape=(8, 8, 1),
                                 num_levels=LEVELS, logit_alpha=ALPHA)
  model = base.BijectiveModel(module, (8, 8, 1), condition_kind="neighbours",
                              num_levels=LEVELS)
  x = _image_batch(2)
  neighbours = _image_batch(2 * 2, seed=1).reshape(2, 2, 8, 8, 1)
  params = _perturb(model.init(_init_key(), {"x": x,
                                            "neighbours": neighbours}))
  z, _ = model.forward(params, x, neighbours)
  x_back, _ = model.inverse(params, z, neighbours)
  np.testing.assert_allclose(x_back, x, atol=1e-4)
  # After the first squeeze, channels 0-1 are factored out at scale 0 and
  # channels 2-3 go through scale 1: a new condition for scale 1 changes
  # only the latter, one for scale 0 changes both.
  other = _image_batch(2, seed=2)
  z_new_scale_1, _ = model.forward(params, x, neighbours.at[:, 1].set(other))
  z_new_scale_0, _ = model.forward(params, x, neighbours.at[:, 0].set(other))
  halves = lambda z: jnp.split(nbflows.bijectors.squeeze(z), 2, axis=-1)
  (out, deeper), (out_1, deeper_1), (out_0, deeper_0) = map(
      halves, (z, z_new_scale_1, z_new_scale_0))
  np.testing.assert_allclose(out_1, out, atol=1e-6)
  assert np.all(np.abs(deeper_1 - deeper).max(axis=(1, 2, 3)) > 1e-3)
  assert np.all(np.abs(out_0 - out).max(axis=(1, 2, 3)) > 1e-3)
  assert np.all(np.abs(deeper_0 - deeper).max(axis=(1, 2, 3)) > 1e-3)
  with pytest.raises(ValueError, match="needs cond"):
    model.log_prob(params, x)
  with pytest.raises(ValueError, match="cond has shape"):
    model.log_prob(params, x, neighbours[:, :, :4])


class _ShiftedPrior(flow.FlowModel):
  """A prior hook override: N(mu, I) with mu_i = label in every dimension."""

  def prior_log_prob(self, z, cond):
    return gaussian.diagonal_normal_log_prob(
        z, cond.astype(z.dtype)[:, None], 0.0)

  def prior_sample(self, key, cond, num_samples, temperature):
    mean = jnp.broadcast_to(cond.astype(jnp.float32)[:, None],
                            (num_samples, *self.event_shape))
    return gaussian.diagonal_normal_sample(key, mean, 0.0, temperature)


def test_prior_hooks_replace_the_standard_normal():
  module = _ShiftedPrior(transform=_transform("maf"), event_shape=(4,))
  model = base.BijectiveModel(module, (4,), condition_kind="label",
                              num_classes=3)
  x, labels = jax.random.normal(jax.random.key(0), (2, 4)), jnp.array([0, 2])
  params = _perturb(model.init(_init_key(), {"x": x, "label": labels}))
  z, logdet = model.forward(params, x, labels)
  mean = np.asarray(labels, np.float64)[:, None]
  expected = (stats.norm.logpdf(np.asarray(z, np.float64) - mean).sum(-1)
              + logdet)
  np.testing.assert_allclose(model.log_prob(params, x, labels), expected,
                             rtol=1e-5, atol=1e-4)
  mode = model.sample(params, jax.random.key(0), labels, 0.0)
  z_mode, _ = model.forward(params, mode, labels)
  np.testing.assert_allclose(z_mode, jnp.broadcast_to(mean, z.shape),
                             atol=1e-4)


# ------------------------------------------------------------ bad inputs
def test_invalid_inputs_raise_value_errors_naming_the_problem(case):
  model, params, x = case.model, case.params, case.x
  with pytest.raises(ValueError, match="shape"):
    model.log_prob(params, x[..., None])
  with pytest.raises(ValueError, match="shape"):
    model.forward(params, x.reshape(len(x), -1)[:, :2])
  with pytest.raises(ValueError, match="NaN"):
    model.log_prob(params, x.at[0].set(jnp.nan))
  with pytest.raises(ValueError, match="infinite"):
    model.inverse(params, jnp.full_like(x, jnp.inf))
  with pytest.raises(ValueError, match="unconditional"):
    model.log_prob(params, x, jnp.zeros(len(x), jnp.int32))
  if model.num_levels is not None:
    with pytest.raises(ValueError, match=r"outside \[0, 17\)"):
      model.log_prob(params, x + LEVELS)


def test_layers_reject_cond_they_were_not_built_for():
  chain = realnvp.vector_transform(2, (8,))
  with pytest.raises(ValueError, match="cond was given"):   # before any use
    chain.apply({}, jnp.ones((2, 4)), jnp.ones((2, 3)), method="forward")
  scales = realnvp.multiscale_transform((8, 8, 1), 2, 1, 4, 0)
  with pytest.raises(ValueError, match="one per scale"):
    scales.init(jax.random.key(0), jnp.ones((1, 8, 8, 1)), (None,))


# -------------------------------------------------------- building models
def test_max_num_scales():
  realnvp_rule, glow_rule = multiscale.REALNVP_SCALES, multiscale.GLOW_SCALES
  assert multiscale.max_num_scales(8, 8, realnvp_rule) == 2       # digits
  assert multiscale.max_num_scales(28, 28, realnvp_rule) == 3   # 28, 14, 7
  assert multiscale.max_num_scales(2, 2, realnvp_rule) == 1
  assert multiscale.max_num_scales(8, 8, glow_rule) == 2
  with pytest.raises(ValueError, match="allow 1 to 2"):
    realnvp.multiscale_transform((8, 8, 1), 3, 1, 4, 1)
  with pytest.raises(ValueError, match="allow 1 to 2"):
    glow.multiscale_transform((8, 8, 1), 3, 1, 4, 1)


@pytest.mark.parametrize("name,dataset,event_shape", [
    ("rnvp", "digits", (8, 8, 1)), ("glow", "mnist5k", (28, 28, 1)),
    ("maf", "two_rectangles", (2,)), ("rnvp_mlp", "digits", (8, 8, 1))])
def test_build_model_reads_the_dataset_info(name, dataset, event_shape):
  config = default.get_config("quick")
  config.model, config.dataset = name, dataset
  model = nbflows.build_model(config)
  info = sources.dataset_info(dataset)
  assert model.name == name and model.event_shape == event_shape
  assert model.num_levels == info.num_levels
  assert model.module.num_levels == info.num_levels
  assert model.module.logit_alpha == config.flow.logit_alpha


def test_build_model_rejects_unknown_names_and_unsuitable_datasets():
  config = default.get_config("quick")
  config.model = "rnvpp"
  with pytest.raises(ValueError, match="unknown model 'rnvpp'.*'glow'.*'rnvp'"):
    nbflows.build_model(config)
  config.model, config.dataset = "rnvp", "two_rectangles"
  with pytest.raises(ValueError, match="needs images"):
    nbflows.build_model(config)


def test_count_params_by_hand():
  # Per split coupling on D = 4: dense 2 -> 8 (24), output 8 -> 4 (36) and
  # a log-scale factor per transformed feature (2): 62; two couplings: 124.
  chain = realnvp.vector_transform(2, (8,))
  shapes = jax.eval_shape(chain.init, _init_key(), jnp.ones((1, 4)))
  assert nbflows.count_params(shapes) == 124


def _output_widths(config) -> list[int]:
  """Last axis of every coupler / MADE output kernel of the built model."""
  model = nbflows.build_model(config)
  x = jnp.ones((2, *model.event_shape))
  shapes = jax.eval_shape(model.module.init, _init_key(), x)
  return [leaf.shape[-1] for path, leaf in
          jax.tree_util.tree_leaves_with_path(shapes)
          if "output" in jax.tree_util.keystr(path) and
          jax.tree_util.keystr(path).endswith("['kernel']")]


@pytest.mark.parametrize("name,dataset", [
    ("rnvp", "digits"), ("rnvp_mlp", "two_rectangles"), ("maf", "rings")])
def test_config_flow_transformer_picks_spline_layers(name, dataset):
  # 3 bins: 3 * 3 + 1 = 10 spline parameters per transformed dimension,
  # where an affine layer's networks return 2 per dimension (2, 4 or 8
  # outputs here).
  config = default.get_config("quick")
  config.model, config.dataset = name, dataset
  affine = _output_widths(config)
  assert affine and all(width % 10 for width in affine), affine
  config.flow.transformer, config.flow.num_bins = "spline", 3
  spline = _output_widths(config)
  assert [width // 10 for width in spline] == [w // 2 for w in affine]
  assert all(width % 10 == 0 for width in spline), spline
  config.flow.transformer = "cubic"
  with pytest.raises(ValueError, match=r"config.flow.transformer.*'cubic'; "
                                       r"expected one of \('affine', "
                                       r"'spline'\)"):
    nbflows.build_model(config)
  config.flow.transformer, config.flow.spline_bound = "spline", 0.0
  with pytest.raises(ValueError, match="spline bound=0.0"):
    nbflows.build_model(config)


def test_a_spline_transformer_for_a_model_without_one_is_an_error():
  config = default.get_config("quick")
  config.model, config.flow.transformer = "nct", "spline"
  with pytest.raises(ValueError, match="'nct' has affine layers only.*rnvp, "
                                       "rnvp_mlp, maf"):
    nbflows.build_model(config)


def test_a_config_saved_before_the_transformer_fields_builds_affine_layers():
  # A run's config.json from before config.flow.{transformer, num_bins,
  # spline_bound} existed loads as it was trained: affine couplings.
  config = default.get_config("quick")
  config.model, config.dataset = "rnvp_mlp", "two_rectangles"
  affine = _output_widths(config)
  saved = config.to_dict()
  for field in ("transformer", "num_bins", "spline_bound"):
    del saved["flow"][field]
  assert _output_widths(ml_collections.ConfigDict(saved)) == affine
