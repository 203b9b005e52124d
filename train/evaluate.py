"""Evaluation of a trained model: split means, samples, and `eval.json`.

Used by the trainer (validation passes and the final test report) and as an
entry point that evaluates the best checkpoint of a finished run:

  python -m train.evaluate --config configs/default.py:quick --workdir DIR

which writes DIR/eval.json and DIR/samples.png and prints test bits/dim.
eval.json holds: model, dataset, num_train_steps, steps_trained,
checkpoint_step (whose parameters were evaluated), num_params, and
test_<name> for the mean over the test split of every per-example metric the
model reports (`model.eval_metrics`): test_bpd for the flows.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

import jax
import ml_collections
import numpy as np

from nbflows import checkpoint_loading
from nbflows.data import pipeline
from nbflows.data import sources
from nbflows.models import base as model_base
from nbflows.neighbours import index as index_lib
from train import checkpoint as checkpoint_lib
from train import sharding

Array = jax.Array
EVAL_FILE = "eval.json"
SAMPLES_FILE = "samples.png"
# Keys: fold_in(key(seed), salt) separates evaluation and sampling randomness
# from training's (which splits key(seed)).
EVAL_SALT, SAMPLE_SALT = 1, 2


def load_data(config: ml_collections.ConfigDict, model: model_base.Model
              ) -> Tuple[sources.Splits, Any]:
  """Loads the dataset and, for neighbour-conditioned models, the index.

  Args:
    config: the run's config (dataset, data_dir, data.*, neighbours.*).
    model: the model; its `condition_kind` decides whether an index is built.

  Returns:
    (splits, neighbour index or None).
  """
  splits = sources.load(
      config.dataset, config.data_dir or None,
      validation_fraction=config.data.validation_fraction,
      test_fraction=config.data.test_fraction)
  index = None
  if model.condition_kind == "neighbours":
    index = index_lib.build_or_load(splits, config.neighbours,
                                    config.data_dir or None)
  return splits, index


def selection_metric(model: model_base.Model) -> str:
  """The validation metric that picks the best checkpoint; lower is better.

  "bpd" unless the model names another of its `eval_metrics` in a
  `selection_metric` attribute (e.g. a VAE without bits/dim).
  """
  return getattr(model, "selection_metric", "bpd")


def make_eval_step(model: model_base.Model, mesh: sharding.Mesh) -> Callable:
  """Jits `model.eval_metrics`: (params, batch, key) -> {name: [B]}.

  The batch is sharded on axis 0; the per-example results are replicated so
  that every host can read them.
  """
  replicated = sharding.replicated(mesh)
  return jax.jit(model.eval_metrics,
                 in_shardings=(replicated, sharding.data_sharding(mesh),
                               replicated),
                 out_shardings=replicated)


def evaluate_split(model: model_base.Model, params: Any,
                   batches: Iterable[Mapping[str, np.ndarray]],
                   mesh: sharding.Mesh, batch_size: int, seed: int,
                   eval_step: Optional[Callable] = None) -> Dict[str, float]:
  """Means of `model.eval_metrics` over every example of a split.

  Each batch is padded to one fixed size (so the step compiles once) and the
  padding is dropped from the results; the mean is taken over examples, in
  float64, so it does not depend on the batch size.

  Args:
    model: the model.
    params: its parameters (replicated over `mesh`).
    batches: one pass over the split, whole (not per-host) batches of at most
      `batch_size` examples, as `pipeline.eval_iterator` yields them.
    mesh: the device mesh.
    batch_size: the largest batch size in `batches`.
    seed: batch i is evaluated with the key fold_in(eval_key, i), where
      eval_key = fold_in(key(seed), EVAL_SALT).
    eval_step: from `make_eval_step` (built here if None).

  Returns:
    {name: mean over the split}.

  Raises:
    ValueError: if `batches` is empty.
  """
  eval_step = make_eval_step(model, mesh) if eval_step is None else eval_step
  size = sharding.padded_size(batch_size, mesh)
  key = jax.random.fold_in(jax.random.key(seed), EVAL_SALT)
  sums: Dict[str, float] = {}
  count = 0
  for i, batch in enumerate(batches):
    global_batch, n = sharding.shard_eval_batch(batch, mesh, size)
    metrics = jax.device_get(
        eval_step(params, global_batch, jax.random.fold_in(key, i)))
    for name, values in metrics.items():
      values = np.asarray(values, np.float64)[:n]
      sums[name] = sums.get(name, 0.0) + float(np.sum(values))
    count += n
  if not count:
    raise ValueError("the evaluation split yielded no examples")
  return {name: total / count for name, total in sums.items()}


def draw_samples(model: model_base.Model, params: Any, key: Array,
                 num: int, condition_batch: Mapping[str, np.ndarray]
                 ) -> np.ndarray:
  """Draws `num` samples; conditional models use the conditions of a batch.

  A neighbour-conditioned model samples from the neighbourhoods of the
  batch's examples (neighbourhoods of training points, paper 1 Alg. 2); a
  label-conditioned one from their labels.

  Returns:
    [n, *event_shape] samples in data units (n <= num for conditional
    models, limited by the batch).
  """
  if model.condition_kind == "none":
    return np.asarray(model.sample(params, key, num))
  cond = np.asarray(model.condition(condition_batch))[:num]
  return np.asarray(model.sample(params, key, cond))


def save_sample_grid(samples: np.ndarray, path: str,
                     num_levels: Optional[int]) -> None:
  """Saves image samples [n, H, W, C] as a grid, or 2-D points as a scatter.

  Args:
    samples: in data units, [0, num_levels) for images.
    path: the PNG file to write.
    num_levels: the number of levels of the data (images are shown as
      value / num_levels); None for continuous 2-D data.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  if samples.ndim == 4:
    n, h, w, c = samples.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    images = np.clip(samples / (num_levels or 1), 0.0, 1.0)
    grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c))
    for i, image in enumerate(images):
      r, q = divmod(i, cols)
      grid[1 + r * (h + 1):1 + r * (h + 1) + h,
           1 + q * (w + 1):1 + q * (w + 1) + w] = image
    fig, ax = plt.subplots(figsize=(cols, rows))
    ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
  else:
    points = samples.reshape(len(samples), -1)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(points[:, 0], points[:, min(1, points.shape[1] - 1)], s=2)
  ax.set_axis_off()
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)


