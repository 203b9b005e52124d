"""Evaluation of a trained model: split means, samples, and `eval.json`.

Used by the trainer (validation passes and the final test report) and as an
entry point that evaluates the best checkpoint of a finished run:

  python -m train.evaluate --config configs/ncl_digits.py --workdir DIR \
      --metrics bpd,marginal_bpd,fd,prd

which writes DIR/eval.json and DIR/samples.png and prints test bits/dim.
eval.json holds: model, dataset, num_train_steps, steps_trained,
checkpoint_step (whose parameters were evaluated), skipped_nonfinite_steps
(the training steps whose loss or gradient was NaN or infinite and whose
update the trainer dropped, `TrainState.nonfinite_total` after
steps_trained; 0 for a fitted model), num_params, metrics (the
metric names evaluated), test_<name> for the mean over the test split of
every per-example metric the model reports (`model.eval_metrics`, or
`model.test_metrics` where it offers `protocols.TestMetrics`, e.g. LGF's
1000-sample importance estimate): test_bpd for the flows, test_iwae for the VAEs;
for a neighbourhood model conditional_bpd_protocol (how test
neighbourhoods were chosen: by default among training images of the test image's class, so the
test label is used, as paper 1 App. B.2 does) and test_bpd_label_free (the
same points with neighbourhoods searched among all training images,
`label_free_results`); and the entries of each requested metric (bpd,
iwae, log_likelihood, marginal_bpd, marginal_bias, fd, prd), described and
computed in `train.evaluation.requested_metrics` (Frechet distance and PRD on an
offline classifier's features in `train.evaluation.sample_quality`).
`config.eval.metrics` ("" = the model family's set) or `--metrics` choose
them.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import jax
import ml_collections
import numpy as np

from nbflows import checkpoint_fallback
from nbflows import checkpoint_loading
from nbflows import config_fields
from nbflows import image_grid
from nbflows.data import pipeline
from nbflows.data import sources
from nbflows.models import base as model_base
from nbflows.models import protocols
from nbflows.neighbours import index as index_lib
from train.evaluation import requested_metrics
from train.loop import checkpoint as checkpoint_lib
from train.loop import sharding
from train.loop import workdir_lock

Array = jax.Array
EVAL_FILE = "eval.json"
SAMPLES_FILE = "samples.png"
NEIGHBOURHOOD_ROWS = 8     # neighbourhoods in samples.png (paper 1, Fig. 3)


def load_data(config: ml_collections.ConfigDict, model: protocols.Trainable,
              rebuild_index: bool = False) -> Tuple[sources.Splits, Any]:
  """Loads the dataset and, for neighbour-conditioned models, the index.

  Args:
    config: the run's config (dataset, data_dir, data.*, neighbours.*).
    model: the model; its `condition_kind` decides whether an index is built.
    rebuild_index: build the run's indices again (also the label-free one
      the test report reads, `label_free_neighbours`), overwriting cached
      files (`--rebuild_index`).

  Returns:
    (splits, neighbour index or None).

  Raises:
    ConfigError: for a context model (`condition_kind="context"`) of a
      dataset without contexts.
  """
  if (model.context_dim and         # a context model, or NCL / NCT given one
      not sources.dataset_info(config.dataset).context_dim):
    with_context = [f"{name} (C = {sources.dataset_info(name).context_dim})"
                    for name in sources.NAMES
                    if sources.dataset_info(name).context_dim]
    raise config_fields.ConfigError(
        f"config.context.dim={model.context_dim}, but dataset "
        f"{config.dataset!r} has no context to train or test on; expected "
        f"0, or a dataset with one: {', '.join(with_context)}")
  splits = sources.load(
      config.dataset, config.data_dir or None,
      validation_fraction=config.data.validation_fraction,
      test_fraction=config.data.test_fraction)
  index = None
  if model.condition_kind == "neighbours":
    index = build_index(splits, config.neighbours, config, rebuild_index)
    free = label_free_neighbours(config.neighbours)
    if rebuild_index and free is not None:
      build_index(splits, free, config, rebuild=True)
  return splits, index


def build_index(splits: sources.Splits,
                neighbours: ml_collections.ConfigDict,
                config: ml_collections.ConfigDict,
                rebuild: bool = False) -> index_lib.NeighbourIndex:
  """The (cached) neighbour index of `neighbours` settings for a run."""
  return index_lib.build_or_load(splits, neighbours, config.data_dir or None,
                                 rebuild=rebuild)


def neighbourhood_protocol(neighbours: ml_collections.ConfigDict) -> str:
  """How test neighbourhoods are chosen under `neighbours` settings.

  Example:
    >>> from configs import default
    >>> neighbourhood_protocol(default.get_config().neighbours)
    'same-class neighbourhoods (test labels used), paper 1 App. B.2'
  """
  if neighbours.kind == "kmeans":
    return ("prototypes of the nearest k-means centre (test labels not "
            "used), paper 1 App. B.5")
  if neighbours.same_class:
    return "same-class neighbourhoods (test labels used), paper 1 App. B.2"
  return "nearest training images of any class (test labels not used)"


def label_free_neighbours(neighbours: ml_collections.ConfigDict
                          ) -> Optional[ml_collections.ConfigDict]:
  """`neighbours` searching among all classes; None if no label is used."""
  if neighbours.kind == "kmeans" or not neighbours.same_class:
    return None
  free = neighbours.copy_and_resolve_references()
  free.same_class = False
  return free


def label_free_results(config: ml_collections.ConfigDict,
                       model: protocols.Trainable, params: Any,
                       splits: sources.Splits, mesh: sharding.Mesh,
                       eval_step: Callable,
                       test_bpd: np.ndarray) -> Dict[str, Any]:
  """conditional_bpd_protocol and test_bpd_label_free of a neighbour model.

  test_bpd_label_free scores the same dequantised test points with
  neighbourhoods searched among all training images (an index with
  same_class=False, built and cached like the run's); where the run's
  neighbourhoods use no label it is test_bpd.

  Args:
    test_bpd: [N] the test split's bits/dim under the run's index.
  """
  results = {"conditional_bpd_protocol":
             neighbourhood_protocol(config.neighbours)}
  free = label_free_neighbours(config.neighbours)
  if free is None:
    results["test_bpd_label_free"] = float(np.mean(test_bpd))
    return results
  values = split_values(
      model, params, pipeline.eval_iterator(
          splits, build_index(splits, free, config), "test",
          config.eval_batch_size),
      mesh, config.eval_batch_size, config.seed, eval_step)
  results["test_bpd_label_free"] = float(np.mean(values["bpd"]))
  return results


def make_eval_step(model: protocols.Trainable, mesh: sharding.Mesh,
                   metrics_fn: Optional[Callable] = None) -> Callable:
  """Jits `metrics_fn` (default `model.eval_metrics`): (params, batch, key)
  -> {name: [B]}.

  The batch is sharded on axis 0; the per-example results are replicated so
  that every host can read them.
  """
  replicated = sharding.replicated(mesh)
  return jax.jit(metrics_fn or model.eval_metrics,
                 in_shardings=(replicated, sharding.data_sharding(mesh),
                               replicated),
                 out_shardings=replicated)


def split_values(model: protocols.Trainable, params: Any,
                 batches: Iterable[Mapping[str, np.ndarray]],
                 mesh: sharding.Mesh, batch_size: int, seed: int,
                 eval_step: Optional[Callable] = None
                 ) -> Dict[str, np.ndarray]:
  """`model.eval_metrics` (or `eval_step`) of every example of a split.

  Each batch is padded to one fixed size (so the step compiles once) and the
  padding is dropped from the results.

  Args:
    model: the model.
    params: its parameters (replicated over `mesh`).
    batches: one pass over the split, whole (not per-host) batches of at most
      `batch_size` examples, as `pipeline.eval_iterator` yields them.
    mesh: the device mesh.
    batch_size: the largest batch size in `batches`.
    seed: batch i is evaluated with the key fold_in(eval_key, i), where
      eval_key = fold_in(key(seed), requested_metrics.EVAL_SALT).
    eval_step: from `make_eval_step` (built here if None).

  Returns:
    {name: float64 [N]} in the order of the split.

  Raises:
    ValueError: if `batches` is empty.
  """
  eval_step = make_eval_step(model, mesh) if eval_step is None else eval_step
  size = sharding.padded_size(batch_size, mesh)
  key = jax.random.fold_in(jax.random.key(seed), requested_metrics.EVAL_SALT)
  parts: Dict[str, list] = {}
  for i, batch in enumerate(batches):
    global_batch, n = sharding.shard_eval_batch(batch, mesh, size)
    metrics = jax.device_get(
        eval_step(params, global_batch, jax.random.fold_in(key, i)))
    for name, values in metrics.items():
      parts.setdefault(name, []).append(np.asarray(values, np.float64)[:n])
  if not parts:
    raise ValueError("the evaluation split yielded no examples")
  return {name: np.concatenate(values) for name, values in parts.items()}


def evaluate_split(model: protocols.Trainable, params: Any,
                   batches: Iterable[Mapping[str, np.ndarray]],
                   mesh: sharding.Mesh, batch_size: int, seed: int,
                   eval_step: Optional[Callable] = None) -> Dict[str, float]:
  """Means of `split_values` over the examples, in float64.

  The mean does not depend on the batch size. Arguments as `split_values`.

  Returns:
    {name: mean over the split}.
  """
  values = split_values(model, params, batches, mesh, batch_size, seed,
                        eval_step)
  return {name: float(np.mean(v)) for name, v in values.items()}

def draw_samples(model: protocols.Trainable, params: Any, key: Array,
                 num: int, condition_batch: Mapping[str, np.ndarray]
                 ) -> np.ndarray:
  """Draws about `num` samples, as rows of a grid.

  A neighbour-conditioned model samples from the neighbourhoods of the
  batch's examples (training neighbourhoods, paper 1 Alg. 2): one row per
  neighbourhood, its k members, a blank, then `num / NEIGHBOURHOOD_ROWS`
  samples drawn from it (`image_grid.neighbourhood_rows`); NCL / NCT given
  a context sample each row with its example's context too. A label-
  conditioned model samples for the batch's labels; an unconditional one
  draws `num`.

  Returns:
    [rows, cols, *event_shape] in data units (NaN cells are blank).
  """
  cond = (None if model.condition_kind == "none"
          else jax.tree.map(np.asarray, model.condition(condition_batch)))
  if model.condition_kind != "neighbours":
    samples = np.asarray(model.sample(
        params, key, num if cond is None else cond[:num]))
    return image_grid.as_rows(samples) if samples.ndim == 4 else samples[None]
  # Every part of the condition (N, and c with a context) row by row.
  rows = jax.tree.map(lambda part: part[:NEIGHBOURHOOD_ROWS], cond)
  neighbourhoods = rows["neighbours"] if isinstance(rows, dict) else rows
  per_row = max(1, num // len(neighbourhoods))
  samples = np.asarray(model.sample(params, key, jax.tree.map(
      lambda part: np.repeat(part, per_row, axis=0), rows)))
  return image_grid.neighbourhood_rows(
      neighbourhoods, samples.reshape(len(neighbourhoods), per_row,
                                      *samples.shape[1:]))


def run_samples(config: ml_collections.ConfigDict,
                model: protocols.Trainable, params: Any,
                splits: sources.Splits, index: Any) -> np.ndarray:
  """A run's `draw_samples`: the same key and conditions at every call.

  `config.num_sample_images` samples, conditioned on the first validation
  batch, from the key fold_in(key(config.seed), SAMPLE_SALT): the grids the
  trainer writes to TensorBoard at each validation and samples.png differ
  only by the parameters.
  """
  condition_batch = next(iter(pipeline.eval_iterator(
      splits, index, "validation", config.eval_batch_size)))
  return draw_samples(model, params,
                      jax.random.fold_in(jax.random.key(config.seed),
                                         requested_metrics.SAMPLE_SALT),
                      config.num_sample_images, condition_batch)


def save_sample_grid(rows: np.ndarray, path: str,
                     num_levels: Optional[int]) -> None:
  """Saves `draw_samples`' rows: images as a grid, 2-D points as a scatter.

  Args:
    rows: [rows, cols, H, W, C] images in data units [0, num_levels), or
      [1, n, d] points.
    path: the PNG file to write.
    num_levels: the number of levels of the data (images are shown as
      value / num_levels); None for continuous 2-D data.
  """
  if rows.ndim == 5:
    image_grid.save(rows, path, num_levels or 1)
    return
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  points = rows.reshape(-1, rows.shape[-1])
  fig, ax = plt.subplots(figsize=(4, 4))
  ax.scatter(points[:, 0], points[:, min(1, points.shape[1] - 1)], s=2)
  ax.set_axis_off()
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)


def write_test_report(config: ml_collections.ConfigDict, workdir: str,
                      model: protocols.Trainable, params: Any,
                      splits: sources.Splits, index: Any, mesh: sharding.Mesh,
                      steps_trained: int, checkpoint_step: int,
                      skipped_nonfinite_steps: int,
                      eval_step: Optional[Callable] = None,
                      metrics: Optional[Union[str, Sequence[str]]] = None
                      ) -> Dict[str, Any]:
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
    skipped_nonfinite_steps: the steps of the run skipped as non-finite.
    eval_step: from `make_eval_step` (built here if None); a model
      offering `protocols.TestMetrics` (LGF) is tested with its
      `test_metrics` instead.
    metrics: names from `metric_names.METRICS` (see
      `requested_metrics.chosen_metrics` for the default).

  Returns:
    eval.json's contents.

  Raises:
    ValueError: for unknown metrics or ones the model cannot report.

  Prints test bits/dim (or the model's `selection_metric` if it reports no
  "bpd"), and a conditional model's marginal bits/dim where requested.
  """
  metrics = requested_metrics.chosen_metrics(config, model, splits.info,
                                             metrics)
  if protocols.offers(model, protocols.TestMetrics):
    eval_step = make_eval_step(model, mesh, model.test_metrics)
  elif eval_step is None:
    eval_step = make_eval_step(model, mesh)
  values = split_values(
      model, params, pipeline.eval_iterator(splits, index, "test",
                                            config.eval_batch_size),
      mesh, config.eval_batch_size, config.seed, eval_step)
  results = {
      "model": config.model, "dataset": config.dataset,
      "num_train_steps": config.num_train_steps,
      "steps_trained": int(steps_trained),
      "checkpoint_step": int(checkpoint_step),
      "skipped_nonfinite_steps": int(skipped_nonfinite_steps),
      "num_params": model_base.count_params(params),
      "metrics": list(metrics),
      **{f"test_{name}": float(np.mean(v))
         for name, v in sorted(values.items())},
      **(label_free_results(config, model, params, splits, mesh, eval_step,
                            values["bpd"])
         if model.condition_kind == "neighbours" and "bpd" in values
         else {}),
      **requested_metrics.requested_results(model, params, config, splits,
                                            index, values, metrics),
  }
  if config.num_sample_images:
    samples = run_samples(config, model, params, splits, index)
    if jax.process_index() == 0:
      save_sample_grid(samples, os.path.join(workdir, SAMPLES_FILE),
                       splits.info.num_levels)
  if jax.process_index() == 0:
    path = os.path.join(workdir, EVAL_FILE)
    with open(path + ".tmp", "w") as f:
      json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)
    metric = "bpd" if "bpd" in values else model.selection_metric
    marginal = results.get("test_marginal_bpd")
    label_free = results.get("test_bpd_label_free")
    print(f"test {'bits/dim' if metric == 'bpd' else metric}: "
          f"{results['test_' + metric]:.4f}"
          + (f" ({results['conditional_bpd_protocol']}; label-free "
             f"{label_free:.4f})" if label_free is not None else "")
          + (f", marginal bits/dim (eq. 4, {results['marginal_method']}): "
             f"{marginal:.4f}"
             if marginal is not None and model.condition_kind != "none"
             else "")
          + f" (step {checkpoint_step}, {workdir})")
  return results


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             metrics: Optional[Union[str, Sequence[str]]] = None,
             rebuild_index: bool = False) -> Dict[str, Any]:
  """Evaluates the best (else latest) checkpoint of `workdir` on test.

  The workdir is locked (`workdir_lock`) while it runs; a damaged
  checkpoint is skipped for the previous readable one
  (`nbflows.checkpoint_fallback`), whose step eval.json reports.

  Args:
    config: the config to evaluate with; its model must match the
      checkpoint's (else ValueError naming the mismatch).
    workdir: a training run's directory.
    metrics: names from `metric_names.METRICS`, e.g.
      "bpd,marginal_bpd,fd,prd" (default: `config.eval.metrics`, else the
      model family's `requested_metrics.default_metrics`).
    rebuild_index: build the neighbour indices again (`load_data`).

  Returns:
    eval.json's contents (also written to `workdir/eval.json`).

  Raises:
    ValueError: for an unknown metric name (listing the valid ones) or one
      the model cannot report.
    workdir_lock.WorkdirLockedError: if another run holds the workdir.
  """
  if metrics is not None:
    requested_metrics.parse_metrics(metrics)  # fail before loading
  with workdir_lock.hold(workdir):
    model, params, config, step = checkpoint_loading.load_checkpoint_with_step(
        workdir, config)
    requested_metrics.chosen_metrics(
        config, model, sources.dataset_info(config.dataset), metrics)
    checkpointer = checkpoint_lib.Checkpointer(workdir, read_only=True)
    steps_trained = checkpointer.latest_step()
    skipped, _, _ = checkpoint_fallback.first_readable(
        workdir, [("latest", s) for s in checkpointer.latest_steps()],
        lambda which, s: checkpointer.nonfinite_total(s, which))
    checkpointer.close()
    mesh = sharding.make_mesh()
    params = jax.device_put(params, sharding.replicated(mesh))
    splits, index = load_data(config, model, rebuild_index)
    return write_test_report(config, workdir, model, params, splits, index,
                             mesh, steps_trained, step, skipped,
                             metrics=metrics)
