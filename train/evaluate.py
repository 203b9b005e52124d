"""Evaluation of a trained model: split means, samples, and `eval.json`.

Used by the trainer (validation passes and the final test report) and as an
entry point that evaluates the best checkpoint of a finished run:

  python -m train.evaluate --config configs/ncl_digits.py --workdir DIR \
      --metrics bpd,marginal_bpd,fd,prd

which writes DIR/eval.json and DIR/samples.png and prints test bits/dim.
eval.json holds: model, dataset, num_train_steps, steps_trained,
checkpoint_step (whose parameters were evaluated), num_params, metrics (the
metric names evaluated), test_<name> for the mean over the test split of
every per-example metric the model reports (`model.eval_metrics`, or
`model.test_metrics` where the model has one, e.g. LGF's 1000-sample
importance estimate): test_bpd for the flows, test_iwae for the VAEs; and
per requested metric (`METRICS`):

  * "bpd", "iwae": the model's own test_bpd / test_iwae (the VAEs add
    `iwae_samples`, S of the bound);
  * "log_likelihood": test_log_likelihood (nats, mean per example) and
    test_log_likelihood_stderr (std over examples / sqrt(N)); for flows it is
    -bpd D ln 2, for LGF the importance-sampled estimate with
    `log_likelihood_samples` samples (paper 2, Sec. 5);
  * "marginal_bpd": test_marginal_bpd, eq. 4 of paper 1 on the same
    dequantised test points (`nbflows.marginal.marginal_over_training_set`),
    and marginal_method; for an unconditional model it is test_bpd;
  * "fd", "prd": frechet_distance, prd_f8 (recall-like) and prd_f1_8
    (precision-like) of `config.eval.num_samples` samples against the test
    split, on the features of the offline classifier of
    `nbflows.metrics.feature_net` (not Inception's: not an FID), named in
    sample_quality_features; sample_quality_samples counts the finite
    samples used.

`config.eval.metrics` ("" = `default_metrics`, the model family's set) or
`--metrics` choose them.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import jax
import ml_collections
import numpy as np

from nbflows import checkpoint_loading
from nbflows import marginal
from nbflows.data import pipeline
from nbflows.data import sources
from nbflows.metrics import feature_net
from nbflows.metrics import frechet
from nbflows.metrics import prd
from nbflows.models import base as model_base
from nbflows.models import glf
from nbflows.models import lgf
from nbflows.models import vae
from nbflows.neighbours import index as index_lib
from train import checkpoint as checkpoint_lib
from train import sharding

Array = jax.Array
EVAL_FILE = "eval.json"
SAMPLES_FILE = "samples.png"
FEATURE_NET_CACHE_DIR = os.path.join("~", ".cache", "nbflows", "feature_net")
# Keys: fold_in(key(seed), salt) separates evaluation, sampling, marginal
# and sample-quality randomness from training's (which splits key(seed)).
EVAL_SALT, SAMPLE_SALT, MARGINAL_SALT, QUALITY_SALT = 1, 2, 3, 4
METRICS = ("bpd", "iwae", "log_likelihood", "marginal_bpd", "fd", "prd")


def parse_metrics(metrics: Union[str, Sequence[str]]) -> Tuple[str, ...]:
  """Metric names from "a,b" or a sequence; () for an empty choice.

  Example:
    >>> parse_metrics("bpd, fd")
    ('bpd', 'fd')

  Raises:
    ValueError: for a name outside `METRICS`, listing the valid ones.
  """
  if isinstance(metrics, str):
    metrics = metrics.split(",")
  names = tuple(name.strip() for name in metrics if name.strip())
  unknown = [name for name in names if name not in METRICS]
  if unknown:
    raise ValueError(f"unknown metrics {unknown}; expected names from "
                     f"{', '.join(METRICS)}")
  return names


def is_image_data(info: sources.DatasetInfo) -> bool:
  """Whether a dataset holds discrete images [H, W, C] (fd and prd apply)."""
  return len(info.event_shape) == 3 and info.num_levels is not None


def default_metrics(model: model_base.Model,
                    info: sources.DatasetInfo) -> Tuple[str, ...]:
  """The metrics a model family reports by default.

  VAEs: iwae (+ fd); GLF: fd; LGF: log_likelihood (+ fd, prd); other flows
  and KDE: bpd, with marginal_bpd, fd and prd on images and log_likelihood
  on vector data. "fd" and "prd" only for image data.
  """
  images = is_image_data(info)
  if isinstance(model, vae.VAEModel):
    return ("iwae", "fd") if images else ("iwae",)
  if isinstance(model, glf.GLFModel):
    return ("fd",) if images else ()
  if isinstance(model, lgf.LGFModel):
    return ("log_likelihood", "fd", "prd") if images else ("log_likelihood",)
  if images:
    return ("bpd", "marginal_bpd", "fd", "prd")
  return ("bpd", "log_likelihood")


def chosen_metrics(config: ml_collections.ConfigDict, model: model_base.Model,
                   info: sources.DatasetInfo,
                   metrics: Optional[Union[str, Sequence[str]]] = None
                   ) -> Tuple[str, ...]:
  """`metrics`, else `config.eval.metrics`, else `default_metrics`.

  Raises:
    ValueError: for an unknown name, or "fd"/"prd" on data without images.
  """
  names = parse_metrics(config.eval.metrics if metrics is None else metrics)
  names = names or default_metrics(model, info)
  if not is_image_data(info) and {"fd", "prd"} & set(names):
    raise ValueError(f"metrics {names} on dataset {info.name!r} with event "
                     f"shape {info.event_shape}; fd and prd need images")
  return names


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


def make_eval_step(model: model_base.Model, mesh: sharding.Mesh,
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


def split_values(model: model_base.Model, params: Any,
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
      eval_key = fold_in(key(seed), EVAL_SALT).
    eval_step: from `make_eval_step` (built here if None).

  Returns:
    {name: float64 [N]} in the order of the split.

  Raises:
    ValueError: if `batches` is empty.
  """
  eval_step = make_eval_step(model, mesh) if eval_step is None else eval_step
  size = sharding.padded_size(batch_size, mesh)
  key = jax.random.fold_in(jax.random.key(seed), EVAL_SALT)
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


