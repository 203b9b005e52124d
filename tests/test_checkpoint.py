"""Tests of train.loop.checkpoint, nbflows.checkpoint and load_checkpoint."""
from __future__ import annotations

import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from nbflows import checkpoint as checkpoint_format
from nbflows import checkpoint_loading
from nbflows.models import registry
from train.loop import checkpoint as checkpoint_lib
from train.loop import sharding
from train.loop import state as state_lib
from train.loop import trainer
from tiny_flow import tiny_model


def toy_config(**flow):
  """A small real model (RealNVP with MLP couplings) on a 2-D toy dataset."""
  config = default.get_config("quick")
  config.model, config.dataset = "rnvp_mlp", "two_rectangles"
  for name, value in flow.items():
    config.flow[name] = value
  return config


def tiny_state(seed=0):
  """A TrainState of the tiny flow, moved off its initialisation."""
  model = tiny_model()
  config = default.get_config("quick")
  optimizer = state_lib.make_optimizer(config.optimizer, config.num_train_steps)
  batch = {"x": jax.random.normal(jax.random.key(seed), (8, 2))}
  state = state_lib.create_train_state(model, optimizer, jax.random.key(seed),
                                       batch)
  state, _ = jax.jit(trainer.make_train_step(model, optimizer))(state, batch)
  return model, optimizer, state, batch


def registry_state(config, seed=0):
  """A TrainState of `config`'s model with perturbed parameters."""
  model = registry.build_model(config)
  optimizer = state_lib.make_optimizer(config.optimizer, config.num_train_steps)
  batch = {"x": jax.random.uniform(jax.random.key(seed), (8, 2))}
  state = jax.jit(lambda key: state_lib.create_train_state(
      model, optimizer, key, batch))(jax.random.key(seed))
  noise = jax.random.key(seed + 1)
  params = jax.tree.map(
      lambda p: p + 0.01 * jax.random.normal(noise, p.shape, p.dtype),
      state.params)
  return model, state.replace(params=params, step=jnp.int32(7)), batch


def abstract_of(state):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state)


def assert_trees_equal(a, b):
  a, b = jax.device_get((a, b))
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_save_restore_round_trip_is_bitwise(tmp_path):
  _, _, state, _ = tiny_state()
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=2)
  loop = {"best_value": 1.25, "best_step": 7, "evals_without_improvement": 1,
          "stopped_early": False}
  ckpt.save(7, state, loop)
  ckpt.close()
  reopened = checkpoint_lib.Checkpointer(str(tmp_path), keep=2)
  restored, restored_loop = reopened.restore(7, abstract_of(state))
  assert_trees_equal(restored.params, state.params)
  assert_trees_equal(restored.opt_state, state.opt_state)
  assert_trees_equal(jax.random.key_data(restored.rng),
                     jax.random.key_data(state.rng))
  assert int(restored.step) == 1 and restored_loop == loop
  reopened.close()


def test_keeps_the_latest_n_and_the_best(tmp_path):
  state = {"params": {"w": jnp.zeros(3)}}
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=2)
  for step in range(1, 6):
    value = {"params": {"w": jnp.full(3, float(step))}}
    ckpt.save(step, value, {"step": step}, best=step == 2)
  ckpt.wait()
  assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints")) == [4, 5]
  assert ckpt.best_step() == 2 and ckpt.latest_step() == 5
  best, loop = ckpt.restore(2, state, which="best")
  assert best["params"]["w"].tolist() == [2.0] * 3 and loop == {"step": 2}
  ckpt.close()


def test_an_async_save_is_unaffected_by_donating_the_state(tmp_path):
  model, optimizer, state, batch = tiny_state()
  mesh = sharding.make_mesh(jax.devices()[:1])
  step = trainer.compile_train_step(trainer.make_train_step(model, optimizer),
                                    mesh)
  expected = jax.device_get(state.params)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=2)
  ckpt.save(7, state, {})
  new_state, _ = step(state, batch)   # donates (invalidates) `state`
  jax.block_until_ready(new_state)
  restored, _ = ckpt.restore(7, abstract_of(new_state))
  assert_trees_equal(restored.params, expected)
  ckpt.close()


