"""The training loop: `train_and_evaluate(config, workdir) -> dict`.

Importable (from Colab too); `train.main` only parses flags and calls it.
One run:

  1. validate the config, lock the workdir (`workdir_lock`: a second run in
     it refuses before writing anything), build the model
     (`nbflows.build_model`), load the data and, for neighbour-conditioned
     models, the neighbour index;
  2. resume from the latest checkpoint in `workdir` if there is one
     (parameters, optimizer state, step, RNG, early-stopping bookkeeping and
     the data-iterator position), else initialise from the first batch;
  3. train with `train_step` jitted once over the ("data",) mesh, logging to
     `workdir/metrics.jsonl` and TensorBoard, validating every
     `eval_every_steps`, checkpointing every `checkpoint_every_steps`, and
     stopping early after `early_stopping_patience` validations without a
     lower validation bits/dim (or `model.selection_metric`);
  4. evaluate the best checkpoint on the test split (`workdir/eval.json`)
     and save a grid of samples (`workdir/samples.png`).

A non-finite loss or gradient skips the update (the parameters and optimizer
state are kept); after `config.max_consecutive_nonfinite_steps` skipped steps
in a row, training stops with `NonFiniteTrainingError`. On SIGTERM the loop
saves a checkpoint at the current step and returns; rerunning the same
command resumes there.

Example:
  >>> from configs import default
  >>> config = default.get_config("quick")
  >>> results = train_and_evaluate(config, "/tmp/quick")  # doctest: +SKIP
  >>> results["test_bpd"]  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from nbflows import checkpoint as checkpoint_format
from nbflows import checkpoint_fallback
from nbflows import config_fields
from nbflows import image_grid
from nbflows import parametrisations
from nbflows.data import pipeline
from nbflows.data import sources
from nbflows.models import flow_transformer
from nbflows.models import protocols
from nbflows.models import registry
from train.evaluation import evaluate as evaluate_lib
from train.loop import checkpoint as checkpoint_lib
from train.loop import fitting
from train.loop import metric_writer
from train.loop import sharding
from train.loop import state as state_lib
from train.loop import workdir_lock

Array = jax.Array
Batch = Mapping[str, Array]
Metrics = Dict[str, Array]


class NonFiniteTrainingError(RuntimeError):
  """Too many consecutive steps had a non-finite loss or gradient."""


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field with an impossible value.

  Unknown fields are already errors (configs are locked); this checks values.

  Raises:
    ConfigError: (a ValueError) e.g. "config.num_train_steps=0; expected an
      integer >= 1"; the command lines print it as one line (`train.cli`).
  """
  at_least = {
      "num_train_steps": 1, "batch_size": 1, "eval_batch_size": 1,
      "log_every_steps": 1, "eval_every_steps": 1,
      "checkpoint_every_steps": 1, "keep_checkpoints": 1,
      "early_stopping_patience": 0, "num_sample_images": 0,
      "max_consecutive_nonfinite_steps": 1, "optimizer.warmup_steps": 0,
  }
  for field, low in at_least.items():
    value = config_fields.get_field(config, field)
    if not isinstance(value, int) or value < low:
      raise config_fields.ConfigError(
          f"config.{field}={value!r}; expected an integer >= {low}")
  positive = {"optimizer.learning_rate": config.optimizer.learning_rate,
              "optimizer.grad_clip_norm": config.optimizer.grad_clip_norm}
  for field, value in positive.items():
    if not value > 0:
      raise config_fields.ConfigError(
          f"config.{field}={value!r}; expected a number > 0")
  if not config.optimizer.weight_decay >= 0:
    raise config_fields.ConfigError(
        f"config.optimizer.weight_decay={config.optimizer.weight_decay!r}; "
        "expected >= 0")
  if config.optimizer.schedule not in state_lib.SCHEDULES:
    raise config_fields.ConfigError(
        f"config.optimizer.schedule={config.optimizer.schedule!r}; expected "
        f"one of {state_lib.SCHEDULES}")
  if config.optimizer.warmup_steps >= config.num_train_steps:
    raise config_fields.ConfigError(
        f"config.optimizer.warmup_steps={config.optimizer.warmup_steps} is not "
        f"smaller than config.num_train_steps={config.num_train_steps}; the "
        "warm-up must end before the run does")
  try:
    sources.dataset_info(config.dataset)
  except ValueError as error:   # an unknown dataset, naming the known ones
    raise config_fields.ConfigError(f"config.dataset: {error}") from error
  flow_transformer.validate(config)   # config.flow.transformer, its settings


