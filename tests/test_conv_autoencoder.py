"""Tests of paper 5's convolutional encoder and decoder (App. A) in the VAEs
and GLF: shapes per image size, the heads' rules, training, config errors."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import glf_conv_digits
from configs import glf_digits
from configs import vae_conv_digits
from configs import vae_digits
from nbflows.models import conv_autoencoder
from nbflows.models import glf
from nbflows.models import registry
from nbflows.models import vae

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

FEATURES = (2, 3)
LATENT = 4


def conv_pair(event_shape, variance="hardtanh"):
  encoder = vae.GaussianEncoder(LATENT, hidden=(5,), activation="relu",
                                variance=variance, architecture="conv",
                                conv_features=FEATURES)
  decoder = vae.Decoder(event_shape, hidden=(5,), activation="relu",
                        architecture="conv", conv_features=FEATURES)
  return encoder, decoder


@pytest.mark.parametrize("event_shape, bottleneck", [
    ((8, 8, 1), (2, 2)), ((28, 28, 1), (7, 7)), ((32, 32, 3), (8, 8))],
                         ids=["digits", "mnist5k", "cifar10"])
def test_shapes_halve_the_image_per_convolution_and_mirror_it(event_shape,
                                                              bottleneck):
  encoder, decoder = conv_pair(event_shape)
  x = jax.ShapeDtypeStruct((3, *event_shape), jnp.float32)
  params = jax.eval_shape(encoder.init, jax.random.key(0), x)["params"]
  # The dense layer after the convolutions sees M x M x F features, M = H / 4.
  assert params["hidden0"]["kernel"].shape == (
      bottleneck[0] * bottleneck[1] * FEATURES[-1], 5)
  assert params["conv"]["conv1"]["kernel"].shape == (4, 4, FEATURES[0],
                                                     FEATURES[1])
  mean, log_variance = jax.eval_shape(encoder.apply, {"params": params}, x)
  assert mean.shape == log_variance.shape == (3, LATENT)
  z = jax.ShapeDtypeStruct((6, 3, LATENT), jnp.float32)   # [S, B, d]
  params = jax.eval_shape(decoder.init, jax.random.key(0), z)["params"]
  assert params["conv"]["bottleneck"]["kernel"].shape == (
      5, bottleneck[0] * bottleneck[1] * FEATURES[-1])
  assert params["conv"]["deconv1"]["kernel"].shape[-1] == event_shape[-1]
  assert jax.eval_shape(decoder.apply, {"params": params}, z).shape == (
      6, 3, *event_shape)


def test_decoder_decodes_each_latent_of_leading_axes_alone():
  """[S, B, d] codes (the IWAE samples) decode as S separate batches."""
  _, decoder = conv_pair((8, 8, 1))
  z = jax.random.normal(jax.random.key(0), (2, 3, LATENT))
  params = decoder.init(jax.random.key(1), z)
  apply = jax.jit(decoder.apply)
  together = apply(params, z)
  np.testing.assert_allclose(together[1], apply(params, z[1]), rtol=1e-6)
  np.testing.assert_allclose(together[0, 2], apply(params, z[0, 2:])[0],
                             rtol=1e-6)
  assert not np.allclose(together[0, 0], together[0, 1])


@pytest.mark.parametrize("variance, low, high", [
    ("hardtanh", -6.0, 2.0),                                 # paper 3
    ("softplus", float(np.log(np.log1p(np.exp(-30.0)) + vae.MIN_VARIANCE)),
     float(np.log(np.log1p(np.exp(30.0)) + vae.MIN_VARIANCE)))])  # paper 5
def test_log_variance_follows_the_rule_of_the_mlp_encoder(variance, low, high):
  encoder, _ = conv_pair((8, 8, 1), variance)
  mlp = vae.GaussianEncoder(LATENT, hidden=(5,), activation="relu",
                            variance=variance)
  x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
  params = encoder.init(jax.random.key(1), x)
  mlp_params = mlp.init(jax.random.key(1), x)
  head = {"kernel": jnp.zeros((5, LATENT)),
          "bias": jnp.asarray([-30.0, 30.0, -3.0, 0.5])}
  params["params"]["log_variance"] = head
  mlp_params["params"]["log_variance"] = head
  _, log_variance = encoder.apply(params, x)
  np.testing.assert_allclose(log_variance,
                             mlp.apply(mlp_params, x)[1], rtol=1e-6)
  np.testing.assert_allclose(log_variance[:, :2], [[low, high]] * 2,
                             rtol=1e-5)
  assert bool(jnp.all(log_variance >= (-6.0 if variance == "hardtanh"
                                       else np.log(vae.MIN_VARIANCE))))


def quick_model(config_module, dataset="digits"):
  config = config_module.get_config("quick")
  config.dataset = dataset
  return registry.build_model(config)


def image_batch(seed, levels, batch=4, event=(8, 8, 1)):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, levels, (batch, *event)) + rng.random((batch, *event))
  return {"x": jnp.asarray(x, jnp.float32),
          "index": jnp.arange(batch, dtype=jnp.int32)}


def one_train_step(model, batch, learning_rate):
  """The trainer's own step, jitted: (state before, state after, metrics)."""
  from train.loop import state as state_lib  # pylint: disable=g-import-not-at-top
  from train.loop import trainer  # pylint: disable=g-import-not-at-top
  optimizer = optax.sgd(learning_rate)
  state = state_lib.create_train_state(model, optimizer, jax.random.key(0),
                                       batch)
  after, metrics = jax.jit(trainer.make_train_step(model, optimizer))(
      state, batch)
  return state, after, metrics


