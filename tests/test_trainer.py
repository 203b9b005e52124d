"""Tests of the train step, the training loop and data-parallel sharding.

A diagonal affine flow (tests/tiny_flow.py: two parameters per dimension,
maximum likelihood known) keeps these fast; the end-to-end run of a real
model on digits is in test_entry_points.py.
"""
from __future__ import annotations

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from tiny_flow import tiny_model
from train.loop import sharding
from train.loop import state as state_lib
from train.loop import trainer


def tiny_config(**overrides):
  config = default.get_config("quick")
  config.optimizer.learning_rate = 0.1
  config.optimizer.warmup_steps = 0
  config.optimizer.schedule = "constant"
  config.optimizer.weight_decay = 0.0
  for name, value in overrides.items():
    target = config
    *parents, leaf = name.split(".")
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config


def gaussian_batch(n=64, dim=2, seed=0):
  x = 3.0 + 0.5 * np.random.default_rng(seed).standard_normal((n, dim))
  return {"x": jnp.asarray(x, jnp.float32)}


def fresh_state(model, config, batch):
  optimizer = state_lib.make_optimizer(config.optimizer, config.num_train_steps)
  state = state_lib.create_train_state(model, optimizer, jax.random.key(0),
                                       batch)
  return state, trainer.make_train_step(model, optimizer)


def test_train_step_lowers_the_loss_and_reaches_the_mle():
  model, config, batch = tiny_model(), tiny_config(), gaussian_batch()
  state, train_step = fresh_state(model, config, batch)
  step = jax.jit(train_step)
  loss_before = model.loss(state.params, batch, None)[0]
  state, metrics = step(state, batch)
  assert float(metrics["loss"]) == pytest.approx(float(loss_before), rel=1e-6)
  assert float(model.loss(state.params, batch, None)[0]) < float(loss_before)
  for _ in range(300):
    state, metrics = step(state, batch)
  # The maximum-likelihood diagonal Gaussian: the batch mean and std.
  params = state.params["params"]
  np.testing.assert_allclose(params["shift"], np.mean(batch["x"], 0), atol=0.02)
  np.testing.assert_allclose(np.exp(params["log_scale"]), np.std(batch["x"], 0),
                             rtol=0.03)
  assert int(state.step) == 301


def test_jitted_step_equals_the_eager_computation():
  model, config, batch = tiny_model(), tiny_config(), gaussian_batch()
  state, train_step = fresh_state(model, config, batch)
  eager_state, eager_metrics = train_step(state, batch)
  mesh = sharding.make_mesh(jax.devices()[:1])
  compiled = trainer.compile_train_step(train_step, mesh)
  jit_state, jit_metrics = compiled(jax.tree.map(jnp.copy, state), batch)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               (eager_state.params, eager_state.opt_state, eager_metrics),
               (jit_state.params, jit_state.opt_state, jit_metrics))
  assert int(jit_state.step) == int(eager_state.step) == 1


def test_nonfinite_batch_is_skipped_and_counted():
  model, config, batch = tiny_model(), tiny_config(), gaussian_batch()
  state, train_step = fresh_state(model, config, batch)
  step = jax.jit(train_step)
  state, _ = step(state, batch)
  before = jax.device_get(state)
  for bad_value, expected_streak in ((np.nan, 1), (np.inf, 2)):
    bad = {"x": batch["x"].at[3, 1].set(bad_value)}
    state, metrics = step(state, bad)
    after = jax.device_get(state)
    jax.tree.map(np.testing.assert_array_equal,
                 (before.params, before.opt_state),
                 (after.params, after.opt_state))
    assert float(metrics["skipped"]) == 1.0
    assert int(after.nonfinite_streak) == expected_streak
  assert int(state.step) == 3 and int(state.nonfinite_total) == 2
  state, metrics = step(state, batch)
  assert float(metrics["skipped"]) == 0.0
  assert int(state.nonfinite_streak) == 0 and int(state.nonfinite_total) == 2
  assert not np.array_equal(state.params["params"]["shift"],
                            before.params["params"]["shift"])