def make_train_step(model: protocols.Trainable,
                    optimizer: optax.GradientTransformation
                    ) -> Callable[[state_lib.TrainState, Batch],
                                  Tuple[state_lib.TrainState, Metrics]]:
  """Builds the pure `train_step(state, batch) -> (state, metrics)`.

  One step: the key is fold_in(state.rng, state.step); the gradient of
  `model.loss` (of `model.loss_at_step(..., state.step)` for a model
  offering `protocols.StepScheduledLoss`, e.g. the VAEs' KL warm-up) is
  clipped and applied by `optimizer`. If the loss or the
  gradient's global norm is NaN or infinite (as it is when any gradient
  entry is), the new parameters and optimizer state are
  discarded (the old ones kept), `nonfinite_streak` grows by one and the
  metric "skipped" is 1; otherwise the streak resets to 0. The step counter
  advances either way (the batch is consumed).

  Args:
    model: the model (its `loss(params, batch, key)` is minimised).
    optimizer: from `state.make_optimizer`.

  Returns:
    The un-jitted step; `compile_train_step` jits it over a mesh.
  """

  if protocols.offers(model, protocols.StepScheduledLoss):
    loss_at_step = model.loss_at_step
  else:
    loss_at_step = lambda params, batch, key, step: model.loss(
        params, batch, key)

  def train_step(state, batch):
    key = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(loss_at_step, has_aux=True)
    (loss, metrics), grads = grad_fn(state.params, batch, key, state.step)
    grad_norm = optax.tree.norm(grads)
    # One test for the whole gradient: its global norm is NaN or infinite if
    # any entry is (or if the sum of squares overflows). A per-leaf
    # all(isfinite) added ~75,000 HLO ops and quadrupled the compile time.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def update():
      updates, opt_state = optimizer.update(grads, state.opt_state,
                                            state.params)
      return optax.apply_updates(state.params, updates), opt_state

    params, opt_state = jax.lax.cond(
        finite, update, lambda: (state.params, state.opt_state))
    streak = jnp.where(finite, 0, state.nonfinite_streak + 1)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        nonfinite_streak=streak,
        nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32))
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm,
                   skipped=(~finite).astype(jnp.float32),
                   nonfinite_streak=streak)
    return new_state, metrics

  return train_step


def compile_train_step(train_step: Callable, mesh: sharding.Mesh,
                       state_sharding: Any = None) -> Callable:
  """Jits `train_step` once over `mesh`.

  The batch is sharded on axis 0; the state has `state_sharding` (a pytree
  from `sharding.state_sharding`; None: replicated) and is donated (its
  buffers are reused for the new state); the metrics are replicated.
  """
  replicated = sharding.replicated(mesh)
  state_sharding = replicated if state_sharding is None else state_sharding
  return jax.jit(train_step,
                 in_shardings=(state_sharding, sharding.data_sharding(mesh)),
                 out_shardings=(state_sharding, replicated),
                 donate_argnums=(0,))


