"""Tests of localised generative flows (paper 2; nbflows.models.lgf).

The central check uses a one-layer LGF-MAF on 2-D data with a scalar u, whose
likelihood log p(x) = log of the integral over u of p(x, u) (eq. 4) can be
computed by quadrature on a fine grid: the ELBO must lie below it, and the
importance-sampled estimate must rise with the number of samples S towards
it. The bijector itself goes through tests/test_bijectors.py (cases
"lgf-*").
"""
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from nbflows.distributions import gaussian
from nbflows.models import lgf
from nbflows.objectives import iwae

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

LGF_CONFIG = ml_collections.ConfigDict(dict(
    u_dim=1, st_hidden=(8,), pq_hidden=(8,), eval_samples=4, test_samples=64,
    sample_chunk=16))


def _perturb(params, scale, seed):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [
      leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
      for leaf, k in zip(leaves, keys)])


def _joint_log_prob(module, x, *us):
  """log p(x, u_L, ..., u_1) of an LGF-MAF (eq. 5), [B], written out directly.

  `us` holds one u per stage in data -> latent order (u_L first): z_L = x,
  z_{l-1} = G_l(z_l; u_l), and the joint is
  log N(z_0) + sum_l [log p(u_l | z_{l-1}) + log|det DG_l(z_l; u_l)|].
  """
  h, total = x, 0.0
  for step, u in zip(module.transform.stages, us, strict=True):
    z, logdet = step.layer.forward(h, u)
    mean, log_std = step.prior_net(z, u.shape[-1])
    total = total + logdet + gaussian.diagonal_normal_log_prob(u, mean,
                                                               log_std)
    h = z
  return total + gaussian.standard_normal_log_prob(h)


@pytest.fixture(scope="module")
def one_layer():
  """(model, params, x, exact log p(x) by quadrature over u), float64."""
  with jax.enable_x64(True):
    transform = lgf.lgf_maf_transform(2, 1, (8,), 1, LGF_CONFIG)
    module = lgf.LGFFlow(transform=transform, event_shape=(2,))
    model = lgf.LGFModel(module, eval_samples=4, test_samples=64,
                         sample_chunk=256)
    x = jnp.array([[0.3, -1.2], [1.5, 0.4], [-0.7, 0.9]])
    params = _perturb(jax.jit(module.init)(jax.random.key(0), x), 0.2, 1)
    grid = jnp.linspace(-15.0, 15.0, 6001)          # u; p(u | z) is O(1) wide
    joint = jax.jit(jax.vmap(
        lambda u: module.apply(params, x, jnp.full((3, 1), u),
                               method=_joint_log_prob)))(grid)  # [G, B]
    exact = (jax.scipy.special.logsumexp(joint, axis=0) +
             jnp.log(grid[1] - grid[0]))
    assert np.all(np.asarray(joint)[[0, -1]] < np.asarray(exact) - 30)
  return model, params, x, np.asarray(exact)


@functools.lru_cache(maxsize=None)
def _estimator(model, num_samples, repeats):
  """Jitted: key -> [repeats, B] independent S-sample estimates and ELBOs."""
  def run(params, x, key):
    estimates = jax.vmap(lambda k: model.importance_estimate(
        params, x, k, num_samples))(jax.random.split(key, repeats))
    return estimates.log_likelihood, estimates.elbo
  return jax.jit(run)


def test_elbo_is_below_the_importance_estimate_which_rises_to_log_p(one_layer):
  model, params, x, exact = one_layer
  with jax.enable_x64(True):
    means, errors = {}, {}
    for num_samples, repeats in ((1, 2048), (4, 512), (32, 64), (512, 16)):
      estimates, elbo = _estimator(model, num_samples, repeats)(
          params, x, jax.random.key(num_samples))
      means[num_samples] = np.mean(np.asarray(estimates), axis=0)
      errors[num_samples] = (np.std(np.asarray(estimates), axis=0) /
                             math.sqrt(repeats))
      if num_samples == 1:
        np.testing.assert_allclose(estimates, elbo, rtol=0, atol=1e-12)
  # The ELBO (S = 1) is a strict lower bound here (q is not the posterior).
  assert np.all(means[1] + 5 * errors[1] < exact - 0.1)
  # E[estimate] rises with S (Burda et al. 2016, Thm. 1) towards log p(x).
  assert np.all(means[1] < means[4]) and np.all(means[4] < means[32])
  np.testing.assert_allclose(means[512], exact, atol=0.03)
  assert np.all(np.abs(exact - means[512]) < 0.1 * (exact - means[1]))


def _log_posterior(module, x, *us):
  """log q(u_L, ..., u_1 | x) = sum_l log q(u_l | z_l) (eq. 7), [B]."""
  h, total = x, 0.0
  for step, u in zip(module.transform.stages, us, strict=True):
    mean, log_std = step.posterior_net(h, u.shape[-1])
    total = total + gaussian.diagonal_normal_log_prob(u, mean, log_std)
    h, _ = step.layer.forward(h, u)
  return total