def evaluate_split(model: model_base.Model, params: Any,
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


def marginal_on_test_split(
    model: model_base.Model, params: Any, config: ml_collections.ConfigDict,
    splits: sources.Splits, index: Any,
    x: np.ndarray) -> marginal.TrainingSetMarginal:
  """Eq. 4 of paper 1 at test points `x` [N, *event] (data units).

  Exact for NCL, CC-RNVP and k-means indices; sampled with M =
  `config.eval.marginal_neighbourhoods` for NCT (App. B.3) unless
  `config.eval.exact_marginal`. An unconditional model's marginal is its
  own log-density.
  """
  if model.condition_kind == "none":
    log_prob = np.concatenate([
        np.asarray(model.log_prob(params, x[i:i + config.eval_batch_size]))
        for i in range(0, len(x), config.eval_batch_size)])
    return marginal.TrainingSetMarginal(log_prob, "unconditional")
  return marginal.marginal_over_training_set(
      model, params, x, splits.train, index,
      num_neighbourhoods=config.eval.marginal_neighbourhoods,
      key=jax.random.fold_in(jax.random.key(config.seed), MARGINAL_SALT),
      exact=config.eval.exact_marginal)


def draw_marginal_samples(model: model_base.Model, params: Any, key: Array,
                          num: int, train: sources.Split, index: Any,
                          batch_size: int) -> np.ndarray:
  """`num` samples of the model's marginal (paper 1, Alg. 2).

  A conditional model samples, for each draw, the condition of a training
  point picked uniformly: its neighbourhood (images at their bin centres) or
  its label, as the generative process of eq. 4 does.

  Returns:
    [num, *event_shape] samples in data units.
  """
  keys = [jax.random.fold_in(key, i) for i in range(0, num, batch_size)]
  if model.condition_kind == "none":
    return np.concatenate([
        np.asarray(model.sample(params, k, min(batch_size, num - i)))
        for k, i in zip(keys, range(0, num, batch_size))])
  conditions = (train.labels if model.condition_kind == "label" else
                marginal.Neighbourhoods(train.images,
                                        index.neighbours["train"]))
  rows = np.random.default_rng(int(jax.random.randint(
      key, (), 0, 2 ** 31 - 1))).integers(0, len(train.labels), num)
  return np.concatenate([
      np.asarray(model.sample(params, k, marginal.gather(
          conditions, rows[i:i + batch_size])))
      for k, i in zip(keys, range(0, num, batch_size))])


def sample_quality(model: model_base.Model, params: Any,
                   config: ml_collections.ConfigDict, splits: sources.Splits,
                   index: Any, metrics: Sequence[str]) -> Dict[str, Any]:
  """Frechet distance and/or PRD of model samples against the test split.

  On the penultimate features of the offline classifier
  (`feature_net.load_or_train`, trained once per dataset and
  `config.eval.feature_net_steps`, cached under `config.data_dir` or
  ~/.cache/nbflows/feature_net). Non-finite samples are dropped and counted
  out of `sample_quality_samples`.

  Returns:
    {"sample_quality_features", "sample_quality_samples"} and
    "frechet_distance" if "fd" in `metrics`, "prd_f8", "prd_f1_8" if "prd".
  """
  info, train = splits.info, splits.train
  settings = feature_net.ClassifierSettings(
      num_steps=config.eval.feature_net_steps)
  cache_dir = os.path.expanduser(config.data_dir or FEATURE_NET_CACHE_DIR)
  net = feature_net.load_or_train(info.name, train.images, train.labels,
                                  info.num_levels, info.num_classes,
                                  cache_dir, settings)
  samples = draw_marginal_samples(
      model, params,
      jax.random.fold_in(jax.random.key(config.seed), QUALITY_SALT),
      config.eval.num_samples, train, index, config.eval_batch_size)
  samples = samples[np.isfinite(samples.reshape(len(samples), -1)).all(1)]
  generated, real = net(samples), net(splits.test.images)
  results = {
      "sample_quality_features": "penultimate layer of " + feature_net.cache_key(
          info.name, train.images, train.labels, info.num_levels,
          info.num_classes, settings),
      "sample_quality_samples": len(samples)}
  if "fd" in metrics:
    results["frechet_distance"] = frechet.frechet_distance(real, generated)
  if "prd" in metrics:
    curve = prd.prd_score(generated, real, num_runs=config.eval.prd_runs)
    results.update(prd_f8=curve.f_8, prd_f1_8=curve.f_1_8)
  return results


def _require(values: Mapping[str, np.ndarray], metric: str,
             needed: Sequence[str], model: model_base.Model) -> str:
  """The first of `needed` that the model reports, else ValueError."""
  for name in needed:
    if name in values:
      return name
  raise ValueError(f"metric {metric!r} needs the per-example {needed[0]!r}; "
                   f"model {model.name!r} reports {sorted(values)}")


def requested_results(model: model_base.Model, params: Any,
                      config: ml_collections.ConfigDict,
                      splits: sources.Splits, index: Any,
                      values: Mapping[str, np.ndarray],
                      metrics: Sequence[str]) -> Dict[str, Any]:
  """eval.json's entries for `metrics` beyond the test means (module doc).

  Args:
    values: the test split's per-example metrics (`split_values`).
    metrics: from `chosen_metrics`.
  """
  results: Dict[str, Any] = {}
  if "iwae" in metrics:
    _require(values, "iwae", ["iwae"], model)
    results.update(model.eval_settings)
  if "bpd" in metrics:
    _require(values, "bpd", ["bpd"], model)
  if "log_likelihood" in metrics:
    name = _require(values, "log_likelihood", ["log_likelihood", "bpd"], model)
    log_likelihood = (values[name] if name == "log_likelihood" else
                      -values[name] * model.num_dims * math.log(2.0))
    results.update(
        test_log_likelihood=float(np.mean(log_likelihood)),
        test_log_likelihood_stderr=float(
            np.std(log_likelihood, ddof=1) / math.sqrt(len(log_likelihood))))
    if hasattr(model, "test_samples"):
      results["log_likelihood_samples"] = model.test_samples
  if "marginal_bpd" in metrics:
    _require(values, "marginal_bpd", ["bpd"], model)
    x = np.concatenate([batch["x"] for batch in pipeline.eval_iterator(
        splits, index, "test", config.eval_batch_size)])
    result = marginal_on_test_split(model, params, config, splits, index, x)
    results.update(test_marginal_bpd=float(np.mean(
        marginal.to_bits_per_dim(result.log_prob, model.num_dims))),
                   marginal_method=result.method)
  if {"fd", "prd"} & set(metrics):
    results.update(sample_quality(model, params, config, splits, index,
                                  metrics))
  return results


def write_test_report(config: ml_collections.ConfigDict, workdir: str,
                      model: model_base.Model, params: Any,
                      splits: sources.Splits, index: Any, mesh: sharding.Mesh,
                      steps_trained: int, checkpoint_step: int,
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
    eval_step: from `make_eval_step` (built here if None); a model with
      `test_metrics` (LGF) is tested with those instead.
    metrics: names from `METRICS` (see `chosen_metrics` for the default).

  Returns:
    eval.json's contents.

  Raises:
    ValueError: for unknown metrics or ones the model cannot report.

  Prints test bits/dim (or the model's `selection_metric` if it reports no
  "bpd").
  """
  metrics = chosen_metrics(config, model, splits.info, metrics)
  if hasattr(model, "test_metrics") or eval_step is None:
    eval_step = make_eval_step(model, mesh,
                               getattr(model, "test_metrics", None))
  values = split_values(
      model, params, pipeline.eval_iterator(splits, index, "test",
                                            config.eval_batch_size),
      mesh, config.eval_batch_size, config.seed, eval_step)
  results = {
      "model": config.model, "dataset": config.dataset,
      "num_train_steps": config.num_train_steps,
      "steps_trained": int(steps_trained),
      "checkpoint_step": int(checkpoint_step),
      "num_params": model_base.count_params(params),
      "metrics": list(metrics),
      **{f"test_{name}": float(np.mean(v))
         for name, v in sorted(values.items())},
      **requested_results(model, params, config, splits, index, values,
                          metrics),
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
    metric = "bpd" if "bpd" in values else selection_metric(model)
    print(f"test {'bits/dim' if metric == 'bpd' else metric}: "
          f"{results['test_' + metric]:.4f} (step {checkpoint_step}, "
          f"{workdir})")
  return results


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             metrics: Optional[Union[str, Sequence[str]]] = None
             ) -> Dict[str, Any]:
  """Evaluates the best (else latest) checkpoint of `workdir` on test.

  Args:
    config: the config to evaluate with; its model must match the
      checkpoint's (else ValueError naming the mismatch).
    workdir: a training run's directory.
    metrics: names from `METRICS`, e.g. "bpd,marginal_bpd,fd,prd" (default:
      `config.eval.metrics`, else the model family's `default_metrics`).

  Returns:
    eval.json's contents (also written to `workdir/eval.json`).

  Raises:
    ValueError: for an unknown metric name (listing the valid ones) or one
      the model cannot report.
  """
  if metrics is not None:
    parse_metrics(metrics)               # unknown names fail before loading
  model, params, config = checkpoint_loading.load_checkpoint(workdir, config)
  chosen_metrics(config, model, sources.dataset_info(config.dataset), metrics)
  checkpointer = checkpoint_lib.Checkpointer(workdir, read_only=True)
  steps_trained = checkpointer.latest_step()
  best_step = checkpointer.best_step()
  checkpointer.close()
  mesh = sharding.make_mesh()
  params = jax.device_put(params, sharding.replicated(mesh))
  splits, index = load_data(config, model)
  return write_test_report(
      config, workdir, model, params, splits, index, mesh, steps_trained,
      steps_trained if best_step is None else best_step, metrics=metrics)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  config_flags.DEFINE_config_file(
      "config", None, "Config file, e.g. configs/default.py:quick.",
      lock_config=True)
  flags.DEFINE_string("workdir", None, "The training run's directory.")
  flags.DEFINE_list("metrics", None, "Metrics to evaluate, from "
                    f"{', '.join(METRICS)} (default: config.eval.metrics, "
                    "else the model family's default).")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    del argv
    evaluate(flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.metrics)

  app.run(main)
