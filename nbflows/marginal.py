"""The marginal likelihood of conditional models (paper 1, eq. 4, B.3, B.5).

A neighbourhood model defines p(x | N); its generative process picks the
neighbourhood of a random training point, so its density is (eq. 4)

  p(x) = (1/N) sum_i p(x | N(x_i)).

`marginal_log_prob` evaluates it in one of two ways:
  * sampled (App. B.3, the paper's M = 100): M rows drawn uniformly without
    replacement, log p(x) ~= log (1/M) sum_j p(x | N_j), a log-mean-exp. The
    same M rows serve every x of one call. M = N gives the exact value.
  * exact: the sum over every row. Rows that repeat (k-means neighbourhoods,
    App. B.5, where every member of a cluster has the cluster's prototypes)
    are evaluated once and weighted by their count, so the exact marginal
    over C clusters costs C conditional evaluations:
    p(x) = sum_c (n_c / N) p(x | N_c).
For NCL the exact sum is cheap whatever N: p(x | N_i) = N(q(x); mu_i,
sigma_i) |det dq/dx| with q independent of N_i, so one flow pass gives q(x)
and the N Gaussian densities come from per-neighbourhood statistics
(mu_i, sigma_i) computed once (every training image through q once, then
the head on each neighbourhood), in blocks of matrix products. Other models
run one conditional pass per (x, row) pair.

The same function marginalises a label-conditioned model (CC-RNVP) over the
training labels: p(x) = sum_c (n_c / N) p(x | c).

`marginal_over_training_set` picks the route for a trained model and
names it ("exact" or "sampled"); a sampled result carries the terms of its
delta-method standard error (`sampled_bpd_stderr`), and
`sampled_minus_exact` measures the sampled estimator's bias (Jensen:
E log p^ <= log p) against the exact sum on the same points.

Results are log-densities in nats of data units (`x` = uint8 + u, as
everywhere in nbflows); `marginal_bits_per_dim` converts them to bits per
dimension of the discrete data.

Example:
  >>> import jax, jax.numpy as jnp, numpy as np
  >>> from configs import ncl_digits
  >>> from nbflows.models import registry
  >>> model = registry.build_model(ncl_digits.get_config("quick"))
  >>> images = np.random.default_rng(0).integers(0, 17, (6, 8, 8, 1), np.uint8)
  >>> rows = np.array([[1, 2, 3, 4, 5], [0, 2, 3, 4, 5], [0, 1, 3, 4, 5]])
  >>> x = jnp.full((2, 8, 8, 1), 8.5)     # 3 neighbourhoods of NCL's k = 5
  >>> params = model.init(jax.random.key(0),
  ...                     {"x": x, "neighbours": jnp.full((2, 5, 8, 8, 1), 8.5)})
  >>> neighbourhoods = Neighbourhoods(images, rows)
  >>> exact = marginal_log_prob(model, params, x, neighbourhoods)
  >>> sampled = marginal_log_prob(model, params, x, neighbourhoods,
  ...                             num_neighbourhoods=3, key=jax.random.key(1))
  >>> bool(np.allclose(exact, sampled, atol=1e-3))     # M = N is exact
  True
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nbflows import data_units
from nbflows import shape_buckets
from nbflows import units
from nbflows.models import base
from nbflows.models import protocols

Array = jax.Array
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Neighbourhoods(NamedTuple):
  """The training neighbourhoods of eq. 4: row i is N(x_i).

  Attributes:
    images: [N_train, *event] training images, integer (used at the centres
      of their bins, + 0.5) or in data units.
    indices: int [N, k]; row i indexes the k members of the i-th
      neighbourhood in `images` (a neighbour index's `neighbours["train"]`,
      or one row per k-means cluster with `counts`).
    counts: [N] how many training points each row stands for, or None for
      one each.
  """
  images: Any
  indices: Any
  counts: Optional[Any] = None


Conditions = Union[Neighbourhoods, Array]   # or [N] labels for CC-RNVP


def num_rows(conditions: Conditions) -> int:
  """N, the number of training conditions (rows) in `conditions`."""
  if isinstance(conditions, Neighbourhoods):
    return len(conditions.indices)
  return len(conditions)


def gather(conditions: Conditions, rows: np.ndarray) -> np.ndarray:
  """The conditions of `rows`: [R, k, *event] neighbourhoods or [R] labels.

  Images come as stored (integer levels stay integers), so that a model
  entry dequantises them by its units rule (`nbflows.data_units`).
  """
  rows = np.asarray(rows)
  if isinstance(conditions, Neighbourhoods):
    images = np.asarray(conditions.images)
    return images[np.asarray(conditions.indices)[rows]]
  return np.asarray(conditions)[rows]


def _refuse_context(model: base.DensityModel) -> None:
  """Eq. 4 sums over training neighbourhoods or labels, not contexts."""
  if model.context_dim:      # a context model, or NCL / NCT given one
    raise ValueError(
        f"model {model.name!r} conditions on a context vector; eq. 4's "
        "marginal over training conditions is not implemented for contexts "
        "(test it given the test contexts: metrics bpd, log_likelihood)")


def _check_conditions(model: base.DensityModel, conditions: Conditions) -> None:
  _refuse_context(model)
  if model.condition_kind == "neighbours":
    if not isinstance(conditions, Neighbourhoods):
      raise ValueError(f"model {model.name!r} conditions on neighbourhoods; "
                       "expected conditions=Neighbourhoods(images, indices)")
    indices = np.asarray(conditions.indices)
    images = np.asarray(conditions.images)
    if indices.ndim != 2 or indices.shape[1] < 1:
      raise ValueError(f"conditions.indices has shape {indices.shape}; "
                       "expected [N, k] integer indices into images")
    k = model.num_neighbours
    if k is not None and indices.shape[1] != k:
      raise ValueError(f"conditions.indices has shape {indices.shape}; "
                       f"expected [N, {k}]: model {model.name!r} "
                       f"concatenates k = {k} neighbours")
    if tuple(images.shape[1:]) != model.event_shape:
      raise ValueError(f"conditions.images has shape {images.shape}; "
                       f"expected [N_train, {model.event_shape}]")
    data_units.check(images, model.num_levels, "conditions.images")
    if indices.size and (indices.min() < 0 or indices.max() >= len(images)):
      raise ValueError(f"conditions.indices range from {indices.min()} to "
                       f"{indices.max()}; expected indices into the "
                       f"{len(images)} images")
  elif model.condition_kind == "label":
    if np.asarray(conditions).ndim != 1:
      raise ValueError(f"model {model.name!r} conditions on labels; expected "
                       "conditions to be the [N] training labels")
  else:
    raise ValueError(f"model {model.name!r} is unconditional; its marginal is "
                     "its log_prob")


def unique_rows(conditions: Conditions) -> Tuple[np.ndarray, np.ndarray]:
  """(one row index per distinct condition, log of its share of the N rows).

  Neighbourhoods are compared as index rows; the shares sum to one.
  """
  if isinstance(conditions, Neighbourhoods):
    keys = np.asarray(conditions.indices)
    counts = (np.ones(len(keys)) if conditions.counts is None
              else np.asarray(conditions.counts, np.float64))
  else:
    keys = np.asarray(conditions)[:, None]
    counts = np.ones(len(keys))
  _, first, inverse = np.unique(keys, axis=0, return_index=True,
                                return_inverse=True)
  totals = np.bincount(inverse.reshape(-1), weights=counts,
                       minlength=len(first))
  return first, np.log(totals / totals.sum())


def _batches(num: int, size: int):
  for start in range(0, num, size):
    yield slice(start, min(start + size, num))


# ------------------------------------------------ the generic conditional
@functools.partial(jax.jit, static_argnums=(0,))
def _pairwise_log_probs(module, params, x: Array, conds: Array) -> Array:
  """log p(x_b | c_j) for every pair: [J, B] (one pass over J B pairs)."""
  j, b = conds.shape[0], x.shape[0]
  x_tiled = jnp.tile(x, (j,) + (1,) * (x.ndim - 1))
  c_tiled = jnp.repeat(conds, b, axis=0)
  return module.apply(params, x_tiled, c_tiled,
                      method="log_prob").reshape(j, b)


def _conditional_matrix(model: base.DensityModel, params, x: np.ndarray,
                        conditions: Conditions, rows: np.ndarray,
                        block_size: int) -> np.ndarray:
  """[len(rows), B] log p(x_b | condition of row j), blocks of rows."""
  out = []
  for block in _batches(len(rows), block_size):
    conds = gather(conditions, rows[block])
    if isinstance(conditions, Neighbourhoods):      # images, not labels
      conds = data_units.dequantise(conds)
    conds = shape_buckets.pad_rows(conds, block_size)
    out.append(np.asarray(_pairwise_log_probs(
        model.module, params, jnp.asarray(x), jnp.asarray(conds))
                         )[:block.stop - block.start])
  return np.concatenate(out)


# ---------------------------------------------------- NCL's exact route
class NCLStatistics(NamedTuple):
  """Per-neighbourhood Gaussians of NCL: mean and log-scale, [J, D] each."""
  mean: np.ndarray
  log_scale: np.ndarray


def ncl_statistics(model: protocols.LatentGaussians, params,
                   conditions: Neighbourhoods,
                   rows: np.ndarray, batch_size: int = 256) -> NCLStatistics:
  """(g_mu(q(N_j)), log g_sigma(q(N_j))) for the neighbourhoods `rows`.

  Every training image that some row uses goes through q once; the head
  then runs on each neighbourhood's k latents.

  Args:
    model: a model offering `protocols.LatentGaussians` (NCL).
    params: its parameters.
    conditions: the training neighbourhoods.
    rows: which rows of `conditions.indices`.
    batch_size: images (and neighbourhoods) per jitted call.

  Returns:
    `NCLStatistics` with [len(rows), D] arrays.
  """
  indices = np.asarray(conditions.indices)[rows]              # [J, k]
  used, members = np.unique(indices, return_inverse=True)
  images = data_units.dequantise(np.asarray(conditions.images)[used])
  size = min(batch_size, len(images))
  latents = np.concatenate([
      np.asarray(model.latents_and_logdet(params, jnp.asarray(
          shape_buckets.pad_rows(images[block], size)))[0])[:block.stop - block.start]
      for block in _batches(len(images), size)])
  neighbourhood_latents = latents[members.reshape(indices.shape)]
  means, log_scales = [], []
  size = min(batch_size, len(indices))
  for block in _batches(len(indices), size):
    mean, log_scale = model.neighbourhood_gaussians(params, jnp.asarray(
        shape_buckets.pad_rows(neighbourhood_latents[block], size)))
    num = block.stop - block.start
    means.append(np.asarray(mean).reshape(size, -1)[:num])
    log_scales.append(np.asarray(log_scale).reshape(size, -1)[:num])
  return NCLStatistics(np.concatenate(means), np.concatenate(log_scales))


@jax.jit
def _gaussian_matrix(z: Array, mean: Array, log_scale: Array) -> Array:
  """log N(z_b; mean_j, diag exp(2 log_scale_j)) for all pairs: [J, B].

  sum_d w (z - m)^2 with w = exp(-2 log_scale), expanded into matrix
  products at full float32 precision.
  """
  w = jnp.exp(-2.0 * log_scale)                                # [J, D]
  dot = functools.partial(jnp.dot, precision=lax.Precision.HIGHEST)
  quadratic = (dot(w, (z * z).T) - 2.0 * dot(w * mean, z.T) +
               jnp.sum(w * mean * mean, axis=1, keepdims=True))
  normaliser = jnp.sum(log_scale, axis=1) + z.shape[1] * _HALF_LOG_2PI
  return -0.5 * jnp.maximum(quadratic, 0.0) - normaliser[:, None]


def _ncl_matrix(model: protocols.LatentGaussians, params, x: np.ndarray,
                statistics: NCLStatistics, block_size: int) -> np.ndarray:
  """[J, B] log p(x_b | N_j) of NCL from q(x) and the statistics."""
  z, logdet = model.latents_and_logdet(params, jnp.asarray(x))
  z = z.reshape(z.shape[0], -1)
  out = []
  for block in _batches(len(statistics.mean), block_size):
    out.append(np.asarray(_gaussian_matrix(
        z, jnp.asarray(shape_buckets.pad_rows(statistics.mean[block], block_size)),
        jnp.asarray(shape_buckets.pad_rows(statistics.log_scale[block], block_size))
    ))[:block.stop - block.start])
  return np.concatenate(out) + np.asarray(logdet)[None]


# ----------------------------------------------------------- public API
def _log_mean_exp(log_probs: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
  """log sum_j w_j exp(log_probs[j]) over axis 0, in float64."""
  terms = np.asarray(log_probs, np.float64) + log_weights[:, None]
  top = terms.max(axis=0)
  return top + np.log(np.exp(terms - top).sum(axis=0))


def _chosen_rows(conditions: Conditions, num_neighbourhoods: Optional[int],
                 key: Optional[Array]) -> Tuple[np.ndarray, np.ndarray]:
  """(rows, log weights): every distinct row (exact) or M drawn (sampled)."""
  total = num_rows(conditions)
  if num_neighbourhoods is None:
    return unique_rows(conditions)
  if not 1 <= num_neighbourhoods <= total:
    raise ValueError(f"num_neighbourhoods={num_neighbourhoods}; expected 1 "
                     f"to the {total} training conditions")
  if key is None:
    raise ValueError("num_neighbourhoods is set but key is None; the M "
                     "rows are drawn at random")
  if isinstance(conditions, Neighbourhoods) and conditions.counts is not None:
    raise ValueError("the sampled estimate draws rows uniformly; pass one "
                     "row per training point (counts=None)")
  rows = np.asarray(jax.random.choice(key, total, (num_neighbourhoods,),
                                      replace=False))
  return rows, np.full(num_neighbourhoods, -np.log(num_neighbourhoods))


def _marginal_and_ratios(model: base.DensityModel, params, x: Array,
                         conditions: Conditions, num_neighbourhoods, key,
                         batch_size: int = 128, block_size: int = 32
                         ) -> Tuple[np.ndarray, np.ndarray]:
  """(log p(x) [B], r [R]) with r_j = (1/B) sum_b p(x_b | row j) / p(x_b).

  r are the per-row terms of the delta method (`sampled_bpd_stderr`).
  """
  x = np.asarray(x)
  model.check_x(x)                      # the units rule: `nbflows.data_units`
  x = data_units.dequantise(x)
  _check_conditions(model, conditions)
  rows, log_weights = _chosen_rows(conditions, num_neighbourhoods, key)
  batch_size = min(batch_size, len(x))
  block_size = min(block_size, len(rows))
  if protocols.offers(model, protocols.LatentGaussians):
    statistics = ncl_statistics(model, params, conditions, rows)
    matrix: Callable[[np.ndarray], np.ndarray] = functools.partial(
        _ncl_matrix, model, params, statistics=statistics,
        block_size=min(8 * block_size, len(rows)))
  else:
    matrix = functools.partial(_conditional_matrix, model, params,
                               conditions=conditions, rows=rows,
                               block_size=block_size)
  out, ratio_sums = [], np.zeros(len(rows))
  for block in _batches(len(x), batch_size):
    num = block.stop - block.start
    log_probs = np.asarray(matrix(shape_buckets.pad_rows(x[block], batch_size)),
                           np.float64)[:, :num]                 # [R, b]
    log_marginal = _log_mean_exp(log_probs, log_weights)
    ratio_sums += np.exp(log_probs - log_marginal[None]).sum(axis=1)
    out.append(log_marginal)
  return np.concatenate(out), ratio_sums / len(x)


def marginal_log_prob(model: base.DensityModel, params, x: Array,
                      conditions: Conditions, *,
                      num_neighbourhoods: Optional[int] = None,
                      key: Optional[Array] = None, batch_size: int = 128,
                      block_size: int = 32) -> np.ndarray:
  """log p(x) = log (1/N) sum_i p(x | N(x_i)) in nats (eq. 4), shape [B].

  Args:
    model: a conditional model ("neighbours" or "label" condition kind).
    params: its parameters.
    x: [B, *event] points in data units (uint8 + u); any B, evaluated
      `batch_size` at a time.
    conditions: `Neighbourhoods(train_images, indices[, counts])` for a
      neighbourhood model; the [N] training labels for a label model.
    num_neighbourhoods: M for the sampled estimate of App. B.3 (rows drawn
      uniformly without replacement, shared by all of `x`); None for the
      exact marginal over every row (App. B.5 for k-means rows).
    key: PRNG key for drawing the M rows (required when M is set).
    batch_size: points of `x` per pass.
    block_size: conditions per pass (the generic route runs block_size *
      batch_size conditional evaluations at once); NCL's route uses
      8 * block_size neighbourhoods per matrix product.

  Returns:
    float64 [B] log-densities in nats.

  Raises:
    ValueError: for an unconditional model, conditions that do not fit the
      model, integer `x` (not dequantised), M outside [1, N], or M without
      a key.
  """
  return _marginal_and_ratios(model, params, x, conditions,
                              num_neighbourhoods, key, batch_size,
                              block_size)[0]


def sampled_bpd_stderr(row_ratios: np.ndarray, num_total: int,
                       num_dims: int) -> float:
  """Standard error of the sampled mean marginal bits/dim, by the delta method.

  The sampled estimate of the mean over B test points is
  T = -(1/(B D ln 2)) sum_b log p^(x_b), p^(x_b) = (1/M) sum_j p(x_b | N_j),
  with the same M rows, drawn uniformly without replacement from N, for
  every x_b. Linearising log p^ around the exact p(x_b),
  T ~= T_exact - (1/(D ln 2)) (mean_j r_j - 1) with
  r_j = (1/B) sum_b p(x_b | N_j) / p(x_b), so

    s.e.(T) = sqrt((1 - M/N) s_r^2 / M) / (D ln 2),

  s_r^2 the sample variance (ddof 1) of the r_j, p(x_b) estimated by
  p^(x_b), and (1 - M/N) the finite-population correction (0 when M = N:
  the sum is then exact). It is the spread of the estimate over the draw of
  the M rows, the test points held fixed; the bias of order 1/M (Jensen:
  E log p^ <= log p) is not in it.

  Args:
    row_ratios: [M] the r_j (`TrainingSetMarginal.row_ratios`).
    num_total: N, the rows they were drawn from.
    num_dims: D.

  Returns:
    The standard error in bits/dim; NaN for M < 2.

  Example:
    >>> round(sampled_bpd_stderr(np.array([0.5, 1.5]), 4, 1), 4)
    0.5101
  """
  row_ratios = np.asarray(row_ratios, np.float64)
  m = len(row_ratios)
  if m < 2:
    return float("nan")
  variance = (1.0 - m / num_total) * np.var(row_ratios, ddof=1) / m
  # A spread in nats converts to bits/dim like -log p does, sign aside.
  return float(units.bits_per_dim(-np.sqrt(max(variance, 0.0)), num_dims))


class TrainingSetMarginal(NamedTuple):
  """`marginal_over_training_set`'s result.

  Attributes:
    log_prob: float64 [B] log p(x) in nats.
    method: the estimator: "exact", "sampled" or "unconditional".
    description: e.g. "exact over 1293 neighbourhoods" or "sampled, M=100
      of 1293 neighbourhoods".
    num_neighbourhoods: conditions summed: the distinct neighbourhoods (or
      labels) for "exact", M for "sampled"; None for "unconditional".
    num_total: N, the training rows eq. 4 averages over.
    row_ratios: "sampled": [M] the delta method's r_j
      (`sampled_bpd_stderr`); otherwise None.
  """
  log_prob: np.ndarray
  method: str
  description: str = ""
  num_neighbourhoods: Optional[int] = None
  num_total: Optional[int] = None
  row_ratios: Optional[np.ndarray] = None

  def stderr_bpd(self, num_dims: int) -> Optional[float]:
    """The sampled estimate's standard error in bits/dim; None if exact."""
    if self.row_ratios is None:
      return None
    return sampled_bpd_stderr(self.row_ratios, self.num_total, num_dims)


