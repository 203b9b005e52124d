"""The metrics a test report holds beyond the test means, and their values.

`train.evaluation.evaluate.write_test_report` writes eval.json with, per
requested metric (`metric_names.METRICS`):

  * "bpd", "iwae": the model's own test_bpd / test_iwae (the VAEs add
    `iwae_samples`, S of the bound);
  * "log_likelihood": test_log_likelihood (nats, mean per example) and
    test_log_likelihood_stderr (std over examples / sqrt(N)); for flows it is
    -bpd D ln 2, for LGF the importance-sampled estimate with
    `log_likelihood_samples` samples (paper 2, Sec. 5);
  * "marginal_bpd": test_marginal_bpd, eq. 4 of paper 1 on the same
    dequantised test points (`nbflows.marginal.marginal_over_training_set`;
    no test label is used), marginal_method naming the estimator ("exact",
    "sampled", or "unconditional": then it is test_bpd),
    marginal_description (e.g. "sampled, M=100 of 1294 neighbourhoods") and
    marginal_num_neighbourhoods (the conditions summed: M, or the distinct
    neighbourhoods, k-means clusters or labels); a sampled estimate adds
    test_marginal_bpd_stderr, its standard error over the draw of the M
    rows by the delta method (`nbflows.marginal.sampled_bpd_stderr`; the
    test points held fixed);
  * "marginal_bias" (neighbourhood models): the sampled estimate (M =
    `config.eval.marginal_neighbourhoods`, the rows "marginal_bpd" draws)
    and the exact sum over every training neighbourhood on the same test
    points: test_marginal_bpd_sampled (+ _stderr), test_marginal_bpd_exact,
    marginal_sampled_neighbourhoods (M), marginal_sampled_minus_exact_bpd
    and its _stderr (row draw and test points in quadrature,
    `nbflows.marginal.sampled_minus_exact`). NCT pays N conditional passes
    per test point for the exact sum;
  * "fd", "prd": frechet_distance, prd_f8 (recall-like) and prd_f1_8
    (precision-like) of `config.eval.num_samples` samples against the test
    split, on the features of the offline classifier of
    `nbflows.metrics.feature_net` (not Inception's: not an FID), named in
    sample_quality_features; sample_quality_samples counts the finite
    samples used (`train.evaluation.sample_quality`).

`config.eval.metrics` ("" = `default_metrics`, the model family's set) or
`--metrics` choose them (`chosen_metrics`); `requested_results` computes
their entries.

Example:
  >>> parse_metrics("bpd, marginal_bpd")
  ('bpd', 'marginal_bpd')
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import jax
import ml_collections
import numpy as np

from nbflows import marginal
from nbflows import shape_buckets
from nbflows import units
from nbflows.data import pipeline
from nbflows.data import sources
from nbflows.models import base as model_base
from nbflows.models import protocols
from train.evaluation import sample_quality
# The names and their parsing live where --help can read them without JAX.
from train.evaluation.metric_names import parse_metrics

# Keys: fold_in(key(seed), salt) separates evaluation, sampling, marginal
# and sample-quality randomness from training's (which splits key(seed)).
EVAL_SALT, SAMPLE_SALT, MARGINAL_SALT, QUALITY_SALT = 1, 2, 3, 4


def is_image_data(info: sources.DatasetInfo) -> bool:
  """Whether a dataset holds discrete images [H, W, C] (fd and prd apply)."""
  return len(info.event_shape) == 3 and info.num_levels is not None


def default_metrics(model: protocols.Trainable,
                    info: sources.DatasetInfo) -> Tuple[str, ...]:
  """The metrics a model reports by default: its `default_metrics`.

  VAEs: iwae (+ fd); GLF: fd; LGF: log_likelihood (+ fd, prd); other flows
  and KDE: bpd, with marginal_bpd, fd and prd on images and log_likelihood
  on vector data. "fd" and "prd" only for image data.
  """
  return model.default_metrics(is_image_data(info))


def chosen_metrics(config: ml_collections.ConfigDict,
                   model: protocols.Trainable,
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


def marginal_on_test_split(
    model: model_base.DensityModel, params: Any,
    config: ml_collections.ConfigDict,
    splits: sources.Splits, index: Any,
    x: np.ndarray) -> marginal.TrainingSetMarginal:
  """Eq. 4 of paper 1 at test points `x` [N, *event] (data units).

  Exact for NCL, CC-RNVP and k-means indices; sampled with M =
  `config.eval.marginal_neighbourhoods` for NCT (App. B.3) unless
  `config.eval.exact_marginal`. An unconditional model's marginal is its
  own log-density.
  """
  if model.condition_kind == "none":
    size = min(config.eval_batch_size, len(x))
    batches = [x[i:i + size] for i in range(0, len(x), size)]
    log_prob = np.concatenate([   # the last batch padded: one program
        np.asarray(model.log_prob(params, shape_buckets.pad_rows(
            batch, size)))[:len(batch)] for batch in batches])
    return marginal.TrainingSetMarginal(log_prob, "unconditional",
                                        "unconditional: log p(x)")
  return marginal.marginal_over_training_set(
      model, params, x, splits.train, index,
      num_neighbourhoods=config.eval.marginal_neighbourhoods,
      key=marginal_key(config), exact=config.eval.exact_marginal)


def marginal_key(config: ml_collections.ConfigDict) -> jax.Array:
  """The key of the sampled marginal's M rows."""
  return jax.random.fold_in(jax.random.key(config.seed), MARGINAL_SALT)


