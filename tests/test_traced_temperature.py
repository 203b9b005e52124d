"""Every sampler takes a traced temperature (`base.checked_temperature`).

One tiny model of each family whose `sample` is its own (the VAEs, GLF, the
NIF-prior flow; the flows' `TrainableModel.sample` is
tests/test_data_units.py's): jitted with the temperature traced, it equals
the eager call with a float, and temperature 0 gives what the model's
docstring says (the decoded prior mean or mixture component means, GLF's
f^-1(0), the NIF flow's f^-1(b) with the noise scale 0 as well).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nbflows.bijectors import actnorm
from nbflows.bijectors import combinators
from nbflows.models import exemplar_vae
from nbflows.models import glf
from nbflows.models import nif_flow
from nbflows.models import vae

pytestmark = pytest.mark.usefixtures("fast_compiles")

EVENT = (3, 3, 1)
LEVELS = 17
NUM = 4


def _images(batch, seed=0):
  return np.random.default_rng(seed).integers(0, LEVELS, (batch, *EVENT)
                                              ).astype(np.uint8)


def _init(model, x):
  # Jitted: an eager init (and eager decoding below) dispatches, and so
  # compiles, every operation on its own.
  return jax.jit(model.init)(jax.random.key(0), {"x": x})


def _vae(prior):
  network = vae.VAE(event_shape=EVENT, latent_dim=2, hidden=(8,), prior=prior,
                    num_pseudo_inputs=3)
  if prior == "exemplar":
    model = exemplar_vae.ExemplarVAEModel(network, _images(5, seed=1),
                                          num_levels=LEVELS, iwae_samples=2)
  else:
    model = vae.VAEModel(network, num_levels=LEVELS, iwae_samples=2)
  return model, _init(model, _images(2) + 0.5)


def _mixture_means(model, params):
  """The decoded component means of a VampPrior or exemplar prior [K, ...]."""

  def means(params):
    prior = model.prior(params)
    if model.module.prior == "vampprior":
      return model.decode(params, prior.encode(prior.pseudo_inputs)[0])
    return model.decode(params, prior.means)

  return jax.jit(means)(params)


def _assert_rows_among(samples, candidates):
  distance = np.abs(np.asarray(samples)[:, None] -
                    np.asarray(candidates)[None]).reshape(
                        len(samples), len(candidates), -1).max(-1)
  assert np.all(distance.min(axis=1) < 1e-4), distance


@functools.cache
def case(name):
  """(sampler (params, key, T) -> samples, params, model, mode check)."""
  if name in ("vae", "vampprior", "evae"):
    prior = {"vae": "gaussian", "vampprior": "vampprior",
             "evae": "exemplar"}[name]
    model, params = _vae(prior)

    def mode(samples):
      if prior == "gaussian":
        np.testing.assert_allclose(samples, jax.jit(model.decode)(
            params, jnp.zeros((NUM, 2))), rtol=1e-5)
      else:
        _assert_rows_among(samples, _mixture_means(model, params))

    return (lambda p, k, t: model.sample(p, k, NUM, temperature=t)), (
        params, model, mode)
  if name == "evae_sample_like":
    model, params = _vae("exemplar")
    exemplars = _images(2, seed=2) + 0.5

    def mode(samples):
      means = jax.jit(lambda p: model.decode(p, model.encode(p, exemplars)[0]))(
          params)
      np.testing.assert_allclose(samples, jnp.repeat(means[:, None], 2, 1),
                                 rtol=1e-5)

    return (lambda p, k, t: model.sample_like(p, k, exemplars, 2, t)), (
        params, model, mode)
  if name == "glf":
    model = glf.GLFModel(glf.LatentFlowAutoEncoder(
        event_shape=EVENT, latent_dim=2, hidden=(8,), flow_blocks=1,
        flow_hidden=(4,)), num_levels=LEVELS)
    # + 0.1: f is not the identity.
    params = jax.tree.map(lambda p: p + 0.1, _init(model, _images(2) + 0.5))

    def mode(samples):
      np.testing.assert_allclose(samples, model.decode_noise(
          params, jnp.zeros((NUM, 2))), rtol=1e-5)

    return (lambda p, k, t: model.sample(p, k, NUM, temperature=t)), (
        params, model, mode)
  assert name == "nif_flow"
  module = nif_flow.NIFFlowModel(
      transform=combinators.Chain((actnorm.ActNorm(),)), event_shape=(4,),
      latent_dim=2)
  model = nif_flow.NIFModel(module, (4,), name="nif_flow")
  params = model.init(jax.random.key(0), {
      "x": np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)})
  params = jax.tree.map(lambda p: p + 0.3, params)   # b != 0, f != identity

  def mode(samples):
    bias = params["params"]["nif"]["bias"].reshape(1, 4)
    expected, _ = model.inverse(params, jnp.repeat(bias, NUM, 0))
    np.testing.assert_allclose(samples, expected, rtol=1e-5)

  return (lambda p, k, t: model.sample(p, k, NUM, temperature=t,
                                       noise_scale=t)), (params, model, mode)


@pytest.mark.parametrize("name", ["vae", "vampprior", "evae",
                                  "evae_sample_like", "glf", "nif_flow"])
def test_a_traced_temperature_equals_the_eager_float(name):
  sampler, (params, _, mode) = case(name)
  key = jax.random.key(3)
  jitted = jax.jit(sampler)
  for t in (0.0, 0.7):
    np.testing.assert_allclose(jitted(params, key, t), sampler(params, key, t),
                               rtol=1e-5, atol=1e-5)
  assert np.any(np.asarray(jitted(params, key, 0.0)) !=
                np.asarray(jitted(params, key, 0.7)))
  mode(sampler(params, key, 0.0))
  with pytest.raises(ValueError, match="temperature=-1.0; expected >= 0"):
    sampler(params, key, -1.0)


def test_the_nif_flows_noise_scale_is_checked_when_concrete():
  _, (params, model, _) = case("nif_flow")
  with pytest.raises(ValueError, match="noise_scale=-0.5; expected >= 0"):
    model.sample(params, jax.random.key(0), 2, 1.0, noise_scale=-0.5)