def test_a_nonfinite_gradient_under_a_finite_loss_is_skipped():
  model, config, batch = tiny_model(), tiny_config(), gaussian_batch()
  loss = model.loss

  def loss_with_a_nan_gradient(params, batch, key):
    # sqrt(0) is finite, its derivative is not: only one gradient entry
    # of the shift is NaN, the loss stays finite.
    value, metrics = loss(params, batch, key)
    shift = params["params"]["shift"]
    return value + jnp.sqrt(shift[0] - shift[0]), metrics

  model.loss = loss_with_a_nan_gradient
  state, train_step = fresh_state(model, config, batch)
  before = jax.device_get(state)
  state, metrics = jax.jit(train_step)(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  assert float(metrics["skipped"]) == 1.0
  jax.tree.map(np.testing.assert_array_equal, before.params,
               jax.device_get(state.params))


def test_config_values_are_validated_by_name():
  cases = {
      "num_train_steps": (0, r"config.num_train_steps=0; expected an integer "
                          r">= 1"),
      "batch_size": (0, r"config.batch_size=0; expected an integer >= 1"),
      "optimizer.learning_rate": (-1.0, r"config.optimizer.learning_rate=-1.0"),
      "optimizer.warmup_steps": (20, r"warmup_steps=20 is not smaller than "
                                 r"config.num_train_steps=20"),
      "optimizer.schedule": ("linear", r"config.optimizer.schedule='linear'"),
      "max_consecutive_nonfinite_steps": (
          0, r"config.max_consecutive_nonfinite_steps=0"),
      "dataset": ("imagenet_64", r"unknown dataset 'imagenet_64'"),
      "flow.transformer": ("cubic", r"transformer='cubic'; expected one of "
                           r"\('affine', 'spline'\)"),
      "flow.num_bins": (0, r"num_bins=0; expected an integer >= 1"),
  }
  trainer.validate_config(tiny_config())
  for field, (value, message) in cases.items():
    with pytest.raises(ValueError, match=message):
      trainer.validate_config(tiny_config(**{field: value}))


# ------------------------------------------------------------ the loop
def toy_splits():
  from nbflows.data import sources
  return sources.load("two_rectangles", num_toy_examples=400)


def loop_config(**overrides):
  overrides = dict(dict(
      dataset="two_rectangles", num_train_steps=12, batch_size=8,
      eval_batch_size=64, log_every_steps=3, eval_every_steps=6,
      checkpoint_every_steps=3, num_sample_images=8,
      early_stopping_patience=0), **overrides)
  config = tiny_config(**overrides)
  config.optimizer.learning_rate = 0.05
  return config


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def final_params(workdir):
  from train.loop import checkpoint as checkpoint_lib
  ckpt = checkpoint_lib.Checkpointer(workdir, read_only=True)
  step = ckpt.latest_step()
  mesh = sharding.make_mesh(jax.devices()[:1])
  model, config = tiny_model(), loop_config()
  optimizer = state_lib.make_optimizer(config.optimizer, config.num_train_steps)
  abstract = jax.eval_shape(
      lambda key: state_lib.create_train_state(
          model, optimizer, key, {"x": jnp.zeros((8, 2))}), jax.random.key(0))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      x.shape, x.dtype, sharding=sharding.replicated(mesh)), abstract)
  state, _ = ckpt.restore(step, abstract)
  ckpt.close()
  return step, jax.device_get(state)


def interrupting(original, at, action):
  """Wraps pipeline.train_iterator: `action()` before yielding batch `at`.

  `at` counts batches from the start of training, as the pipeline's
  `start_step` does on a resumed run.
  """

  def train_iterator(*args, **kwargs):
    first = kwargs.get("start_step", 0)
    for i, batch in enumerate(original(*args, **kwargs), start=first):
      if i == at:
        action()
      yield batch

  return train_iterator


def test_killed_and_resumed_run_matches_a_straight_run(tmp_path, monkeypatch):
  """Three interruptions, each resumed; the end is bitwise the straight run's.

  A crash at step 3 (before the first checkpoint: restart from scratch),
  SIGTERM during step 8 (checkpoint at 8 and a clean return), a crash at
  step 12 (resume from the periodic checkpoint at 9, redoing 10-11).
  """
  from nbflows.data import pipeline
  splits, config = toy_splits(), loop_config()
  config.num_train_steps = 14
  straight = trainer.train(config, str(tmp_path / "straight"), tiny_model(),
                           splits)
  assert straight["steps_trained"] == 14 and not straight["preempted"]

  def crash():
    raise RuntimeError("simulated kill")

  workdir = str(tmp_path / "resumed")
  original = pipeline.train_iterator
  monkeypatch.setattr(pipeline, "train_iterator",
                      interrupting(original, 2, crash))
  with pytest.raises(RuntimeError, match="simulated kill"):
    trainer.train(config, workdir, tiny_model(), splits)
  assert not os.listdir(os.path.join(workdir, "checkpoints"))

  monkeypatch.setattr(pipeline, "train_iterator", interrupting(
      original, 7, lambda: signal.raise_signal(signal.SIGTERM)))
  preempted = trainer.train(config, workdir, tiny_model(), splits)
  assert preempted == {"preempted": True, "steps_trained": 8}
  assert final_params(workdir)[0] == 8

  monkeypatch.setattr(pipeline, "train_iterator",
                      interrupting(original, 11, crash))
  with pytest.raises(RuntimeError, match="simulated kill"):
    trainer.train(config, workdir, tiny_model(), splits)
  assert final_params(workdir)[0] == 9       # the last periodic checkpoint

  monkeypatch.setattr(pipeline, "train_iterator", original)
  resumed = trainer.train(config, workdir, tiny_model(), splits)
  assert resumed["steps_trained"] == 14
  step_a, state_a = final_params(str(tmp_path / "straight"))
  step_b, state_b = final_params(workdir)
  assert step_a == step_b == 14
  jax.tree.map(np.testing.assert_array_equal,
               (state_a.params, state_a.opt_state,
                jax.random.key_data(state_a.rng)),
               (state_b.params, state_b.opt_state,
                jax.random.key_data(state_b.rng)))
  assert resumed["test_bpd"] == straight["test_bpd"]
  train_steps = [m["step"] for m in read_metrics(workdir)
                 if m["split"] == "train"]
  assert train_steps[-1] == 14