class _Preemption:
  """Tells the loop when to stop for a preemption (SIGTERM).

  With one process, a SIGTERM handler sets a flag (the previous handler is
  restored on exit; outside the main thread, where Python cannot install
  handlers, none is). With several, `jax.distributed` has its own SIGTERM
  notifier, and orbax's preemption sync point makes every host stop at the
  same step.
  """

  def __init__(self, checkpointer: checkpoint_lib.Checkpointer):
    self._checkpointer = checkpointer
    self._received = False
    self._previous = None

  def __enter__(self):
    if (jax.process_count() == 1
        and threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and stopping")
    self._received = True

  def reached(self, step: int) -> bool:
    """Whether to save and stop after `step`."""
    if jax.process_count() > 1:
      return self._checkpointer.reached_preemption(step)
    return self._received

  def __exit__(self, *exc_info):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _mean_train_metrics(window: list[Metrics]) -> Dict[str, float]:
  """Averages per-step metrics over the steps that were not skipped."""
  window = jax.device_get(window)
  kept = [m for m in window if not m["skipped"]]
  names = [k for k in window[0] if k not in ("skipped", "nonfinite_streak")]
  values = {k: float(np.mean([m[k] for m in kept])) if kept else float("nan")
            for k in names}
  values["skipped_steps"] = float(len(window) - len(kept))
  return values


def _check_streak(metrics: Optional[Metrics], step: int, limit: int) -> None:
  if metrics is None:
    return
  streak = int(metrics["nonfinite_streak"])
  if streak >= limit:
    raise NonFiniteTrainingError(
        f"training stopped at step {step}: the last {streak} steps had a "
        "non-finite loss or gradient and were skipped "
        f"(config.max_consecutive_nonfinite_steps={limit}); check the data "
        "for NaNs, or lower config.optimizer.learning_rate")


def train(config: ml_collections.ConfigDict, workdir: str,
          model: protocols.Trainable, splits: sources.Splits,
          index: Any = None,
          mesh: Optional[sharding.Mesh] = None) -> Dict[str, Any]:
  """Trains `model` on `splits`, then evaluates it on the test split.

  `train_and_evaluate` builds the model and the data from the config and
  calls this; tests call it with small models and synthetic splits. A model
  offering `protocols.Fitted` (the KDE) is fitted instead, by
  `fitting.fit_and_evaluate`. Three stages: the initial state
  (`_initial_run`), the steps (`_run_steps`) and the test report
  (`_final_report`).

  Args:
    config: a validated config.
    workdir: where checkpoints, metrics, samples and eval.json go.
    model: the model (`protocols.Trainable`; its `loss` is minimised).
    splits: the dataset.
    index: the neighbour index for neighbour-conditioned models, else None.
    mesh: the device mesh (default: every device).

  Returns:
    The contents of eval.json (see `evaluate.write_test_report`) plus
    "preempted": False; or, when stopped by SIGTERM, {"preempted": True,
    "steps_trained": step} without a test evaluation.

  Raises:
    ValueError: if the batch size does not split over the devices, or the
      workdir holds checkpoints of another model.
    TypeError: if the model offers neither `Fitted` nor `Trainable`.
    workdir_lock.WorkdirLockedError: if another run holds the workdir
      (nothing is written).
    NonFiniteTrainingError: after too many consecutive non-finite steps.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  sharding.check_batch_size(config.batch_size, mesh)
  with workdir_lock.hold(workdir):
    if protocols.offers(model, protocols.Fitted):  # fitted to the whole split
      return fitting.fit_and_evaluate(config, workdir, model, splits, index,
                                      mesh)
    return _train(config, workdir, model, splits, index, mesh)


def _train(config, workdir, model, splits, index, mesh) -> Dict[str, Any]:
  """`train` of a `Trainable` model, the workdir locked."""
  protocols.require(model, protocols.Trainable, "training by gradient steps")
  checkpointer = checkpoint_lib.Checkpointer(workdir, config.keep_checkpoints)
  run = _initial_run(config, workdir, model, splits, index, mesh,
                     checkpointer)
  writer = metric_writer.MetricWriter(workdir)
  eval_step = evaluate_lib.make_eval_step(model, mesh)
  progress = tqdm.tqdm(total=config.num_train_steps, initial=run.step,
                       disable=jax.process_index() != 0 or run.done(config),
                       desc="train", unit="step")
  with contextlib.ExitStack() as stack:
    preemption = stack.enter_context(_Preemption(checkpointer))
    stack.callback(writer.close)
    stack.callback(progress.close)
    # Also on an exception: finish the saves in flight (a kill loses them,
    # and orbax's atomic rename makes that safe).
    stack.callback(checkpointer.close)
    preempted = _run_steps(config, model, run, splits, index, mesh,
                           eval_step, checkpointer, writer, preemption,
                           progress)
    checkpointer.wait()
    if preempted:
      logging.warning("preempted at step %d; rerun to resume", run.step)
      return {"preempted": True, "steps_trained": run.step}
    return _final_report(config, workdir, model, run, splits, index, mesh,
                         eval_step, checkpointer, writer)


@dataclasses.dataclass
class _Run:
  """A run's state between steps and what its steps need.

  Attributes:
    state: the `TrainState` (restored or fresh).
    loop: the early-stopping bookkeeping (best_value, best_step,
      evals_without_improvement, stopped_early).
    step: the steps trained so far.
    batches: the training iterator, positioned after `first`.
    first: the first batch, this host's slice as the pipeline gave it.
    train_step: `compile_train_step`'s jitted step.
    state_sharding: the state's shardings.
    schedule: the learning-rate schedule (for the logs).
  """
  state: state_lib.TrainState
  loop: Dict[str, Any]
  step: int
  batches: Iterator[Batch]
  first: Batch
  train_step: Callable
  state_sharding: Any
  schedule: optax.Schedule

  def done(self, config: ml_collections.ConfigDict) -> bool:
    """Whether the run has trained its steps or stopped early."""
    return self.step >= config.num_train_steps or self.loop["stopped_early"]


def _initial_run(config, workdir, model, splits, index, mesh,
                 checkpointer: checkpoint_lib.Checkpointer) -> _Run:
  """Resumes from the latest checkpoint, else initialises from batch one."""
  replicated = sharding.replicated(mesh)
  optimizer = state_lib.make_optimizer(config.optimizer, config.num_train_steps)
  schedule = state_lib.make_schedule(config.optimizer, config.num_train_steps)
  create = lambda key, batch: state_lib.create_train_state(
      model, optimizer, key, batch)
  step = checkpointer.latest_step() or 0
  # Batch s is a function of the seed and s: starting the pipeline at the
  # restored step puts it where the interrupted run was, in constant time.
  batches = pipeline.train_iterator(splits, index, config, config.seed,
                                    start_step=step)
  first = next(batches)
  first_sharded = sharding.shard_batch(first, mesh)
  key = jax.random.key(config.seed)
  abstract_state = jax.eval_shape(create, key, first_sharded)
  state_sharding = sharding.state_sharding(abstract_state, mesh,
                                           config.sharding.fsdp)
  train_step = compile_train_step(make_train_step(model, optimizer), mesh,
                                  state_sharding)
  init_fn = jax.jit(create,
                    in_shardings=(replicated, sharding.data_sharding(mesh)),
                    out_shardings=state_sharding)
  if step:
    state, loop, restored = _restore(config, workdir, checkpointer,
                                     _abstract(abstract_state, state_sharding))
    if restored != step:   # past unreadable checkpoints
      step = restored
      batches = pipeline.train_iterator(splits, index, config, config.seed,
                                        start_step=step)
      first = next(batches)    # a host batch, as `_Run.first` holds
  else:
    state, loop = init_fn(key, first_sharded), {
        "best_value": None, "best_step": None,
        "evals_without_improvement": 0, "stopped_early": False}
  checkpoint_format.save_config(config, workdir)
  return _Run(state, loop, step, batches, first, train_step, state_sharding,
              schedule)


def _run_steps(config, model, run: _Run, splits, index, mesh, eval_step,
               checkpointer: checkpoint_lib.Checkpointer,
               writer: metric_writer.MetricWriter, preemption: _Preemption,
               progress) -> bool:
  """Steps `run` to the last step, early stopping or a preemption.

  Logs every `log_every_steps`, validates every `eval_every_steps` and
  checkpoints on improvement, at the end and every `checkpoint_every_steps`.

  Returns:
    Whether the run was preempted.
  """
  replicated = sharding.replicated(mesh)
  done = run.done(config)
  preempted = False
  prepare = _batch_preparer(model, run.state)
  window, previous, tick = [], None, time.time()
  postfix = {}   # the progress bar's last loss and validation value
  while not done:
    local = run.first if previous is None else next(run.batches)
    batch = sharding.shard_batch(prepare(run.state, local), mesh)
    run.state, metrics = run.train_step(run.state, batch)
    # Reading the previous step's streak lets this step run meanwhile.
    _check_streak(previous, run.step, config.max_consecutive_nonfinite_steps)
    previous = metrics
    run.step += 1
    progress.update(1)
    window.append(metrics)
    last = run.step == config.num_train_steps
    if run.step % config.log_every_steps == 0 or last:
      values = _mean_train_metrics(window)
      values["learning_rate"] = float(run.schedule(run.step - 1))
      values["steps_per_second"] = len(window) / (time.time() - tick)
      values["nonfinite_total"] = float(
          jax.device_get(run.state.nonfinite_total))
      writer.write(run.step, "train", values)
      postfix["loss"] = f"{values['loss']:.4f}"
      progress.set_postfix(postfix)
      window, tick = [], time.time()
    improved = False
    if run.step % config.eval_every_steps == 0 or last:
      progress.clear()   # the validation's log line gets a line of its own
      improved, value = _validate(config, model,
                                  jax.device_put(run.state.params, replicated),
                                  splits, index, mesh, eval_step, run.step,
                                  run.loop, writer)
      postfix[f"val_{model.selection_metric}"] = f"{value:.4f}"
      progress.set_postfix(postfix)
    preempted = preemption.reached(run.step)
    done = last or preempted or run.loop["stopped_early"]
    if improved or done or run.step % config.checkpoint_every_steps == 0:
      checkpointer.save(run.step, run.state, run.loop, best=improved)
  _check_streak(previous, run.step, config.max_consecutive_nonfinite_steps)
  return preempted


def _batch_preparer(model, state: state_lib.TrainState
                    ) -> Callable[[state_lib.TrainState, Batch], Batch]:
  """(state, host batch) -> the batch the train step takes.

  The identity, except for a model offering
  `protocols.HostBatchPreparation` (the Exemplar VAE's kNN prior, paper 3,
  Alg. 1: a host-side search between jitted steps), whose preparer is built
  from the current parameters and then called with each step's parameters
  and a key of its own (fold_in(rng, step), folded with 1).
  """
  if not protocols.offers(model, protocols.HostBatchPreparation):
    return lambda state, batch: batch
  preparer = model.train_batch_preparer(state.params)
  return lambda state, batch: preparer(
      state.params, batch,
      jax.random.fold_in(jax.random.fold_in(state.rng, state.step), 1))


def _final_report(config, workdir, model, run: _Run, splits, index, mesh,
                  eval_step, checkpointer: checkpoint_lib.Checkpointer,
                  writer: metric_writer.MetricWriter) -> Dict[str, Any]:
  """Tests the best parameters by validation: eval.json, samples, logs."""
  state = _best_state(checkpointer, run)
  results = evaluate_lib.write_test_report(
      config, workdir, model,
      jax.device_put(state.params, sharding.replicated(mesh)), splits, index,
      mesh, steps_trained=run.step,
      checkpoint_step=int(jax.device_get(state.step)),
      skipped_nonfinite_steps=int(jax.device_get(run.state.nonfinite_total)),
      eval_step=eval_step)
  writer.write(run.step, "test", {name[len("test_"):]: value
                                  for name, value in results.items()
                                  if name.startswith("test_")})
  return dict(results, preempted=False)


def _abstract(tree: Any, shardings: Any) -> Any:
  """Shape-dtype structures of `tree`'s leaves, placed with `shardings`."""
  return jax.tree.map(
      lambda x, target: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                             sharding=target), tree, shardings)