def exact_route(model: base.DensityModel, neighbour_index=None,
                exact: bool = False) -> bool:
  """Whether `marginal_over_training_set` sums eq. 4 exactly (see there)."""
  return (exact or model.condition_kind == "label" or
          protocols.offers(model, protocols.LatentGaussians) or
          getattr(neighbour_index, "kind", "knn") == "kmeans")


def marginal_over_training_set(model: base.DensityModel, params, x: Array,
                               train, neighbour_index=None, *,
                               num_neighbourhoods: int = 100,
                               key: Optional[Array] = None,
                               exact: bool = False,
                               batch_size: int = 128,
                               block_size: int = 32) -> TrainingSetMarginal:
  """Eq. 4 against a training split, by the cheapest faithful route.

    * label model (CC-RNVP): exact over the training labels;
    * NCL, or any neighbourhood model with a k-means index (App. B.5):
      exact over every training neighbourhood (k-means: over the clusters,
      each weighted by its count);
    * other neighbourhood models (NCT with kNN): sampled with
      M = `num_neighbourhoods` (App. B.3; at most N), or exact over all N
      with ``exact=True`` (N conditional passes per point).

  Args:
    model: a conditional model.
    params: its parameters.
    x: [B, *event] points in data units (e.g. the test split's "x" of
      `pipeline.eval_iterator`, as the conditional test bits/dim use).
    train: the training `sources.Split` (images, labels).
    neighbour_index: the `NeighbourIndex` the model was trained with
      (neighbourhood models only); its `neighbours["train"]` are the rows.
    num_neighbourhoods: M for the sampled route.
    key: PRNG key for the sampled route.
    exact: sum over every neighbourhood whatever the model.
    batch_size, block_size: as `marginal_log_prob`.

  Returns:
    `TrainingSetMarginal`; for the sampled route with `row_ratios`, so that
    `result.stderr_bpd(model.num_dims)` is its standard error.

  Example (in an evaluator, after training)::

    result = marginal_over_training_set(
        model, params, test_x, splits.train, index,
        num_neighbourhoods=config.eval.marginal_neighbourhoods,
        key=jax.random.key(config.seed))
    test_marginal_bpd = float(units.bits_per_dim(result.log_prob,
                                                 model.num_dims).mean())
  """
  conditions, noun = _training_conditions(model, train, neighbour_index)
  sizes = dict(batch_size=batch_size, block_size=block_size)
  if exact_route(model, neighbour_index, exact):
    return _estimate(model, params, x, conditions, noun, None, None, sizes)
  return _estimate(model, params, x, conditions, noun, num_neighbourhoods,
                   key, sizes)