def test_a_nan_batch_is_skipped_and_a_nan_run_stops(tmp_path, monkeypatch):
  from nbflows.data import pipeline
  splits, config = toy_splits(), loop_config(num_train_steps=6,
                                             log_every_steps=6)
  original = pipeline.train_iterator

  def with_nan_batch(*args, **kwargs):
    for i, batch in enumerate(original(*args, **kwargs)):
      if i == 2:
        batch = dict(batch, x=np.where(np.arange(len(batch["x"]))[:, None] == 0,
                                       np.nan, batch["x"]))
      yield batch

  monkeypatch.setattr(pipeline, "train_iterator", with_nan_batch)
  results = trainer.train(config, str(tmp_path / "one_nan"), tiny_model(),
                          splits)
  assert results["steps_trained"] == 6 and np.isfinite(results["test_bpd"])
  train_lines = [m for m in read_metrics(str(tmp_path / "one_nan"))
                 if m["split"] == "train"]
  assert train_lines[-1]["values"]["skipped_steps"] == 1.0
  assert train_lines[-1]["values"]["nonfinite_total"] == 1.0
  assert np.isfinite(train_lines[-1]["values"]["loss"])
  # eval.json counts it, and `train.evaluate` reads it from the checkpoint.
  assert results["skipped_nonfinite_steps"] == 1
  from train.loop import checkpoint as checkpoint_lib
  saved = checkpoint_lib.Checkpointer(str(tmp_path / "one_nan"),
                                      read_only=True)
  assert saved.nonfinite_total(6) == 1
  saved.close()

  class NaNModel(type(tiny_model())):
    def loss(self, params, batch, key):
      loss, metrics = super().loss(params, batch, key)
      return loss * jnp.nan, metrics

  nan_model = NaNModel(tiny_model().module, (2,), name="nan")
  monkeypatch.setattr(pipeline, "train_iterator", original)
  with pytest.raises(trainer.NonFiniteTrainingError,
                     match=r"the last 3 steps had a non-finite loss"):
    trainer.train(loop_config(max_consecutive_nonfinite_steps=3),
                  str(tmp_path / "all_nan"), nan_model, splits)


def test_early_stopping_keeps_and_evaluates_the_best(tmp_path, monkeypatch):
  from train.evaluation import evaluate as evaluate_lib
  # Validation bits/dim of the four validations; the fifth call of
  # evaluate_split is the test evaluation, left as it is.
  validation_bpd = iter([3.0, 2.0, 2.5, 2.6])
  original = evaluate_lib.evaluate_split

  def fake_evaluate_split(*args, **kwargs):
    values = original(*args, **kwargs)
    bpd = next(validation_bpd, None)
    return values if bpd is None else dict(values, bpd=bpd)

  monkeypatch.setattr(evaluate_lib, "evaluate_split", fake_evaluate_split)
  config = loop_config(num_train_steps=30, eval_every_steps=2,
                       early_stopping_patience=2, checkpoint_every_steps=100)
  results = trainer.train(config, str(tmp_path), tiny_model(), toy_splits())
  # Validations at steps 2 (3.0), 4 (2.0, best), 6 (2.5), 8 (2.6): stop at 8.
  assert results["steps_trained"] == 8
  assert results["checkpoint_step"] == 4
  lines = [m for m in read_metrics(str(tmp_path)) if m["split"] == "validation"]
  assert [m["values"]["best_bpd"] for m in lines] == [3.0, 2.0, 2.0, 2.0]
  assert sorted(os.listdir(tmp_path / "best")) == ["4"]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"]