def test_two_layer_elbo_and_likelihood_match_quadrature_over_both_u():
  """Eq. 5 with L = 2: each layer has its own u_l, p(u_l | z_{l-1}) and
  q(u_l | z_l). On a grid over (u_2, u_1), quadrature gives log p(x) and the
  ELBO E_q[log p(x, u) - log q(u | x)] exactly; Alg. 1's single-sample
  weights must average to that ELBO (conditioning p or q on the wrong z, or
  sharing u between layers, moves it), and their importance-sampled
  estimate must lie between the ELBO and log p(x)."""
  with jax.enable_x64(True):
    transform = lgf.lgf_maf_transform(2, 2, (8,), 1, LGF_CONFIG)
    module = lgf.LGFFlow(transform=transform, event_shape=(2,))
    model = lgf.LGFModel(module, sample_chunk=512)
    x = jnp.array([[0.4, -0.8], [-1.1, 0.6]])
    params = _perturb(jax.jit(module.init)(jax.random.key(2), x), 0.3, 3)
    grid = jnp.linspace(-16.0, 16.0, 641)
    cell = (grid[1] - grid[0])**2
    u_outer, u_inner = (a.reshape(-1, 1) for a in jnp.meshgrid(grid, grid))

    def on_grid(x_row, method):            # [G * G] over (u_2, u_1)
      xs = jnp.broadcast_to(x_row, (u_outer.shape[0], 2))
      return module.apply(params, xs, u_outer, u_inner, method=method)

    log_joint, log_q = jax.jit(jax.vmap(lambda row: (
        on_grid(row, _joint_log_prob), on_grid(row, _log_posterior))))(x)
    exact = jax.scipy.special.logsumexp(log_joint, axis=1) + jnp.log(cell)
    q = jnp.exp(log_q) * cell                                   # [B, G * G]
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-4)   # q on grid
    exact_elbo = jnp.sum(q * (log_joint - log_q), axis=1)
    num = 8192
    weights = jax.jit(model.elbo)(params, jnp.tile(x, (num, 1)),
                                  jax.random.key(4)).reshape(num, 2)
    error = jnp.std(weights, axis=0) / math.sqrt(num)
    assert np.all(np.abs(weights.mean(0) - exact_elbo) < 4 * error)
    assert np.all(exact_elbo < exact - 1.0)         # q is not the posterior
    estimate = iwae.importance_statistics(weights)
    assert np.all(estimate.log_likelihood > exact_elbo)
    assert np.all(estimate.log_likelihood <
                  exact + 4 * estimate.standard_error)


@pytest.fixture(scope="module")
def density_grid(one_layer):
  """(points [N, 2], p(x) [N] by quadrature over u, cell area) on [-12, 12]^2."""
  model, params, _, _ = one_layer
  with jax.enable_x64(True):
    side = jnp.linspace(-12.0, 12.0, 161)
    xs = jnp.stack(jnp.meshgrid(side, side), -1).reshape(-1, 2)
    us = jnp.linspace(-15.0, 15.0, 601)

    def log_marginal(xs):
      joint = jax.vmap(lambda u: model.module.apply(
          params, xs, jnp.full((xs.shape[0], 1), u),
          method=_joint_log_prob))(us)
      return jax.scipy.special.logsumexp(joint, axis=0) + jnp.log(us[1] - us[0])

    density = jnp.exp(jax.jit(log_marginal)(xs))
  return np.asarray(xs), np.asarray(density), float(side[1] - side[0])**2


def test_lgf_density_integrates_to_one(density_grid):
  """p(x) of eq. 4 (quadrature over u) sums to 1 over a grid of x."""
  _, density, area = density_grid
  np.testing.assert_allclose(np.sum(density) * area, 1.0, atol=0.01)


def test_samples_have_the_moments_of_the_density(one_layer, density_grid):
  """Ancestral sampling (eq. 5: z_0 ~ N(0, I), u ~ p(u | z_0),
  x = G^-1(z_0; u)) draws from the density that the ELBO scores."""
  model, params, _, _ = one_layer
  xs, density, area = density_grid
  weights = density * area / np.sum(density * area)
  mean = weights @ xs
  covariance = (xs - mean).T @ ((xs - mean) * weights[:, None])
  with jax.enable_x64(True):
    samples = np.asarray(model.sample(params, jax.random.key(7), 40_000))
  scale = np.sqrt(np.diag(covariance))
  np.testing.assert_allclose(samples.mean(0), mean, atol=0.03 * scale.max())
  np.testing.assert_allclose(np.cov(samples.T), covariance,
                             atol=0.05 * scale.max()**2)