def _training_conditions(model: base.DensityModel, train, neighbour_index
                         ) -> Tuple[Conditions, str]:
  """The N rows of eq. 4 (training labels or neighbourhoods), and a noun."""
  _refuse_context(model)
  if model.condition_kind == "label":
    return np.asarray(train.labels), "labels"
  if neighbour_index is None:
    raise ValueError(f"model {model.name!r} conditions on neighbourhoods; "
                     "pass the neighbour index it was trained with")
  kmeans = getattr(neighbour_index, "kind", "knn") == "kmeans"
  return (Neighbourhoods(train.images, neighbour_index.neighbours["train"]),
          "k-means neighbourhoods" if kmeans else "neighbourhoods")


def _estimate(model, params, x, conditions, noun, num_neighbourhoods, key,
              sizes) -> TrainingSetMarginal:
  """Exact (num_neighbourhoods None) or sampled with min(M, N) rows."""
  total = num_rows(conditions)
  if num_neighbourhoods is None:
    distinct = len(unique_rows(conditions)[0])
    log_prob, _ = _marginal_and_ratios(model, params, x, conditions, None,
                                       None, **sizes)
    return TrainingSetMarginal(log_prob, "exact",
                               f"exact over {distinct} {noun}", distinct,
                               total)
  m = min(num_neighbourhoods, total)
  log_prob, ratios = _marginal_and_ratios(model, params, x, conditions, m,
                                          key, **sizes)
  return TrainingSetMarginal(log_prob, "sampled",
                             f"sampled, M={m} of {total} {noun}", m, total,
                             ratios)


