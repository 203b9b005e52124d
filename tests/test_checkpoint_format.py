"""nbflows.checkpoint's format: its items, fitted models, old runs."""
from __future__ import annotations

import os
import runpy
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from configs import kde_digits
from nbflows import checkpoint as checkpoint_format
from nbflows import checkpoint_loading
from nbflows.data import sources
from nbflows.models import registry
from test_checkpoint import abstract_of
from test_checkpoint import assert_trees_equal
from test_checkpoint import registry_state
from test_checkpoint import toy_config
from train.loop import checkpoint as checkpoint_lib
from train.loop import fitting
from train.loop import trainer


def items(workdir, which, step):
  """The item names of one step directory."""
  directory = os.path.join(checkpoint_format.checkpoints_dir(workdir, which),
                           str(step))
  return sorted(name for name in os.listdir(directory)
                if os.path.isdir(os.path.join(directory, name)))


def test_a_training_state_is_saved_as_the_library_and_trainer_items(tmp_path):
  config = toy_config()
  _, state, _ = registry_state(config)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=2)
  ckpt.save(7, state, {"best_step": 7}, best=True)
  ckpt.close()
  assert items(str(tmp_path), "latest", 7) == [
      "loop", "opt_state", "params", "step", "trainer"]
  params, trained = checkpoint_format.restore_params(
      str(tmp_path), abstract_of(state.params), "best", 7)
  assert_trees_equal(params, state.params)
  assert trained == 7


def test_a_fitted_kde_saves_its_params_and_no_optimizer_state(tmp_path):
  config = kde_digits.get_config("quick")
  config.eval.metrics = "bpd"
  workdir = str(tmp_path)
  trainer.train_and_evaluate(config, workdir)
  for which in ("latest", "best"):
    assert items(workdir, which, 0) == ["loop", "params", "step"]
  model, params, _ = checkpoint_loading.load_checkpoint(workdir)
  # The checkpoint holds the parameters and nothing of their size besides:
  # no Adam moments of the training set.
  step_dir = os.path.join(checkpoint_format.checkpoints_dir(workdir, "best"),
                          "0")
  assert jax.tree.structure(checkpoint_format.stored_params(step_dir)) == (
      jax.tree.structure(params))
  splits = sources.load(config.dataset)
  key = jax.random.split(jax.random.key(config.seed))[0]
  fitted, _ = model.fit(key, splits.train.images, fitting.validation_points(
      splits, config.eval_batch_size))
  assert_trees_equal(params, fitted)


def write_old_layout(workdir, config):
  """A run saved before nbflows.checkpoint: items "state" and "loop" at
  steps 5 and 7 (the best), as train.loop.checkpoint wrote them."""
  _, state, batch = registry_state(config)
  checkpoint_format.save_config(config, workdir)
  for which, steps in (("latest", (5, 7)), ("best", (7,))):
    manager = ocp.CheckpointManager(
        checkpoint_format.checkpoints_dir(workdir, which),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "loop": ocp.JsonCheckpointHandler()})
    for step in steps:
      manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state.replace(step=jnp.int32(step))),
          loop=ocp.args.JsonSave({"best_step": 7})))
    manager.close()
  return state, batch


def test_an_old_layout_run_says_how_to_convert_it_and_converts(
    tmp_path, monkeypatch, capsys):
  workdir = str(tmp_path)
  config = toy_config()
  state, _ = write_old_layout(workdir, config)
  command = f"python -m train.convert_checkpoint {workdir}"
  with pytest.raises(ValueError, match=command):
    checkpoint_loading.load_checkpoint(workdir)
  ckpt = checkpoint_lib.Checkpointer(workdir, read_only=True)
  with pytest.raises(ValueError, match=command):   # resuming it
    ckpt.restore(7, abstract_of(state))
  ckpt.close()

  monkeypatch.setattr(sys, "argv", ["convert_checkpoint", workdir])
  runpy.run_module("train.convert_checkpoint", run_name="__main__")
  assert capsys.readouterr().out.count("converted ") == 3
  assert items(workdir, "latest", 5) == [
      "loop", "opt_state", "params", "step", "trainer"]
  assert sorted(os.listdir(workdir)) == ["best", "checkpoints", "config.json"]

  model, params, _ = checkpoint_loading.load_checkpoint(workdir)
  assert model.name == registry.build_model(config).name
  assert_trees_equal(params, state.params)
  ckpt = checkpoint_lib.Checkpointer(workdir, read_only=True)
  assert (ckpt.latest_step(), ckpt.best_step()) == (7, 7)
  restored, loop = ckpt.restore(5, abstract_of(state))
  ckpt.close()
  assert_trees_equal(restored.opt_state, state.opt_state)
  assert_trees_equal(jax.random.key_data(restored.rng),
                     jax.random.key_data(state.rng))
  assert int(restored.step) == 5 and loop == {"best_step": 7}