def test_log_prob_and_eval_metrics_are_importance_estimates(one_layer):
  model, params, x, exact = one_layer
  with jax.enable_x64(True):
    metrics = jax.jit(model.eval_metrics)(params, {"x": x}, jax.random.key(3))
    assert set(metrics) == {"elbo", "log_likelihood", "bpd"}
    np.testing.assert_allclose(metrics["bpd"],
                               -metrics["log_likelihood"] / (2 * math.log(2)))
    assert np.all(metrics["log_likelihood"] >= metrics["elbo"])
    estimate = jax.jit(model.importance_estimate, static_argnums=3)
    test = jax.jit(model.test_metrics)(params, {"x": x}, jax.random.key(3))
    np.testing.assert_allclose(
        test["log_likelihood"],
        estimate(params, x, jax.random.key(3), model.test_samples
                 ).log_likelihood, rtol=1e-12)
    many = estimate(params, x, jax.random.key(5), 2048)
    assert np.all(np.abs(many.log_likelihood - exact) <
                  4 * many.standard_error + 0.01)
    loss, train_metrics = jax.jit(model.loss)(params, {"x": x},
                                              jax.random.key(4))
    np.testing.assert_allclose(loss, -train_metrics["elbo"])
    np.testing.assert_allclose(
        train_metrics["elbo"],
        jnp.mean(jax.jit(model.elbo)(params, x, jax.random.key(4))))


@pytest.fixture(scope="module")
def image_model():
  """A small LGF-RealNVP on 4x4 grey images with 17 levels."""
  config = default.get_config("quick")
  transform = lgf.lgf_multiscale_transform(
      (4, 4, 1), num_scales=1, couplings_per_scale=1, hidden_channels=4,
      num_res_blocks=1, lgf_config=LGF_CONFIG, last_scale_couplings=2)
  module = lgf.LGFFlow(transform=transform, event_shape=(4, 4, 1),
                       num_levels=17, logit_alpha=config.flow.logit_alpha)
  model = lgf.LGFModel(module, eval_samples=2, test_samples=4, sample_chunk=2)
  x = jax.random.uniform(jax.random.key(0), (3, 4, 4, 1), maxval=17.0)
  params = jax.jit(module.init)(jax.random.key(1), x)
  return model, params, x


def test_fresh_lgf_is_its_base_flow_and_loss_is_bits_per_dim(image_model):
  """At initialisation s = t = 0 and p(u | z) = q(u | z) = N(0, I), so every
  importance weight equals the base flow's exact log-likelihood, whatever
  the key."""
  model, params, x = image_model
  loss = jax.jit(model.loss)
  first, metrics = loss(params, {"x": x}, jax.random.key(2))
  second, _ = loss(params, {"x": x}, jax.random.key(3))
  np.testing.assert_allclose(first, second, rtol=1e-6)
  z, logdet = model.forward(params, x)
  exact = gaussian.standard_normal_log_prob(z) + logdet
  np.testing.assert_allclose(metrics["elbo"], jnp.mean(exact), rtol=1e-5)
  np.testing.assert_allclose(first, -jnp.mean(exact) / (16 * math.log(2)),
                             rtol=1e-5)
  np.testing.assert_allclose(metrics["bpd"], first)
  x_back, _ = model.inverse(params, z)
  np.testing.assert_allclose(x_back, x, atol=1e-3)


def test_builders_reject_the_wrong_kind_of_data():
  config = default.get_config("quick")
  with config.unlocked():
    config.lgf = LGF_CONFIG
    config.dataset = "digits"
    with pytest.raises(ValueError, match="'lgf_maf' needs vectors"):
      lgf.build_lgf_maf(config)
    config.dataset = "two_rectangles"
    with pytest.raises(ValueError, match="'lgf_rnvp' needs images"):
      lgf.build_lgf_rnvp(config)
    assert lgf.build_lgf_maf(config).event_shape == (2,)
  module = lgf.LGFFlow(transform=lgf.LGFChain(()), event_shape=(2,))
  with pytest.raises(ValueError, match="eval_samples=0"):
    lgf.LGFModel(module, eval_samples=0)


def test_density_grid_and_plot(tmp_path):
  """`plotting.log_density_grid` samples a density in place (a standard
  normal integrates to ~1 over [-5, 5]^2) and `plot_densities` writes a PNG."""
  from nbflows import plotting
  grid = plotting.log_density_grid(
      lambda p: jax.scipy.stats.norm.logpdf(p).sum(-1), (-5, 5, -5, 5),
      resolution=101, batch_size=1000)
  cell = (grid.xs[1] - grid.xs[0]) * (grid.ys[1] - grid.ys[0])
  np.testing.assert_allclose(np.exp(grid.log_density).sum() * cell, 1.0,
                             atol=1e-3)
  np.testing.assert_allclose(grid.log_density[50, 75],
                             -np.log(2 * np.pi) - 0.5 * 2.5**2, rtol=1e-5)
  path = str(tmp_path / "density.png")
  plotting.plot_densities([("a", grid), ("b", grid)], path,
                          points=np.zeros((3, 2)))
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