class SampledMinusExact(NamedTuple):
  """`sampled_minus_exact`'s result: the sampled estimator's bias measured.

  Attributes:
    sampled: the sampled estimate (M rows).
    exact: the exact sum over every training neighbourhood.
    difference_bpd: mean over the test points of sampled minus exact
      bits/dim (Jensen: positive in expectation).
    difference_stderr_bpd: its standard error (see `sampled_minus_exact`).
  """
  sampled: TrainingSetMarginal
  exact: TrainingSetMarginal
  difference_bpd: float
  difference_stderr_bpd: float


def sampled_minus_exact(model: base.DensityModel, params, x: Array, train,
                        neighbour_index, *, num_neighbourhoods: int,
                        key: Array, **kwargs) -> SampledMinusExact:
  """The sampled marginal (App. B.3) against the exact one on the same x.

  The difference d = T_sampled - T_exact of the mean bits/dim has two
  sources of spread, added in quadrature for its standard error:
  the draw of the M rows (`sampled_bpd_stderr`; T_exact does not depend
  on it) and the test points (std of the per-point differences / sqrt(B)).

  Args:
    model: a neighbourhood model.
    params: its parameters.
    x: [B, *event] test points in data units.
    train: the training split.
    neighbour_index: the index the model was trained with.
    num_neighbourhoods: M.
    key: PRNG key of the M rows (the same key gives
      `marginal_over_training_set`'s sampled rows).
    **kwargs: `batch_size`, `block_size`.

  Returns:
    `SampledMinusExact`.

  Raises:
    ValueError: for a model that does not condition on neighbourhoods.
  """
  if model.condition_kind != "neighbours":
    raise ValueError(f"model {model.name!r} has condition kind "
                     f"{model.condition_kind!r}; the sampled estimate "
                     "exists for neighbourhood models only")
  conditions, noun = _training_conditions(model, train, neighbour_index)
  exact = _estimate(model, params, x, conditions, noun, None, None, kwargs)
  sampled = _estimate(model, params, x, conditions, noun, num_neighbourhoods,
                      key, kwargs)
  differences = (units.bits_per_dim(sampled.log_prob, model.num_dims) -
                 units.bits_per_dim(exact.log_prob, model.num_dims))  # [B]
  over_points = (np.std(differences, ddof=1) / math.sqrt(len(differences))
                 if len(differences) > 1 else 0.0)
  over_rows = sampled.stderr_bpd(model.num_dims)
  return SampledMinusExact(sampled, exact, float(np.mean(differences)),
                           float(math.hypot(over_rows, over_points)))


def marginal_bits_per_dim(model: base.DensityModel, params, x: Array,
                          conditions: Conditions, **kwargs) -> np.ndarray:
  """`marginal_log_prob` in bits per dimension of the discrete data, [B]."""
  return units.bits_per_dim(
      marginal_log_prob(model, params, x, conditions, **kwargs),
      model.num_dims)
