"""Tests of the VAE family: binarisation, likelihood terms, ELBO and IWAE."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from nbflows.models import protocols
from nbflows.distributions import gaussian
from nbflows.models import vae
from nbflows.objectives import elbo

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

EVENT = (3, 3, 1)
LEVELS = 17


def make_model(prior="gaussian", latent_dim=2, **kwargs):
  network = vae.VAE(event_shape=EVENT, latent_dim=latent_dim, hidden=(16,),
                    prior=prior, num_pseudo_inputs=3)
  return vae.VAEModel(network, num_levels=LEVELS, **kwargs)


def data_batch(seed, batch=4):
  rng = np.random.default_rng(seed)
  levels = rng.integers(0, LEVELS, (batch, *EVENT))
  noise = rng.random((batch, *EVENT))
  return {"x": jnp.asarray(levels + noise, jnp.float32),
          "index": jnp.arange(batch, dtype=jnp.int32)}


def test_binarisation_is_bernoulli_of_the_grey_level():
  x = jnp.asarray([[0.3, 8.9, 16.99, 4.0]], jnp.float32)   # levels 0, 8, 16, 4
  draws = jax.vmap(lambda k: vae.binarise(k, x, LEVELS))(
      jax.random.split(jax.random.key(0), 4000))
  frequency = np.asarray(draws.mean(axis=0))[0]
  np.testing.assert_array_equal(frequency[[0, 2]], [0.0, 1.0])  # never / always
  np.testing.assert_allclose(frequency[[1, 3]], [0.5, 0.25], atol=0.03)


def test_evaluation_binarisation_depends_on_index_not_batching():
  batch = data_batch(0, batch=6)
  whole = vae.binarise_for_evaluation(batch["x"], batch["index"], LEVELS)
  halves = jnp.concatenate([
      vae.binarise_for_evaluation(batch["x"][:2], batch["index"][:2], LEVELS),
      vae.binarise_for_evaluation(batch["x"][2:], batch["index"][2:], LEVELS)])
  np.testing.assert_array_equal(whole, halves)
  assert set(np.unique(np.asarray(whole))) <= {0.0, 1.0}


def test_data_units_round_trip():
  levels = jnp.arange(LEVELS, dtype=jnp.float32)
  grey = vae.grey_levels(levels + 0.7, LEVELS)
  np.testing.assert_allclose(grey, levels / (LEVELS - 1))
  np.testing.assert_array_equal(jnp.floor(vae.to_data_units(grey, LEVELS)),
                                levels)


def test_bernoulli_and_gaussian_log_probs_match_scipy():
  rng = np.random.default_rng(1)
  x = (rng.random((2, *EVENT)) < 0.5).astype(np.float32)
  logits = rng.normal(size=(2, *EVENT)).astype(np.float32) * 3
  expected = stats.bernoulli.logpmf(x, special.expit(logits)).reshape(2, -1)
  np.testing.assert_allclose(elbo.bernoulli_log_prob(jnp.asarray(x),
                                                     jnp.asarray(logits)),
                             expected.sum(-1), rtol=1e-5)
  z, mean, log_var = rng.normal(size=(3, 2, 4))
  expected = [stats.multivariate_normal.logpdf(z[b], mean[b],
                                               np.diag(np.exp(log_var[b])))
              for b in range(2)]
  np.testing.assert_allclose(
      gaussian.diagonal_gaussian_log_prob(z, mean, log_var), expected,
      rtol=1e-5)


def test_vampprior_is_the_mixture_of_pseudo_input_posteriors():
  model = make_model("vampprior")
  params = model.init(jax.random.key(0), data_batch(0))
  z = np.asarray(jax.random.normal(jax.random.key(1), (5, 2)), np.float64)
  pseudo = model.module.apply(params, method="pseudo_inputs")
  assert pseudo.shape == (3, *EVENT)
  assert bool(jnp.all((pseudo >= 0) & (pseudo <= 1)))
  means, log_vars = map(np.asarray, model.module.apply(params, pseudo,
                                                        method="encode"))
  expected = [special.logsumexp([stats.multivariate_normal.logpdf(
      z[b], means[k], np.diag(np.exp(log_vars[k]))) for k in range(3)])
              - math.log(3) for b in range(5)]
  got = model.prior(params).log_prob(jnp.asarray(z, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.fixture(scope="module")
def one_dim_model():
  """A 1-D latent VAE whose exact log p(x) quadrature can compute."""
  model = make_model("gaussian", latent_dim=1, iwae_samples=2000,
                     iwae_chunk=500)
  params = model.init(jax.random.key(3), data_batch(0))
  # A decoder that depends strongly on z, so the posterior is not the prior.
  decoder = jax.tree.map(lambda p: 2.0 * p, params["params"]["decoder"])
  params = {"params": dict(params["params"], decoder=decoder)}
  return model, params


def exact_log_likelihood(model, params, x_binary):
  """log p(x) = log integral N(z; 0, 1) p(x | z) dz by the trapezoid rule."""
  grid = jnp.linspace(-9.0, 9.0, 6001)[:, None]                  # [G, 1]
  logits = model.module.apply(params, grid[:, None, :].repeat(
      x_binary.shape[0], axis=1), method="decode")               # [G, B, ...]
  log_joint = (elbo.bernoulli_log_prob(x_binary, logits)
               + gaussian.standard_normal_log_prob(
                   grid, event_ndims=1)[:, None])                # [G, B]
  step = float(grid[1, 0] - grid[0, 0])
  return special.logsumexp(np.asarray(log_joint, np.float64), axis=0) + \
      math.log(step)


def test_elbo_below_iwae_which_approaches_the_exact_likelihood(one_dim_model):
  model, params = one_dim_model
  batch = data_batch(4, batch=6)
  x_binary = vae.binarise_for_evaluation(batch["x"], batch["index"], LEVELS)
  exact = exact_log_likelihood(model, params, x_binary)
  log_prior = model.evaluation_log_prior(params)
  many = model.importance_estimate(params, x_binary, jax.random.key(5),
                                   log_prior)
  # Within the importance-sampling noise of the exact value (its standard
  # error is 0.02-0.09 nats here).
  error = np.abs(np.asarray(many.log_likelihood) - exact)
  assert np.all(error < 4 * np.asarray(many.standard_error) + 0.01)
  assert np.all(error < 0.2)
  # The S-sample bound tightens with S: S = 1 (the ELBO) < S = 5 < S = 2000,
  # in expectation (averaged here over repeated draws).
  few = jax.vmap(lambda k: model.importance_estimate(
      params, x_binary, k, log_prior, num_samples=5).log_likelihood)(
          jax.random.split(jax.random.key(6), 200))
  elbos = jax.vmap(lambda k: jnp.subtract(*model.elbo_terms(
      params, x_binary, k, log_prior)))(jax.random.split(jax.random.key(7),
                                                         500))
  assert float(elbos.mean()) < float(few.mean()) - 0.5
  assert float(few.mean()) < float(many.log_likelihood.mean()) - 0.2
  # Each example's mean ELBO is below its log p(x) and matches the mean
  # log-weight of the importance estimate.
  mean_elbo = np.asarray(elbos.mean(axis=0))
  assert np.all(mean_elbo < exact)
  sem = np.asarray(elbos.std(axis=0)) / math.sqrt(500)
  assert np.all(np.abs(mean_elbo - np.asarray(many.elbo)) < 4 * sem + 0.1)


def test_loss_and_eval_metrics_are_consistent():
  model = make_model("gaussian", iwae_samples=8, iwae_chunk=3)
  batch = data_batch(2)
  params = model.init(jax.random.key(0), batch)
  loss, metrics = jax.jit(model.loss)(params, batch, jax.random.key(1))
  np.testing.assert_allclose(loss, metrics["reconstruction_nll"]
                             + metrics["kl"], rtol=1e-5)
  evaluated = jax.jit(model.eval_metrics)(params, batch, jax.random.key(2))
  assert set(evaluated) == {"elbo", "loss", "reconstruction_nll", "kl", "iwae",
                            "iwae_stderr"}
  assert all(v.shape == (4,) for v in evaluated.values())
  assert model.eval_settings == {"iwae_samples": 8}
  np.testing.assert_allclose(evaluated["elbo"], -evaluated["loss"])
  np.testing.assert_allclose(evaluated["elbo"], -(
      evaluated["reconstruction_nll"] + evaluated["kl"]), rtol=1e-5)


def test_training_lowers_the_negative_elbo_on_digits():
  import optax  # pylint: disable=g-import-not-at-top
  from nbflows.data import sources  # pylint: disable=g-import-not-at-top
  images = sources.load("digits").train.images[:256]
  network = vae.VAE(event_shape=(8, 8, 1), latent_dim=4, hidden=(64,))
  model = vae.VAEModel(network, num_levels=LEVELS, iwae_samples=4)
  batch = {"x": jnp.asarray(images, jnp.float32) + 0.5,
           "index": jnp.arange(256, dtype=jnp.int32)}
  params = model.init(jax.random.key(0), batch)
  optimizer = optax.adam(3e-3)

  @jax.jit
  def step(carry, key):
    params, opt_state = carry
    (loss, _), grads = jax.value_and_grad(model.loss, has_aux=True)(
        params, batch, key)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(params, updates), opt_state), loss

  carry = (params, optimizer.init(params))
  carry, losses = jax.lax.scan(step, carry,
                               jax.random.split(jax.random.key(1), 300))
  first, last = float(losses[:10].mean()), float(losses[-10:].mean())
  # 64 binary pixels start near 64 log 2 = 44 nats; a trained VAE is far below.
  assert first > 35.0 and last < 0.75 * first


def test_active_units_counts_varying_dimensions():
  rng = np.random.default_rng(0)
  means = np.stack([rng.normal(0, 1, 500), rng.normal(0, 0.05, 500),
                    rng.normal(0, 0.2, 500)], axis=1)  # var 1, .0025, .04
  assert vae.active_units(jnp.asarray(means)) == 2
  assert vae.active_units(jnp.asarray(means), threshold=0.5) == 1


def test_sampling_and_unsupported_calls():
  model = make_model("vampprior")
  params = model.init(jax.random.key(0), data_batch(0))
  samples = model.sample(params, jax.random.key(1), 5)
  assert samples.shape == (5, *EVENT)
  assert bool(jnp.all((samples >= 0.5) & (samples <= LEVELS - 0.5)))
  with pytest.raises(ValueError, match="number of samples"):
    model.sample(params, jax.random.key(1), 0)
  assert not protocols.offers(model, protocols.Density)  # iwae bounds it
  with pytest.raises(ValueError, match="prior='flow'"):
    make_model("flow").init(jax.random.key(0), data_batch(0))
  with pytest.raises(ValueError, match="outside"):
    model.init(jax.random.key(0), {"x": jnp.full((1, *EVENT), 17.5)})


def test_beta_weights_the_kl_term_of_the_training_loss_only():
  batch = data_batch(3)
  params = make_model().init(jax.random.key(0), batch)
  key = jax.random.key(1)
  _, plain = make_model().loss(params, batch, key)
  loss, metrics = make_model(beta=1.5).loss(params, batch, key)
  np.testing.assert_allclose(
      loss, metrics["reconstruction_nll"] + 1.5 * metrics["kl"], rtol=1e-5)
  np.testing.assert_allclose(metrics["elbo"], plain["elbo"], rtol=1e-6)
  np.testing.assert_allclose(plain["loss"], -plain["elbo"], rtol=1e-6)
  with pytest.raises(ValueError, match="beta=0"):
    make_model(beta=0.0)


def test_kl_weight_rises_linearly_to_one_over_the_warm_up():
  weights = [float(elbo.kl_weight(jnp.int32(s), 4)) for s in range(7)]
  np.testing.assert_allclose(weights, [0.25, 0.5, 0.75, 1, 1, 1, 1])
  assert float(elbo.kl_weight(jnp.int32(0), 0)) == 1.0   # no warm-up


def test_loss_weighs_the_kl_term_by_the_schedule_at_its_step():
  batch, key = data_batch(3), jax.random.key(1)
  model = make_model(beta=2.0, kl_warmup_steps=4)
  params = model.init(jax.random.key(0), batch)
  for step in (0, 1, 2, 3, 9):
    loss, metrics = model.loss_at_step(params, batch, key, jnp.int32(step))
    weight = 2.0 * min(1.0, (step + 1) / 4)
    assert float(metrics["kl_weight"]) == pytest.approx(weight)
    np.testing.assert_allclose(
        loss, metrics["reconstruction_nll"] + weight * metrics["kl"],
        rtol=1e-5)
  after, _ = model.loss(params, batch, key)     # `loss`: the warm-up is over
  np.testing.assert_allclose(after, loss, rtol=1e-6)
  with pytest.raises(ValueError, match="kl_warmup_steps=-1"):
    make_model(kl_warmup_steps=-1)


def test_trainer_passes_its_step_to_the_kl_schedule():
  import optax  # pylint: disable=g-import-not-at-top
  from train.loop import state as state_lib  # pylint: disable=g-import-not-at-top
  from train.loop import trainer  # pylint: disable=g-import-not-at-top
  model = make_model(kl_warmup_steps=10)
  assert protocols.offers(model, protocols.StepScheduledLoss)
  optimizer = optax.sgd(0.0)
  state = state_lib.create_train_state(model, optimizer, jax.random.key(0),
                                       data_batch(0))
  train_step = jax.jit(trainer.make_train_step(model, optimizer))
  for step in (0, 4, 9, 20):
    _, metrics = train_step(state.replace(step=jnp.int32(step)),
                            data_batch(1))
    weight = min(1.0, (step + 1) / 10)
    assert float(metrics["kl_weight"]) == pytest.approx(weight)
    np.testing.assert_allclose(
        metrics["loss"], metrics["reconstruction_nll"] + weight * metrics["kl"],
        rtol=1e-5)


def test_configs_warm_up_for_paper_3s_100_epochs_within_the_run():
  from configs import vae_digits, vae_mnist5k  # pylint: disable=g-import-not-at-top
  from nbflows.models import registry  # pylint: disable=g-import-not-at-top
  # 100 epochs (paper 3, Sec. 5) of 1,294 / 3,600 training images, batch 100.
  assert registry.build_model(vae_digits.get_config()).kl_warmup_steps == 1300
  mnist5k = vae_mnist5k.get_config()
  assert mnist5k.vae.kl_warmup_steps == 3600 < mnist5k.num_train_steps
  config = vae_digits.get_config()
  config.num_train_steps = 1300
  with pytest.raises(ValueError, match=r"config.vae.kl_warmup_steps=1300 is "
                     r"not smaller than config.num_train_steps=1300"):
    registry.build_model(config)