def _best_state(checkpointer: checkpoint_lib.Checkpointer,
                run: _Run) -> state_lib.TrainState:
  """The state of the best checkpoint by validation (`run.state` if last).

  If the best checkpoint cannot be read, its twin among the latest ones (the
  same step) is, with a `CheckpointFallbackWarning`.
  """
  checkpoint_step = checkpointer.best_step()
  if checkpoint_step is None or checkpoint_step == run.step:
    return run.state
  twins = [("latest", step) for step in checkpointer.latest_steps()
           if step == checkpoint_step]
  abstract = _abstract(run.state, run.state_sharding)
  (state, _), _, _ = checkpoint_fallback.first_readable(
      checkpointer.workdir, [("best", checkpoint_step)] + twins,
      lambda which, step: checkpointer.restore(step, abstract, which=which))
  return state


def _restore(config, workdir, checkpointer, abstract_state):
  """Restores the newest readable latest checkpoint: (state, loop, step).

  Unreadable newer ones are moved aside (`Checkpointer.set_aside`) with a
  warning, so that training from the restored step can save them again; a
  damaged config.json is rewritten from `config` (`_initial_run` saves it).

  Raises:
    UnreadableCheckpointError: if none can be read (nothing is moved).
  """
  try:
    saved_config = checkpoint_format.load_config(workdir).to_dict()
  except FileNotFoundError:
    saved_config = {}
  except checkpoint_format.UnreadableConfigError as e:
    logging.warning("%s; rewriting it from this run's config", e)
    saved_config = {}
  config_diff = checkpoint_format.config_differences(saved_config,
                                                     config.to_dict())
  parametrisations.check_same(saved_config, config.to_dict(), workdir)
  (state, loop), _, step = checkpoint_fallback.first_readable(
      workdir, [("latest", s) for s in checkpointer.latest_steps()],
      lambda which, step: checkpointer.restore(
          step, abstract_state, which=which, config_diff=config_diff))
  for newer in [s for s in checkpointer.latest_steps() if s > step]:
    logging.warning("moved unreadable checkpoint of step %d to %s", newer,
                    checkpointer.set_aside(newer))
  logging.info("resumed from step %d in %s", step, workdir)
  return state, loop, step