def network_parameter_moves(before, after):
  """{net: {layer: largest change}}; sgd moves a parameter by -lr * grad."""
  return {net: jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                            before.params["params"][net],
                            after.params["params"][net])
          for net in ("encoder", "decoder")}


def assert_moved(moves):
  assert "conv" in moves["encoder"] and "conv" in moves["decoder"], moves
  for net, moved in moves.items():
    assert min(jax.tree.leaves(moved)) > 0, (net, moved)


def test_conv_glf_trains_every_network_parameter_through_the_trainer():
  config = glf_conv_digits.get_config("quick")
  config.glf.flow_blocks = 1                # the flow is not under test
  model = registry.build_model(config)
  assert model.module.architecture == "conv"
  batch = image_batch(0, model.num_levels)
  before, after, metrics = one_train_step(model, batch, 0.05)
  assert float(metrics["skipped"]) == 0.0
  assert np.isfinite(float(metrics["loss"])) and float(metrics["nll"]) > 0
  moves = network_parameter_moves(before, after)
  # Eq. 5 codes are the encoder's mean: its variance head gets no gradient.
  assert jax.tree.leaves(moves["encoder"].pop("log_variance")) == [0.0, 0.0]
  assert_moved(moves)
  # GLF's loss is deterministic: the step lowers it on its batch.
  key = jax.random.key(1)
  assert float(model.loss(after.params, batch, key)[0]) < float(
      metrics["loss"])


def test_conv_vae_trains_every_network_parameter_through_the_trainer():
  model = quick_model(vae_conv_digits)
  assert model.module.architecture == "conv"
  batch = image_batch(1, model.num_levels)
  before, after, metrics = one_train_step(model, batch, 1e-3)
  assert float(metrics["skipped"]) == 0.0
  # The ELBO of 64 Bernoulli pixels: a finite bound below log 1 = 0.
  assert np.isfinite(float(metrics["loss"])) and float(metrics["elbo"]) < 0
  assert_moved(network_parameter_moves(before, after))


def test_mlp_stays_the_default_with_the_parameters_it_had():
  for config_module in (glf_digits, vae_digits):
    model = quick_model(config_module)
    assert model.module.architecture == "mlp"
    batch = image_batch(0, model.num_levels, batch=2)
    params = jax.eval_shape(model.init, jax.random.key(0), batch)["params"]
    assert sorted(params["encoder"]) == ["hidden0", "hidden1", "log_variance",
                                         "mean"]
    assert sorted(params["decoder"]) == ["hidden0", "hidden1", "logits"]
  # A run saved before the fields existed had the MLP.
  block = ml_collections.ConfigDict({"latent_dim": 2})
  assert vae.network_architecture(block, (8, 8, 1), "config.vae") == (
      "mlp", (64, 128))


def test_config_errors_name_the_field_and_what_was_expected():
  config = glf_conv_digits.get_config("quick")
  config.glf.architecture = "cnn"
  with pytest.raises(ValueError, match=r"config.glf.architecture='cnn'; "
                     r"expected one of \('mlp', 'conv'\)"):
    registry.build_model(config)
  config = vae_conv_digits.get_config("quick")
  config.dataset = "two_rectangles"
  with pytest.raises(ValueError, match=r"config.vae.architecture='conv' needs "
                     r"images \[H, W, C\]; the data have event shape \(2,\)"):
    registry.build_model(config)
  config = glf_conv_digits.get_config("quick")
  config.dataset = "mnist5k"
  config.glf.conv_features = (4, 4, 4)
  with pytest.raises(ValueError, match=r"must be divisible by 8; the images "
                     r"are 28x28"):
    registry.build_model(config)
  with pytest.raises(ValueError, match=r"conv_features=\(\); expected one"):
    conv_autoencoder.check_architecture("conv", (8, 8, 1), ())
  # The module checks too, when built without a config.
  network = glf.LatentFlowAutoEncoder(event_shape=(6, 6, 1), latent_dim=2,
                                      architecture="conv")
  with pytest.raises(ValueError, match="divisible by 4; the images are 6x6"):
    jax.eval_shape(network.init, jax.random.key(0), jnp.zeros((1, 6, 6, 1)))
