"""Tests of the Gaussian NIF layer (paper 4, Sec. 4; nbflows.distributions.nif).

Every identity is checked in float64 against a dense computation on small d:
the closed-form marginal against scipy's multivariate normal, the stochastic
inverse against its definition q(z | x) proportional to p(x | z) and against
the least-squares pseudo-inverse, the bound against the exact KL gap. The
layer's methods run jitted (one compile per method and case, far cheaper
than op-by-op dispatch).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nbflows.distributions import nif

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

# (event_shape, latent_dim, upsample_factor): a dense A and an up-sampling A.
CASES = [((7,), 3, None), ((4, 4, 2), 3, 2)]
BATCH = 4


@pytest.fixture(scope="module", autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


class Case:
  """A GaussianNIF with random (not initial) parameters, its dense form and data."""

  def __init__(self, event_shape, latent_dim, upsample_factor, seed=0):
    self.layer = nif.GaussianNIF(event_shape=event_shape,
                                 latent_dim=latent_dim,
                                 upsample_factor=upsample_factor)
    params = jax.jit(self.layer.init)(jax.random.key(seed),
                                      jnp.zeros((1, *event_shape)))
    keys = iter(jax.random.split(jax.random.key(seed + 1), 3))
    self.params = jax.tree.map(
        lambda p: p + 0.5 * jax.random.normal(next(keys), p.shape, p.dtype),
        params)
    self.x = 2.0 * jax.random.normal(jax.random.key(seed + 2),
                                     (BATCH, *event_shape))
    self.a = np.asarray(self.apply(method="weight_matrix"))
    zero = jnp.zeros((1, *self.layer.latent_shape))
    self.b = np.asarray(self.apply(zero, method="generate")).reshape(-1)
    std = jnp.exp(self.params["params"]["log_noise_std"])[None]
    std = self.apply(std, method=_from_blocks)
    self.sigma = np.asarray(std).reshape(-1) ** 2      # diagonal of Sigma
    self.x_flat = np.asarray(self.x).reshape(BATCH, -1)

  def apply(self, *args, method="__call__", static=()):
    """`layer.apply(params, *args, method=method)`, jitted."""
    return _jitted(self.layer, method, static)(self.params, *args)


def _from_blocks(layer, blocks):
  return layer._from_blocks(blocks)


def _stochastic_inverse(layer, x):
  return nif.stochastic_inverse(layer._to_blocks(x), *layer._params())


@functools.lru_cache(maxsize=None)
def _jitted(layer, method, static):
  """One jitted apply per layer, method and static arguments (after params)."""
  return jax.jit(functools.partial(layer.apply, method=method),
                 static_argnums=tuple(i + 1 for i in static))


@pytest.fixture(scope="module", params=CASES, ids=["dense", "upsampling"])
def case(request, float64):
  return Case(*request.param)


@pytest.mark.parametrize("temperature,noise_scale", [(1.0, 1.0), (0.7, 0.2)])
def test_marginal_equals_dense_multivariate_normal(case, temperature,
                                                   noise_scale):
  assert case.a.shape[1] < case.a.shape[0]                  # k < d
  log_prob = case.apply(case.x, temperature, noise_scale)
  covariance = (temperature**2 * case.a @ case.a.T +
                noise_scale * np.diag(case.sigma))
  expected = stats.multivariate_normal.logpdf(case.x_flat, case.b, covariance)
  np.testing.assert_allclose(log_prob, expected, rtol=1e-10, atol=1e-10)


def test_mode_is_the_weighted_least_squares_pseudo_inverse(case):
  mode = np.asarray(case.apply(case.x, method="pseudo_inverse"))
  whiten = 1.0 / np.sqrt(case.sigma)
  for mode_i, x_i in zip(mode.reshape(BATCH, -1), case.x_flat):
    expected, *_ = np.linalg.lstsq(case.a * whiten[:, None],
                                   (x_i - case.b) * whiten, rcond=None)
    np.testing.assert_allclose(mode_i, expected, rtol=1e-9, atol=1e-9)


def test_mode_is_the_pseudo_inverse_for_isotropic_noise():
  case = Case((6,), 2, None)
  case.params["params"]["log_noise_std"] = jnp.full_like(
      case.params["params"]["log_noise_std"], -0.3)
  mode = case.apply(case.x, method="pseudo_inverse")
  expected = (np.linalg.pinv(case.a) @ (case.x_flat - case.b).T).T
  np.testing.assert_allclose(mode, expected, rtol=1e-9, atol=1e-9)


def test_stochastic_inverse_is_the_normalised_likelihood(case):
  """q(z | x) has precision A^T Sigma^-1 A, and log p(x | z) - log q(z | x)
  does not depend on z (eq. 7)."""
  x = case.x[:1]
  mean, chol = case.apply(x, method=_stochastic_inverse)
  precision = jax.scipy.linalg.block_diag(*(c @ c.T for c in chol))
  np.testing.assert_allclose(precision,
                             case.a.T @ np.diag(1 / case.sigma) @ case.a,
                             rtol=1e-9, atol=1e-9)
  q = stats.multivariate_normal(np.asarray(mean).reshape(-1),
                                np.linalg.inv(precision))
  z = np.random.default_rng(0).normal(size=(6, case.a.shape[1]))
  gap = [stats.multivariate_normal.logpdf(case.x_flat[0], case.a @ z_i +
                                          case.b, np.diag(case.sigma))
         - q.logpdf(z_i) for z_i in z]
  np.testing.assert_allclose(gap, gap[0], rtol=0, atol=1e-8)


def test_stochastic_inverse_samples_have_its_moments():
  case = Case((5,), 2, None)
  x = jnp.broadcast_to(case.x[:1], (40_000, 5))
  z = case.apply(jax.random.key(3), x, method="stochastic_inverse_sample")
  mode = case.apply(case.x[:1], method="pseudo_inverse")[0]
  covariance = np.linalg.inv(case.a.T @ np.diag(1 / case.sigma) @ case.a)
  scale = np.sqrt(np.diag(covariance)).max()
  np.testing.assert_allclose(np.mean(z, 0), mode, atol=0.03 * scale)
  np.testing.assert_allclose(np.cov(np.asarray(z).T), covariance,
                             atol=0.03 * scale**2)


def test_lower_bound_gap_is_kl_to_the_posterior(case):
  """log p(x) - bound = KL(q(z | x) || p(z | x)) > 0 (eq. 9-10)."""
  gap = case.apply(case.x) - case.apply(case.x, method="lower_bound")
  q_mean = np.asarray(case.apply(case.x, method="pseudo_inverse"))
  a, sigma = case.a, case.sigma
  q_cov = np.linalg.inv(a.T @ np.diag(1 / sigma) @ a)
  post_cov = np.linalg.inv(np.eye(a.shape[1]) + a.T @ np.diag(1 / sigma) @ a)
  for gap_i, x_i, q_i in zip(gap, case.x_flat, q_mean.reshape(BATCH, -1)):
    diff = post_cov @ a.T @ ((x_i - case.b) / sigma) - q_i
    kl = 0.5 * (np.trace(np.linalg.solve(post_cov, q_cov)) +
                diff @ np.linalg.solve(post_cov, diff) - a.shape[1] +
                np.linalg.slogdet(post_cov)[1] - np.linalg.slogdet(q_cov)[1])
    np.testing.assert_allclose(gap_i, kl, rtol=1e-8)
    assert gap_i > 0


def test_zero_noise_samples_lie_on_the_hyperplane(case):
  projector = np.eye(case.a.shape[0]) - case.a @ np.linalg.pinv(case.a)

  def samples(temperature, noise_scale):
    x = case.apply(jax.random.key(4), 50, temperature, noise_scale,
                   method="sample", static=(1,))
    return np.asarray(x).reshape(50, -1)

  assert np.abs((samples(1.0, 0.0) - case.b) @ projector.T).max() < 1e-10
  assert np.abs((samples(1.0, 1.0) - case.b) @ projector.T).max() > 0.1
  np.testing.assert_allclose(samples(0.0, 0.0),
                             np.broadcast_to(case.b, (50, case.b.size)),
                             atol=1e-12)


def test_sample_moments_follow_temperature_and_noise_scale():
  case = Case((4,), 2, None)
  x = case.apply(jax.random.key(5), 100_000, 0.5, 0.3, method="sample",
                 static=(1,))
  expected = 0.25 * case.a @ case.a.T + 0.3 * np.diag(case.sigma)
  np.testing.assert_allclose(np.cov(np.asarray(x).T), expected,
                             atol=0.03 * np.abs(expected).max())
  np.testing.assert_allclose(np.mean(x, 0), case.b, atol=0.03)


def test_nearest_neighbour_upsampling_structure():
  """Sec. 4.1: A copies each latent pixel onto its f x f patch; A^T A is
  block diagonal with one c x c block per latent pixel."""
  case = Case((6, 4, 1), 1, 2)
  case.params["params"]["weight"] = jnp.ones_like(case.params["params"]["weight"])
  z = jax.random.normal(jax.random.key(1), (2, *case.layer.latent_shape))
  x = case.apply(z, method="generate")
  upsampled = jnp.repeat(jnp.repeat(z, 2, axis=1), 2, axis=2)
  np.testing.assert_allclose(x - case.apply(0 * z, method="generate"),
                             upsampled, rtol=1e-12)

  a = Case((4, 4, 3), 2, 2).a
  gram = a.T @ a                                        # 4 pixels x 2 channels
  mask = np.kron(np.eye(4), np.ones((2, 2))).astype(bool)
  assert np.abs(gram[~mask]).max() == 0
  assert np.abs(gram[mask]).min() > 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(event_shape=(4,), latent_dim=4), "across dimensions"),
    (dict(event_shape=(4,), latent_dim=1, upsample_factor=2), r"\[H, W, C\]"),
    (dict(event_shape=(6, 6, 1), latent_dim=1, upsample_factor=4), "divisor"),
    (dict(event_shape=(4, 4, 1), latent_dim=4, upsample_factor=2), "k < d"),
])
def test_invalid_settings_raise(kwargs, match):
  layer = nif.GaussianNIF(**kwargs)
  with pytest.raises(ValueError, match=match):
    layer.init(jax.random.key(0), jnp.zeros((1, *kwargs["event_shape"])))


def test_invalid_inputs_raise():
  case = Case((7,), 3, None)
  apply = case.layer.apply
  with pytest.raises(ValueError, match=r"expected \[batch, 7\]"):
    apply(case.params, jnp.zeros((2, 6)))
  with pytest.raises(ValueError, match="noise_scale=0.0"):
    apply(case.params, jnp.zeros((2, 7)), 1.0, 0.0)
  with pytest.raises(ValueError, match="temperature=-1"):
    apply(case.params, jax.random.key(0), 2, -1.0, method="sample")


# ------------------------------------------------ the flow with a NIF prior
@pytest.fixture(scope="module")
def nif_flow_model():
  """A one-coupling flow on continuous 4x4 images with an up-sampling NIF
  prior (k = 4), and the same flow with a unit Gaussian prior."""
  from nbflows.bijectors import AffineCoupling, Chain, ConvCoupler
  from nbflows.models import base, flow, nif_flow

  def transform():
    return Chain((AffineCoupling(
        mask="checkerboard", coupler=ConvCoupler(hidden=4, num_blocks=1)),))

  shape = dict(event_shape=(4, 4, 1), num_levels=None)   # no range checks
  module = nif_flow.NIFFlowModel(transform=transform(), latent_dim=1,
                                 upsample_factor=2, **shape)
  model = nif_flow.NIFModel(module, (4, 4, 1), name="nif_flow")
  baseline = base.BijectiveModel(
      flow.FlowModel(transform=transform(), **shape), (4, 4, 1))
  x = jax.random.normal(jax.random.key(0), (3, 4, 4, 1))
  params = jax.jit(module.init)(jax.random.key(1), x)
  keys = iter(jax.random.split(jax.random.key(2), 16))
  params = jax.tree.map(
      lambda p: p + 0.1 * jax.random.normal(next(keys), p.shape), params)
  return model, baseline, params, x


def test_nif_prior_with_zero_a_and_unit_sigma_is_the_unit_gaussian(
    nif_flow_model):
  model, baseline, params, x = nif_flow_model
  flat = dict(params["params"])
  nif_params = flat.pop("nif")
  unit = dict(params["params"], nif=jax.tree.map(jnp.zeros_like, nif_params))
  np.testing.assert_allclose(model.log_prob({"params": unit}, x),
                             baseline.log_prob({"params": flat}, x),
                             rtol=1e-10)
  assert np.all(np.abs(model.log_prob(params, x) -
                       baseline.log_prob({"params": flat}, x)) > 1e-3)


def test_zero_noise_samples_are_the_flow_image_of_the_hyperplane(
    nif_flow_model):
  """s = 0: f(x) lies on {A w + b}, and `embed` recovers w (Sec. 5.2)."""
  model, _, params, _ = nif_flow_model
  for noise_scale, on_plane in ((0.0, True), (1.0, False)):
    samples = model.sample(params, jax.random.key(3), 8, 1.0, noise_scale)
    z, _ = model.forward(params, samples)
    w = model.embed(params, samples)
    projected = model.module.apply(params, w, method=_generate)
    off = float(np.abs(z - projected).max())
    assert (off < 1e-8) if on_plane else (off > 0.1), (noise_scale, off)
  w = jax.random.normal(jax.random.key(4), (5, 2, 2, 1))
  x = model.module.apply(params, w, method=_generate_data)
  np.testing.assert_allclose(model.embed(params, x), w, atol=1e-8)


def _generate(module, w):
  return module.nif.generate(w)


def _generate_data(module, w):
  return module.inverse(module.nif.generate(w))[0]


def test_noise_scale_rows_differ_only_by_the_noise_scale(nif_flow_model):
  """f(x_s) = A w + b + sqrt(s) Sigma^1/2 eps with one (w, eps) per column,
  so f(x_0.25) - f(x_0) = (f(x_1) - f(x_0)) / 2 (Sigma scaled by s)."""
  model, _, params, _ = nif_flow_model
  rows = model.samples_by_noise_scale(params, jax.random.key(5), 6,
                                      (0.0, 0.25, 1.0))
  assert rows.shape == (3, 6, 4, 4, 1)
  z = [np.asarray(model.forward(params, row)[0]) for row in rows]
  np.testing.assert_allclose(z[1] - z[0], 0.5 * (z[2] - z[0]), atol=1e-6)
  assert np.abs(z[2] - z[0]).max() > 0.1