def write_test_report(config: ml_collections.ConfigDict, workdir: str,
                      model: model_base.Model, params: Any,
                      splits: sources.Splits, index: Any, mesh: sharding.Mesh,
                      steps_trained: int, checkpoint_step: int,
                      eval_step: Optional[Callable] = None) -> Dict[str, Any]:
  """Evaluates on the test split; writes eval.json and samples.png.

  Args:
    config: the run's config.
    workdir: where eval.json and samples.png go (process 0 writes).
    model: the model.
    params: the parameters to evaluate (replicated over `mesh`).
    splits: the dataset.
    index: the neighbour index, or None.
    mesh: the device mesh.
    steps_trained: how many steps the run trained.
    checkpoint_step: the step whose parameters `params` are.
    eval_step: from `make_eval_step` (built here if None).

  Returns:
    eval.json's contents.

  Prints test bits/dim (or the model's `selection_metric` if it reports no
  "bpd").
  """
  batches = pipeline.eval_iterator(splits, index, "test",
                                   config.eval_batch_size)
  metrics = evaluate_split(model, params, batches, mesh,
                           config.eval_batch_size, config.seed, eval_step)
  results = {
      "model": config.model, "dataset": config.dataset,
      "num_train_steps": config.num_train_steps,
      "steps_trained": int(steps_trained),
      "checkpoint_step": int(checkpoint_step),
      "num_params": model_base.count_params(params),
      **{f"test_{name}": value for name, value in sorted(metrics.items())},
  }
  if config.num_sample_images:
    condition_batch = next(iter(pipeline.eval_iterator(
        splits, index, "validation", config.eval_batch_size)))
    samples = draw_samples(model, params,
                           jax.random.fold_in(jax.random.key(config.seed),
                                              SAMPLE_SALT),
                           config.num_sample_images, condition_batch)
    if jax.process_index() == 0:
      save_sample_grid(samples, os.path.join(workdir, SAMPLES_FILE),
                       splits.info.num_levels)
  if jax.process_index() == 0:
    path = os.path.join(workdir, EVAL_FILE)
    with open(path + ".tmp", "w") as f:
      json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    if "bpd" in metrics:
      headline = f"test bits/dim: {metrics['bpd']:.4f}"
    else:
      metric = selection_metric(model)
      headline = f"test {metric}: {metrics[metric]:.4f}"
    print(f"{headline} (step {checkpoint_step}, {workdir})")
  return results


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Evaluates the best (else latest) checkpoint of `workdir` on test.

  Args:
    config: the config to evaluate with; its model must match the
      checkpoint's (else ValueError naming the mismatch).
    workdir: a training run's directory.

  Returns:
    eval.json's contents (also written to `workdir/eval.json`).
  """
  model, params, config = checkpoint_loading.load_checkpoint(workdir, config)
  checkpointer = checkpoint_lib.Checkpointer(workdir, read_only=True)
  steps_trained = checkpointer.latest_step()
  best_step = checkpointer.best_step()
  checkpointer.close()
  mesh = sharding.make_mesh()
  params = jax.device_put(params, sharding.replicated(mesh))
  splits, index = load_data(config, model)
  return write_test_report(
      config, workdir, model, params, splits, index, mesh, steps_trained,
      steps_trained if best_step is None else best_step)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  config_flags.DEFINE_config_file(
      "config", None, "Config file, e.g. configs/default.py:quick.",
      lock_config=True)
  flags.DEFINE_string("workdir", None, "The training run's directory.")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    del argv
    evaluate(flags.FLAGS.config, flags.FLAGS.workdir)

  app.run(main)