def test_a_half_written_save_is_ignored(tmp_path):
  state = {"params": {"w": jnp.arange(3.0)}}
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=3)
  ckpt.save(10, state, {"step": 10})
  ckpt.save(20, {"params": {"w": jnp.arange(3.0) + 20}}, {"step": 20})
  ckpt.close()
  # A save of step 30 killed half-way: orbax's temporary directory, with
  # only part of the files.
  root = tmp_path / "checkpoints"
  partial = root / "30.orbax-checkpoint-tmp-1767225600000000"
  shutil.copytree(root / "20", partial)
  shutil.rmtree(partial / "params")
  reopened = checkpoint_lib.Checkpointer(str(tmp_path), keep=3)
  assert reopened.latest_step() == 20
  restored, loop = reopened.restore(20, state)
  assert restored["params"]["w"].tolist() == [20.0, 21.0, 22.0]
  assert loop == {"step": 20}
  assert not partial.exists()   # cleaned up when the run reopens the dir
  reopened.close()


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  """A workdir with a real model's checkpoints at steps 5, 7 (best) and 9."""
  workdir = str(tmp_path_factory.mktemp("saved_run"))
  config = toy_config()
  _, state, batch = registry_state(config)
  checkpoint_format.save_config(config, workdir)
  ckpt = checkpoint_lib.Checkpointer(workdir, keep=2)
  ckpt.save(5, state.replace(step=jnp.int32(5)), {})
  ckpt.save(7, state, {}, best=True)
  perturbed = jax.tree.map(lambda p: p + 1.0, state.params)
  ckpt.save(9, state.replace(params=perturbed, step=jnp.int32(9)), {})
  ckpt.close()
  return workdir, config, state, perturbed, batch


def test_restoring_another_models_checkpoint_names_the_mismatch(saved_run):
  workdir, config, _, _, _ = saved_run
  assert config.flow.mlp_hidden == (32, 32)
  with pytest.raises(ValueError) as error:
    checkpoint_loading.load_checkpoint(workdir, toy_config(mlp_hidden=(32, 48)))
  message = str(error.value)
  assert "another model config" in message
  assert "flow.mlp_hidden: (32, 32) in the checkpoint, (32, 48) now" in message
  # A parameter path and both shapes, e.g. ".../dense1/kernel: shape
  # (4, 32, 32) in the checkpoint, (4, 32, 48) in the model".
  assert re.search(r"/kernel: shape \(.*32\) in the checkpoint, \(.*48\) in "
                   r"the model", message), message


def test_load_checkpoint_rebuilds_the_model_and_params(saved_run):
  workdir, config, state, perturbed, batch = saved_run
  model, params, loaded_config = checkpoint_loading.load_checkpoint(workdir)
  assert loaded_config.to_dict() == config.to_dict()
  assert model.name == "rnvp_mlp" and model.event_shape == (2,)
  assert_trees_equal(params, state.params)   # the best (7), not the latest (9)
  np.testing.assert_allclose(model.log_prob(params, batch["x"]),
                             model.log_prob(state.params, batch["x"]),
                             rtol=1e-6)
  _, latest, _ = checkpoint_loading.load_checkpoint(workdir, which="latest")
  assert_trees_equal(latest, perturbed)


def test_config_round_trip_and_differences(tmp_path):
  config = toy_config()
  checkpoint_format.save_config(config, str(tmp_path))
  loaded = checkpoint_format.load_config(str(tmp_path))
  assert loaded.to_dict() == config.to_dict()
  assert loaded.flow.mlp_hidden == (32, 32)   # tuples survive JSON
  with pytest.raises(AttributeError):
    loaded.not_a_field = 1                    # locked
  changed = toy_config()
  changed.batch_size = 32
  assert checkpoint_format.config_differences(
      config.to_dict(), changed.to_dict()) == [
          "batch_size: 16 in the checkpoint, 32 now"]
  with pytest.raises(FileNotFoundError, match="config.json"):
    checkpoint_format.load_config(str(tmp_path / "missing"))


def test_load_checkpoint_without_checkpoints_says_so(tmp_path):
  checkpoint_format.save_config(toy_config(), str(tmp_path))
  with pytest.raises(FileNotFoundError, match="holds no latest checkpoint"):
    checkpoint_loading.load_checkpoint(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="config.json"):
    checkpoint_loading.load_checkpoint(str(tmp_path / "elsewhere"))
  reader = checkpoint_lib.Checkpointer(str(tmp_path), read_only=True)
  with pytest.raises(ValueError, match="read-only"):
    reader.save(1, {"w": jnp.zeros(2)}, {})
  reader.close()
  assert sorted(os.listdir(tmp_path)) == ["config.json"]   # nothing created