def _validate(config, model, params, splits, index, mesh, eval_step, step,
              loop, writer: metric_writer.MetricWriter) -> Tuple[bool, float]:
  """Runs the validation pass and updates the early-stopping bookkeeping.

  Logs one line ("step 10: validation bits/dim 3.9213 (best 3.9213 at step
  10)") and writes the metrics and, for images, the run's sample grid
  (`evaluate.run_samples`) to TensorBoard.

  Returns:
    Whether the validation metric improved on the best so far, and its value.
  """
  values = evaluate_lib.evaluate_split(
      model, params,
      pipeline.eval_iterator(splits, index, "validation",
                             config.eval_batch_size),
      mesh, config.eval_batch_size, config.seed, eval_step)
  metric = model.selection_metric
  if metric not in values:
    raise ValueError(f"model {model.name!r} reports eval metrics "
                     f"{sorted(values)}; selecting the best checkpoint needs "
                     f"{metric!r} (set model.selection_metric)")
  value = values[metric]
  improved = bool(np.isfinite(value)) and (
      loop["best_value"] is None or value < loop["best_value"])
  if improved:
    loop.update(best_value=value, best_step=step, evals_without_improvement=0)
  else:
    loop["evals_without_improvement"] += 1
  patience = config.early_stopping_patience
  if patience and loop["evals_without_improvement"] >= patience:
    loop["stopped_early"] = True
    logging.info("early stopping at step %d: validation %s has not improved "
                 "on %s (step %s) for %d evaluations", step, metric,
                 loop["best_value"], loop["best_step"], patience)
  best = loop["best_value"]
  writer.write(step, "validation", dict(
      values, **{f"best_{metric}": float("nan") if best is None else best}))
  logging.info("step %d: validation %s %.4f (best %s at step %s)", step,
               "bits/dim" if metric == "bpd" else metric, value,
               "none" if best is None else f"{best:.4f}", loop["best_step"])
  if config.num_sample_images and len(splits.info.event_shape) == 3:
    rows = evaluate_lib.run_samples(config, model, params, splits, index)
    writer.write_image(step, "samples",
                       image_grid.tile(rows, splits.info.num_levels or 1))
  return improved, value


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       rebuild_index: bool = False) -> Dict[str, Any]:
  """Builds the model and data from `config`, trains, and evaluates on test.

  The workdir is locked (`workdir_lock`) before anything is written, the
  neighbour indices included.

  Args:
    config: e.g. `configs.default.get_config("quick")`.
    workdir: the run's directory (created if needed); rerunning with the same
      workdir resumes from its latest checkpoint.
    rebuild_index: build the neighbour indices again, overwriting cached
      ones (a stale or damaged cache; `python -m train.main --rebuild_index`).

  Returns:
    See `train`: eval.json's contents (test_bpd, num_params, ...) and
    "preempted".

  Raises:
    ValueError: for an impossible config value (naming the field), a batch
      size that does not split over the devices, or checkpoints in
      `workdir` written for another model.
    NonFiniteTrainingError: after too many consecutive non-finite steps.
    workdir_lock.WorkdirLockedError: if another run holds the workdir.
  """
  validate_config(config)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)  # before loading data
  with workdir_lock.hold(workdir):
    model = registry.build_model(config)
    splits, index = evaluate_lib.load_data(config, model, rebuild_index)
    return train(config, workdir, model, splits, index, mesh)
