"""Tests of GLF (paper 5): the latent flow, the objectives, the degeneracy."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nbflows.bijectors import latent_flow as latent_flow_lib
from nbflows.bijectors import permutation
from nbflows.data import sources
from nbflows.distributions import gaussian
from nbflows.models import glf
from nbflows.models import protocols
from nbflows.models import vae

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

EVENT = (3, 3, 1)
LEVELS = 17


def randomise(params, key, scale=0.3):
  """Replaces every parameter by noise, so a fresh (identity) flow is not."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [
      leaf + scale * jax.random.normal(k, leaf.shape)
      for leaf, k in zip(leaves, keys)])


def test_permutation_is_a_fixed_volume_preserving_shuffle():
  layer = permutation.Permutation(seed=3)
  x = jnp.arange(12.0).reshape(2, 6)
  y, logdet = layer.apply({}, x, method="forward")
  assert sorted(np.asarray(y[0]).tolist()) == list(range(6))
  assert not np.array_equal(y, x)
  np.testing.assert_array_equal(y[1] - y[0], 6.0)        # same shuffle per row
  np.testing.assert_array_equal(logdet, 0.0)
  back, _ = layer.apply({}, y, method="inverse")
  np.testing.assert_array_equal(back, x)
  again, _ = permutation.Permutation(seed=3).apply({}, x, method="forward")
  np.testing.assert_array_equal(again, y)


@pytest.fixture(scope="module")
def latent_flow():
  flow = latent_flow_lib.LatentFlow(num_blocks=2, hidden=(8, 8))
  z = jax.random.normal(jax.random.key(0), (5, 4))
  params = randomise(jax.jit(flow.init)(jax.random.key(1), z),
                     jax.random.key(2))
  return flow, params, z


def test_latent_flow_has_the_structure_of_fig_1b():
  flow = latent_flow_lib.LatentFlow()                     # paper 5 defaults
  shapes = jax.eval_shape(flow.init, jax.random.key(0),
                          jnp.zeros((2, 20)))["params"]["chain"]
  # Per block: two couplings with parameters, then a parameter-free permutation.
  assert sorted(shapes) == sorted(f"layers_{3 * b + i}" for b in range(4)
                                  for i in (0, 1))
  for coupling in shapes.values():
    widths = [coupling["coupler"][name]["kernel"].shape
              for name in ("dense0", "dense1", "output")]  # 3 dense layers
    # x_A (10 of the 20 dims) in, shift and log-scale of x_B out.
    assert widths == [(10, 64), (64, 64), (64, 20)]


def test_latent_flow_round_trip_and_log_det(latent_flow):
  flow, params, z = latent_flow
  forward = jax.jit(functools.partial(flow.apply, method="forward"))
  inverse = jax.jit(functools.partial(flow.apply, method="inverse"))
  e, logdet = forward(params, z)
  back, inverse_logdet = inverse(params, e)
  np.testing.assert_allclose(back, z, atol=1e-5)
  np.testing.assert_allclose(inverse_logdet, -logdet, rtol=1e-5, atol=1e-5)
  for b in range(z.shape[0]):
    jac = jax.jit(jax.jacfwd(lambda v: forward(params, v[None])[0][0]))(z[b])
    np.testing.assert_allclose(logdet[b], np.linalg.slogdet(jac)[1],
                               rtol=1e-4, atol=1e-4)
  assert float(jnp.max(jnp.abs(logdet))) > 0.1            # not the identity
  np.testing.assert_allclose(
      jax.jit(functools.partial(flow.apply, method="log_prob"))(params, z),
      gaussian.standard_normal_log_prob(e, event_ndims=1) + logdet, rtol=1e-6)


def make_model(objective, beta=1.0, latent_dim=4):
  network = glf.LatentFlowAutoEncoder(event_shape=EVENT, latent_dim=latent_dim,
                                      hidden=(16,), flow_blocks=2,
                                      flow_hidden=(8, 8))
  return glf.GLFModel(network, num_levels=LEVELS, objective=objective,
                      beta=beta)