def marginal_results(result: marginal.TrainingSetMarginal, num_dims: int,
                     name: str = "test_marginal_bpd") -> Dict[str, Any]:
  """`name`, its estimator, and for a sampled estimate its standard error."""
  results = {name: float(np.mean(units.bits_per_dim(result.log_prob,
                                                    num_dims)))}
  stderr = result.stderr_bpd(num_dims)
  if stderr is not None:
    results[name + "_stderr"] = stderr
  return results


def _marginal_entries(model: model_base.DensityModel, params: Any,
                      config: ml_collections.ConfigDict,
                      splits: sources.Splits, index: Any,
                      metrics: Sequence[str]) -> Dict[str, Any]:
  """eval.json's "marginal_bpd" and "marginal_bias" entries (module doc)."""
  x = np.concatenate([batch["x"] for batch in pipeline.eval_iterator(
      splits, index, "test", config.eval_batch_size)])
  results: Dict[str, Any] = {}
  result = None
  if "marginal_bias" in metrics:
    both = marginal.sampled_minus_exact(
        model, params, x, splits.train, index,
        num_neighbourhoods=config.eval.marginal_neighbourhoods,
        key=marginal_key(config))
    results.update(
        **marginal_results(both.sampled, model.num_dims,
                           "test_marginal_bpd_sampled"),
        **marginal_results(both.exact, model.num_dims,
                           "test_marginal_bpd_exact"),
        marginal_sampled_neighbourhoods=both.sampled.num_neighbourhoods,
        marginal_sampled_minus_exact_bpd=both.difference_bpd,
        marginal_sampled_minus_exact_bpd_stderr=both.difference_stderr_bpd)
    # The same rows and points as marginal_on_test_split's.
    result = (both.exact if marginal.exact_route(
        model, index, config.eval.exact_marginal) else both.sampled)
  if "marginal_bpd" in metrics:
    if result is None:
      result = marginal_on_test_split(model, params, config, splits, index, x)
    results.update(marginal_results(result, model.num_dims),
                   marginal_method=result.method,
                   marginal_description=result.description)
    if result.num_neighbourhoods is not None:
      results["marginal_num_neighbourhoods"] = result.num_neighbourhoods
  return results


def _require(values: Mapping[str, np.ndarray], metric: str,
             needed: Sequence[str], model: protocols.Trainable) -> str:
  """The first of `needed` that the model reports, else ValueError."""
  for name in needed:
    if name in values:
      return name
  raise ValueError(f"metric {metric!r} needs the per-example {needed[0]!r}; "
                   f"model {model.name!r} reports {sorted(values)}")


def requested_results(model: protocols.Trainable, params: Any,
                      config: ml_collections.ConfigDict,
                      splits: sources.Splits, index: Any,
                      values: Mapping[str, np.ndarray],
                      metrics: Sequence[str]) -> Dict[str, Any]:
  """eval.json's entries for `metrics` beyond the test means (module doc).

  Args:
    values: the test split's per-example metrics
      (`train.evaluation.evaluate.split_values`).
    metrics: from `chosen_metrics`.
  """
  results: Dict[str, Any] = {}
  if "iwae" in metrics:
    _require(values, "iwae", ["iwae"], model)
    protocols.require(model, protocols.IWAEBound, "metric 'iwae'")
    results.update(model.eval_settings)
  if "bpd" in metrics:
    _require(values, "bpd", ["bpd"], model)
  if "log_likelihood" in metrics:
    name = _require(values, "log_likelihood", ["log_likelihood", "bpd"], model)
    log_likelihood = (values[name] if name == "log_likelihood" else
                      units.log_prob_from_bits_per_dim(values[name],
                                                       model.num_dims))
    results.update(
        test_log_likelihood=float(np.mean(log_likelihood)),
        test_log_likelihood_stderr=float(
            np.std(log_likelihood, ddof=1) / math.sqrt(len(log_likelihood))))
    if protocols.offers(model, protocols.TestMetrics):
      results["log_likelihood_samples"] = model.test_samples
  if "marginal_bpd" in metrics:
    _require(values, "marginal_bpd", ["bpd"], model)
  if "marginal_bias" in metrics and model.condition_kind != "neighbours":
    raise ValueError(f"metric 'marginal_bias' needs a neighbourhood model; "
                     f"model {model.name!r} has condition kind "
                     f"{model.condition_kind!r}")
  if {"marginal_bpd", "marginal_bias"} & set(metrics):
    results.update(_marginal_entries(model, params, config, splits, index,
                                     metrics))
  if {"fd", "prd"} & set(metrics):
    results.update(sample_quality.sample_quality(
        model, params,
        jax.random.fold_in(jax.random.key(config.seed), QUALITY_SALT),
        config, splits, index, metrics))
  return results

