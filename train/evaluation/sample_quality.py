"""Sample quality without Inception: Frechet distance and PRD on the features
of a small classifier trained offline on the same dataset.

The Inception network cannot be downloaded here, so `sample_quality` embeds
model samples and the test split with the penultimate layer of
`nbflows.metrics.feature_net` (trained once per dataset and
`config.eval.feature_net_steps`, cached under `config.data_dir` or
`FEATURE_NET_CACHE_DIR`) and compares them with the Frechet distance
(`nbflows.metrics.frechet`; not an FID) and PRD (Sajjadi et al. 2018,
`nbflows.metrics.prd`: F_8 recall-like, F_1/8 precision-like). The samples
are of the model's marginal (`draw_marginal_samples`, paper 1 Alg. 2): a
conditional model samples given the condition of a uniformly picked
training point, as the generative process of eq. 4 does.

Example:
  >>> from configs import ncl_digits
  >>> from train.evaluation import evaluate
  >>> config = ncl_digits.get_config("quick")
  >>> # after training into DIR (python -m train.main ... --workdir DIR):
  >>> evaluate.evaluate(config, "DIR", "fd,prd")  # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any, Dict, Sequence

import jax
import ml_collections
import numpy as np

from nbflows import marginal
from nbflows import shape_buckets
from nbflows.data import sources
from nbflows.metrics import feature_net
from nbflows.metrics import frechet
from nbflows.metrics import prd
from nbflows.models import protocols

Array = jax.Array
FEATURE_NET_CACHE_DIR = os.path.join("~", ".cache", "nbflows", "feature_net")


def draw_marginal_samples(model: protocols.Trainable, params: Any, key: Array,
                          num: int, train: sources.Split, index: Any,
                          batch_size: int) -> np.ndarray:
  """`num` samples of the model's marginal (paper 1, Alg. 2).

  A conditional model samples, for each draw, the condition of a training
  point picked uniformly: its neighbourhood (images at their bin centres) or
  its label, as the generative process of eq. 4 does.

  Returns:
    [num, *event_shape] samples in data units.

  Raises:
    ValueError: for NCL / NCT given a context (`model.context_dim`): the
      training neighbourhoods come without contexts to sample them with.
  """
  if model.context_dim:
    raise ValueError(
        f"model {model.name!r} conditions on a context vector with its "
        "neighbours; marginal samples (eq. 4's generative process) draw "
        "training neighbourhoods, which have no contexts: sample it given "
        "contexts instead (model.sample(params, key, {'neighbours': N, "
        "'context': c}))")
  keys = [jax.random.fold_in(key, i) for i in range(0, num, batch_size)]
  # Every call draws min(batch_size, num) rows, the last one's extra rows
  # dropped, so that the sampler compiles once.
  size = min(batch_size, num)
  counts = [min(batch_size, num - i) for i in range(0, num, batch_size)]
  if model.condition_kind == "none":
    return np.concatenate([
        np.asarray(model.sample(params, k, size))[:count]
        for k, count in zip(keys, counts)])
  conditions = (train.labels if model.condition_kind == "label" else
                marginal.Neighbourhoods(train.images,
                                        index.neighbours["train"]))
  rows = np.random.default_rng(int(jax.random.randint(
      key, (), 0, 2 ** 31 - 1))).integers(0, len(train.labels), num)
  return np.concatenate([
      np.asarray(model.sample(params, k, shape_buckets.pad_rows(
          marginal.gather(conditions, rows[i:i + count]), size)))[:count]
      for k, i, count in zip(keys, range(0, num, batch_size), counts)])


def sample_quality(model: protocols.Trainable, params: Any, key: Array,
                   config: ml_collections.ConfigDict, splits: sources.Splits,
                   index: Any, metrics: Sequence[str]) -> Dict[str, Any]:
  """Frechet distance and/or PRD of model samples against the test split.

  On the penultimate features of the offline classifier
  (`feature_net.load_or_train`, trained once per dataset and
  `config.eval.feature_net_steps`, cached under `config.data_dir` or
  ~/.cache/nbflows/feature_net). Non-finite samples are dropped and counted
  out of `sample_quality_samples`.

  Args:
    model: the model.
    params: its parameters.
    key: draws the `config.eval.num_samples` marginal samples.
    config: the run's config (eval.*, seed, eval_batch_size, data_dir).
    splits: the dataset; samples are compared with its test split.
    index: the neighbour index (conditions of neighbour models), or None.
    metrics: "fd" and/or "prd".

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
  samples = draw_marginal_samples(model, params, key, config.eval.num_samples,
                                  train, index, config.eval_batch_size)
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