def data_batch(seed, batch=6):
  rng = np.random.default_rng(seed)
  return {"x": jnp.asarray(rng.integers(0, LEVELS, (batch, *EVENT))
                           + rng.random((batch, *EVENT)), jnp.float32)}


def loss_grads(model, params, batch):
  return jax.jit(jax.grad(lambda p: model.loss(p, batch, jax.random.key(0))[0]
                          ))(params)["params"]


def test_stop_gradient_keeps_the_flow_out_of_the_encoder():
  batch = data_batch(0)
  stopped, regularised = make_model("stop_gradient"), make_model(
      "regularised")
  params = randomise(stopped.init(jax.random.key(0), batch),
                     jax.random.key(1), 0.1)
  # Eq. 5: the encoder's gradient is the reconstruction's alone.
  recon_only = jax.jit(jax.grad(lambda p: jnp.mean(stopped.terms(
      p, batch["x"], jax.random.key(0))["reconstruction"])))(params)["params"]
  grads = {"stopped": loss_grads(stopped, params, batch),
           "regularised": loss_grads(regularised, params, batch)}
  for got, want in zip(jax.tree.leaves(grads["stopped"]["encoder"]),
                       jax.tree.leaves(recon_only["encoder"])):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # Eq. 4 (beta = 1): the NLL reaches the encoder too.
  differences = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(grads["regularised"]["encoder"]),
      jax.tree.leaves(recon_only["encoder"]))]
  assert max(differences) > 1e-3
  # The flow's gradient is the same under both objectives.
  for a, b in zip(jax.tree.leaves(grads["stopped"]["flow"]),
                  jax.tree.leaves(grads["regularised"]["flow"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_objectives_equal_their_equations():
  batch = data_batch(1)
  key = jax.random.key(3)
  for objective, beta in (("stop_gradient", 7.0), ("regularised", 7.0),
                          ("vae", 7.0)):
    model = make_model(objective, beta)
    params = randomise(model.init(jax.random.key(0), batch),
                       jax.random.key(1), 0.1)
    loss, metrics = jax.jit(model.loss)(params, batch, key)
    grey = vae.grey_levels(batch["x"], LEVELS)
    mean, log_var = model.module.apply(params, grey, method="encode")
    if objective == "vae":
      z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
      log_q = gaussian.diagonal_gaussian_log_prob(z, mean, log_var)
    else:
      z, log_q = mean, 0.0
    decoded = model.module.apply(params, z, method="decode")
    recon = 0.5 * jnp.sum((grey - decoded) ** 2, axis=(1, 2, 3))
    log_p = model.module.apply(params, z, method="flow_log_prob")
    weight = 1.0 if objective == "stop_gradient" else beta   # eq. 5 has no beta
    expected = jnp.mean(weight * recon - log_p + log_q)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["nll"], -jnp.mean(log_p), rtol=1e-5)
    np.testing.assert_allclose(metrics["latent_norm"],
                               jnp.mean(jnp.linalg.norm(z, axis=-1)),
                               rtol=1e-5)


def train(objective, beta, steps=300):
  images = sources.load("digits").train.images[:256]
  batch = {"x": jnp.asarray(images, jnp.float32) + 0.5}
  network = glf.LatentFlowAutoEncoder(event_shape=(8, 8, 1), latent_dim=4,
                                      hidden=(64,), flow_blocks=4,
                                      flow_hidden=(32, 32))
  model = glf.GLFModel(network, num_levels=LEVELS, objective=objective,
                       beta=beta)
  params = model.init(jax.random.key(0), batch)
  optimizer = optax.adam(1e-3)

  @jax.jit
  def step(carry, key):
    params, opt_state = carry
    (_, metrics), grads = jax.value_and_grad(model.loss, has_aux=True)(
        params, batch, key)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(params, updates), opt_state), metrics

  _, metrics = jax.lax.scan(step, (params, optimizer.init(params)),
                            jax.random.split(jax.random.key(1), steps))
  return jax.tree.map(np.asarray, metrics)


def test_regularised_glf_shrinks_its_codes_while_glf_does_not():
  """Paper 5, Sec. 3.3.1: without the stop-gradient the NLL shrinks z."""
  stopped = train("stop_gradient", 1.0)
  regularised = train("regularised", 1.0)
  # GLF: the flow's NLL stays finite, reconstruction improves, codes keep scale.
  assert np.all(np.isfinite(stopped["nll"]))
  assert stopped["reconstruction"][-10:].mean() < 0.5 * stopped[
      "reconstruction"][0]
  assert stopped["latent_scale"][-1] >= stopped["latent_scale"][0]
  # Regularised GLF: the codes collapse and the NLL runs far below GLF's,
  # bought with the log-det of a contracting encoder, not with a better fit.
  assert regularised["latent_scale"][-1] < 0.3 * regularised["latent_scale"][0]
  assert regularised["latent_scale"][-1] < 0.1 * stopped["latent_scale"][-1]
  assert regularised["nll"][-1] < stopped["nll"][-1] - 5.0
  assert regularised["reconstruction"][-1] > stopped["reconstruction"][-1]


def test_sampling_and_interpolation_in_noise_space():
  model = make_model("stop_gradient")
  params = randomise(model.init(jax.random.key(0), data_batch(0)),
                     jax.random.key(1), 0.1)
  samples = model.sample(params, jax.random.key(2), 3)
  assert samples.shape == (3, *EVENT)
  assert bool(jnp.all((samples >= 0.5) & (samples <= LEVELS - 0.5)))
  # T = 0 decodes f^-1(0), the same image every time.
  cold = model.sample(params, jax.random.key(3), 2, temperature=0.0)
  np.testing.assert_allclose(cold[0], cold[1])
  e0, e1 = jnp.zeros(4), jnp.ones(4)
  path = model.interpolate(params, e0, e1, 5)
  assert path.shape == (5, *EVENT)
  np.testing.assert_allclose(path[0], model.decode_noise(params, e0[None])[0],
                             rtol=1e-6)
  np.testing.assert_allclose(path[-1], model.decode_noise(params, e1[None])[0],
                             rtol=1e-6)
  # decode_noise inverts the flow: encoding a decoded code's noise recovers it.
  round_trip = jax.jit(lambda p, e: model.module.apply(
      p, model.module.apply(p, e, method="from_noise")[0], method="to_noise"))
  e, _ = round_trip(params, jnp.ones((1, 4)))
  np.testing.assert_allclose(e, 1.0, atol=1e-5)


def test_invalid_settings_raise():
  network = glf.LatentFlowAutoEncoder(event_shape=EVENT, latent_dim=4)
  with pytest.raises(ValueError, match="objective='adversarial'"):
    glf.GLFModel(network, LEVELS, objective="adversarial")
  with pytest.raises(ValueError, match="beta=0"):
    glf.GLFModel(network, LEVELS, beta=0.0)
  # No density on images: the model has no log_prob at all.
  assert not protocols.offers(glf.GLFModel(network, LEVELS), protocols.Density)


def test_softplus_log_variance_has_no_floor_where_hardtanh_has_one():
  raw64 = np.array([-1e4, -30.0, -12.0, 0.0, 5.0])
  raw = jnp.asarray(raw64, jnp.float32)
  np.testing.assert_allclose(
      vae.posterior_log_variance(raw, "softplus"),
      np.log(np.log1p(np.exp(raw64)) + vae.MIN_VARIANCE), rtol=1e-5)
  np.testing.assert_allclose(vae.posterior_log_variance(raw, "hardtanh"),
                             np.clip(raw64, -6.0, 2.0))

  def grad(variance):
    return np.asarray(jax.vmap(jax.grad(functools.partial(
        vae.posterior_log_variance, variance=variance)))(raw))

  # At Lambda ~ 6e-6, far below e^-6: softplus still moves log Lambda
  # (nearly) one for one with its input, hardtanh not at all.
  assert grad("softplus")[2] == pytest.approx(1.0, abs=0.01)
  assert grad("hardtanh")[2] == 0.0
  assert np.all(np.isfinite(grad("softplus")))
  with pytest.raises(ValueError, match=r"variance='exp'; expected one of"):
    vae.posterior_log_variance(raw, "exp")


def test_flow_prior_vae_keeps_a_gradient_below_e_minus_6():
  """Paper 5, eq. 3: no floor, so large beta can keep shrinking Lambda(x)."""
  batch = data_batch(2)
  model = make_model("vae", beta=400.0)
  params = model.init(jax.random.key(0), batch)
  head = params["params"]["encoder"]["log_variance"]
  head["kernel"] = jnp.zeros_like(head["kernel"])
  head["bias"] = jnp.full_like(head["bias"], -12.0)   # Lambda ~ 6e-6
  mean, log_variance = model.posterior(params, batch["x"])
  np.testing.assert_allclose(log_variance, -12.0, atol=0.01)
  loss, metrics = model.loss(params, batch, jax.random.key(1))
  assert np.isfinite(float(loss))
  assert float(metrics["posterior_variance"]) < 1e-5
  # The entropy term -log q pushes Lambda up: a gradient, not a clipped zero.
  bias_grad = loss_grads(model, params, batch)["encoder"]["log_variance"]["bias"]
  assert np.all(np.isfinite(bias_grad)) and np.all(np.asarray(bias_grad) < 0)
  assert mean.shape == log_variance.shape == (6, 4)


def test_beta_sweep_reports_fig_3b_statistics_of_the_posterior():
  from train.experiments import beta_sweep  # pylint: disable=g-import-not-at-top
  model = make_model("vae", beta=400.0)
  images = np.random.default_rng(0).integers(0, LEVELS, (6, *EVENT), np.uint8)
  params = randomise(model.init(jax.random.key(0), data_batch(0)),
                     jax.random.key(1), 0.1)
  head = params["params"]["encoder"]["log_variance"]
  head["kernel"] = jnp.zeros_like(head["kernel"])
  head["bias"] = jnp.asarray([-8.0, -9.0, -10.0, -11.0])
  stats = beta_sweep.posterior_statistics(model, params, images)
  variance = np.mean(np.exp([-8.0, -9.0, -10.0, -11.0]))  # mean over dims
  assert stats["posterior_variance"] == pytest.approx(variance, rel=1e-3)
  x = jnp.asarray(images, jnp.float32) + 0.5
  mean = model.encode(params, x)
  assert stats["relative_variance"] == pytest.approx(
      variance / float(jnp.mean(jnp.var(mean, axis=0))), rel=1e-3)
  grey = images / (LEVELS - 1.0)
  decoded = model.module.apply(params, mean, method="decode")
  assert stats["reconstruction"] == pytest.approx(
      float(np.mean(0.5 * np.sum((grey - decoded) ** 2, axis=(1, 2, 3)))),
      rel=1e-5)
  rows = [dict(beta=b, steps_trained=10, checkpoint_step=10,
               posterior_variance=v, relative_variance=v,
               reconstruction=1.0, frechet_distance=2.0)
          for b, v in ((10.0, 0.3), (1.0, 0.9), (400.0, 2e-4))]
  assert beta_sweep.monotone_falling(rows)
  assert not beta_sweep.monotone_falling(rows + [dict(rows[2], beta=800.0)])
  assert "| 400 | 10 | 10 | 2.00e-04 | 2.00e-04 | 1.000 | 2.0 |" in (
      beta_sweep.format_table(rows))
  with pytest.raises(ValueError, match=r"betas=\[1.0, 0.0\]; expected"):
    beta_sweep.sweep([1.0, 0.0], "digits", "/nonexistent")
