"""Kernel density estimation, the non-parametric anchor of paper 1 (eq. 1-2).

  p(x) = (1/N) sum_i N(x | x_i, sigma^2 I)                          (eq. 2)

  log p(x) = logsumexp_i( -||x - x_i||^2 / (2 sigma^2) )
             - log N - (D/2) log(2 pi) - D log sigma

in data units (x = uint8 + u, u ~ U[0, 1), as every nbflows model), so
``-log p / (D ln 2)`` is bits/dim of the discrete data, comparable with the
flows. The centres x_i are the training images at the middle of their
quantisation bins (uint8 + 0.5). The log-sum-exp over the N centres runs in
blocks of `block_size` under `jax.lax.map`, so memory is O(B * block_size)
whatever N. The bandwidth sigma is chosen from a log-spaced grid to maximise
the validation log-likelihood (`fit_bandwidth`); a training point is scored
leave-one-out (its own kernel left out, N - 1 in the normaliser).

Sampling (paper 1, Sec. 1): pick a training point uniformly, add
N(0, (temperature * sigma)^2 I) noise.

Squared distances use ||x||^2 - 2 x.c + ||c||^2 on data centred at the
training mean, with the matrix product at HIGHEST precision (GPUs otherwise
use TF32, whose 10-bit mantissa would ruin distances of 784-pixel images).

Example:
  >>> import jax, jax.numpy as jnp
  >>> model = KernelDensityModel(event_shape=(2,), sigma=0.5)
  >>> params = model.init(jax.random.key(0), {"x": jnp.zeros((1, 2))})
  >>> log_p = model.log_prob(params, jnp.zeros((1, 2)))   # one centre at 0
  >>> round(float(log_p[0]), 4)                     # log N(0 | 0, 0.25 I)
  -0.4516
"""
from __future__ import annotations

import functools
import math
from typing import Mapping, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nbflows import units
from nbflows.data import sources
from nbflows.models import base

Array = jax.Array
Params = Mapping[str, Array]     # {"train": [N, *event], "log_sigma": []}
DEFAULT_BLOCK_SIZE = 1024


def to_centres(images: Array) -> Array:
  """Kernel centres in data units: integer images + 0.5; floats unchanged."""
  images = jnp.asarray(images)
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) + 0.5
  return images.astype(jnp.float32)


def _log_kernel_sums(x: Array, centres: Array, log_sigmas: Array,
                     exclude: Array, block_size: int) -> Array:
  """logsumexp_i -||x_b - c_i||^2 / (2 sigma_g^2) over i != exclude[b].

  Args:
    x: [B, D] points.
    centres: [N, D] kernel centres.
    log_sigmas: [G] log bandwidths, all evaluated from one distance pass.
    exclude: [B] index of the centre to leave out of row b (-1: none).
    block_size: centres per block.

  Returns:
    [G, B] log-sum-exps (-inf when every centre is excluded).
  """
  offset = jnp.mean(centres, axis=0)
  x = x - offset
  centres = centres - offset
  num_centres, dims = centres.shape
  block_size = min(block_size, num_centres)
  num_blocks = -(-num_centres // block_size)
  padding = num_blocks * block_size - num_centres
  blocks = jnp.pad(centres, ((0, padding), (0, 0))).reshape(
      num_blocks, block_size, dims)
  indices = jnp.arange(num_blocks * block_size).reshape(num_blocks, block_size)
  x_sq = jnp.sum(x ** 2, axis=-1)                                  # [B]
  inv_two_var = 0.5 * jnp.exp(-2.0 * log_sigmas)                  # [G]

  def block(inputs: Tuple[Array, Array]) -> Array:
    block_centres, block_indices = inputs       # [b, D], [b]
    cross = jnp.dot(x, block_centres.T, precision=jax.lax.Precision.HIGHEST)
    sq_dist = jnp.maximum(
        x_sq[:, None] - 2.0 * cross + jnp.sum(block_centres ** 2, -1)[None],
        0.0)                                                       # [B, b]
    valid = ((block_indices < num_centres)[None, :] &
             (block_indices[None, :] != exclude[:, None]))         # [B, b]
    log_kernel = -sq_dist[None] * inv_two_var[:, None, None]       # [G, B, b]
    log_kernel = jnp.where(valid[None], log_kernel, -jnp.inf)
    return jax.nn.logsumexp(log_kernel, axis=-1)                   # [G, B]

  per_block = jax.lax.map(block, (blocks, indices))             # [nb, G, B]
  return jax.nn.logsumexp(per_block, axis=0)


def _normalised(log_sums: Array, log_sigmas: Array, num_centres: Array,
                dims: int) -> Array:
  """Adds eq. 2's constants: -log N - D/2 log(2 pi) - D log sigma."""
  return (log_sums - jnp.log(num_centres) - 0.5 * dims * math.log(2 * math.pi)
          - dims * log_sigmas[:, None])


@functools.partial(jax.jit, static_argnames=("block_size",))
def kde_log_prob(x: Array, centres: Array, log_sigma: Array,
                 exclude: Optional[Array] = None,
                 block_size: int = DEFAULT_BLOCK_SIZE) -> Array:
  """log p(x) of eq. 2 in nats, optionally leaving one centre out per row.

  Jitted (one compilation per shape and `block_size`).

  Args:
    x: [B, *event] points in data units.
    centres: [N, *event] kernel centres (training points) in data units.
    log_sigma: scalar log bandwidth.
    exclude: optional [B] int index of the centre to leave out of each row
      (-1: none); the normaliser is then N - 1 for that row.
    block_size: centres per block of the log-sum-exp.

  Returns:
    [B] log-densities.

  Raises:
    ValueError: if the event shapes of `x` and `centres` differ.
  """
  if tuple(x.shape[1:]) != tuple(centres.shape[1:]):
    raise ValueError(f"x has shape {tuple(x.shape)} and centres "
                     f"{tuple(centres.shape)}; expected the same event shape")
  batch, num_centres = x.shape[0], centres.shape[0]
  x = x.reshape(batch, -1).astype(jnp.float32)
  centres = centres.reshape(num_centres, -1).astype(jnp.float32)
  if exclude is None:
    exclude = jnp.full((batch,), -1, jnp.int32)
  log_sigmas = jnp.reshape(log_sigma, (1,)).astype(jnp.float32)
  log_sums = _log_kernel_sums(x, centres, log_sigmas, exclude, block_size)
  kept = num_centres - ((exclude >= 0) & (exclude < num_centres))
  return _normalised(log_sums, log_sigmas, kept, x.shape[1])[0]


@functools.partial(jax.jit, static_argnames=("block_size",))
def leave_one_out_log_prob(centres: Array, log_sigma: Array, indices: Array,
                           block_size: int = DEFAULT_BLOCK_SIZE) -> Array:
  """log p(x_j) with x_j = centres[j] left out of its own sum, for j in indices.

  Args:
    centres: [N, *event] training points.
    log_sigma: scalar log bandwidth.
    indices: [B] indices into `centres`.
    block_size: centres per block.

  Returns:
    [B] leave-one-out log-densities (1 / (N - 1) sum over i != j).
  """
  indices = jnp.asarray(indices, jnp.int32)
  return kde_log_prob(centres[indices], centres, log_sigma, exclude=indices,
                      block_size=block_size)


def default_bandwidth_grid(centres: Array, num: int = 32) -> np.ndarray:
  """Log-spaced bandwidths from s / 100 to 2 s, s the per-dimension std."""
  centres = np.asarray(centres, np.float64).reshape(len(centres), -1)
  scale = float(np.sqrt(np.mean(np.var(centres, axis=0))))
  if not scale > 0:
    raise ValueError("centres are all equal; pass an explicit bandwidth grid")
  return np.geomspace(scale / 100, 2 * scale, num)


class BandwidthFit(NamedTuple):
  """The chosen bandwidth and the validation score of every candidate.

  Attributes:
    sigma: the bandwidth of the grid with the highest validation score.
    grid: [G] candidate bandwidths.
    validation_log_prob: [G] mean validation log p(x) in nats per example.
  """
  sigma: float
  grid: np.ndarray
  validation_log_prob: np.ndarray


@functools.partial(jax.jit, static_argnames=("block_size",))
def _grid_log_prob(x: Array, centres: Array, log_sigmas: Array,
                   block_size: int) -> Array:
  exclude = jnp.full((x.shape[0],), -1, jnp.int32)
  log_sums = _log_kernel_sums(x, centres, log_sigmas, exclude, block_size)
  return _normalised(log_sums, log_sigmas, centres.shape[0], x.shape[1])


def fit_bandwidth(train: Array, validation: Array,
                  grid: Optional[Sequence[float]] = None,
                  batch_size: int = 256,
                  block_size: int = DEFAULT_BLOCK_SIZE) -> BandwidthFit:
  """Chooses sigma on the grid maximising the mean validation log p(x).

  Args:
    train: [N, *event] kernel centres in data units (see `to_centres`).
    validation: [M, *event] validation points in data units.
    grid: candidate bandwidths (> 0); default `default_bandwidth_grid(train)`.
    batch_size: validation points per jitted call.
    block_size: centres per block.

  Returns:
    `BandwidthFit(sigma, grid, validation_log_prob)`.

  Raises:
    ValueError: for mismatched event shapes or a non-positive bandwidth.
  """
  if tuple(train.shape[1:]) != tuple(validation.shape[1:]):
    raise ValueError(f"train has shape {tuple(train.shape)} and validation "
                     f"{tuple(validation.shape)}; expected the same event "
                     "shape")
  grid = np.asarray(default_bandwidth_grid(train) if grid is None else grid,
                    np.float64)
  if grid.ndim != 1 or grid.size == 0 or not (grid > 0).all():
    raise ValueError(f"grid={grid}; expected a non-empty list of bandwidths "
                     "> 0")
  centres = jnp.asarray(train, jnp.float32).reshape(len(train), -1)
  points = np.asarray(validation, np.float32).reshape(len(validation), -1)
  log_sigmas = jnp.asarray(np.log(grid), jnp.float32)
  total = np.zeros(grid.size)
  for start in range(0, len(points), batch_size):
    log_p = _grid_log_prob(jnp.asarray(points[start:start + batch_size]),
                           centres, log_sigmas, block_size)     # [G, b]
    total += np.asarray(log_p, np.float64).sum(axis=1)
  mean = total / len(points)
  return BandwidthFit(float(grid[np.argmax(mean)]), grid, mean)


class KernelDensityModel(base.DensityModel):
  """Eq. 2 as a density model, params {"train", "log_sigma"}.

  There is no network (``module`` is None) and no bijection
  (`protocols.Density` and `Fitted`, not `Bijective`). `init(key, {"x":
  train})` takes the whole training set as the centres with bandwidth
  `sigma`; `fit` also chooses the bandwidth on validation data. `loss` /
  `eval_metrics` / `log_prob` / `sample` behave as for a flow.

  Attributes:
    sigma: bandwidth `init` uses.
    block_size: centres per block of the log-sum-exp.
  """

  def __init__(self, event_shape: Sequence[int], sigma: float = 1.0,
               block_size: int = DEFAULT_BLOCK_SIZE, name: str = "kde",
               num_levels: Optional[int] = None):
    if not sigma > 0:
      raise ValueError(f"sigma={sigma}; expected > 0")
    if block_size < 1:
      raise ValueError(f"block_size={block_size}; expected >= 1")
    super().__init__(None, event_shape, "none", name, num_levels=num_levels)
    self.sigma = sigma
    self.block_size = block_size

  def init(self, key: Array, batch: Mapping[str, Array]) -> Params:
    """{"train": to_centres(batch["x"]), "log_sigma": log(self.sigma)}."""
    del key  # deterministic
    centres = to_centres(batch["x"])
    self.check_x(centres, "batch['x']")
    return {"train": centres, "log_sigma": jnp.log(jnp.float32(self.sigma))}

  def fit(self, key: Array, train: Array, validation: Array,
          grid: Optional[Sequence[float]] = None
          ) -> Tuple[Params, BandwidthFit]:
    """Centres on `train`, bandwidth chosen on `validation` (`fit_bandwidth`).

    Args:
      key: dequantises integer `validation` images (uint8 + U[0, 1)).
      train: [N, *event] training images (integer) or data-unit centres.
      validation: [M, *event] integer images or data-unit points.
      grid: candidate bandwidths; default `default_bandwidth_grid`.

    Returns:
      (params, the `BandwidthFit`).
    """
    params = self.init(key, {"x": train})
    validation = jnp.asarray(validation)
    if jnp.issubdtype(validation.dtype, jnp.integer):
      validation = validation + jax.random.uniform(key, validation.shape)
    self.check_x(validation, "validation")
    fit = fit_bandwidth(params["train"], validation, grid,
                        block_size=self.block_size)
    return {**params, "log_sigma": jnp.log(jnp.float32(fit.sigma))}, fit

  def leave_one_out_log_prob(self, params: Params, indices: Array) -> Array:
    """[B] log p of training points params["train"][indices], each left out."""
    return leave_one_out_log_prob(params["train"], params["log_sigma"],
                                  indices, self.block_size)

  def bits_per_dim(self, params: Params, x: Array,
                   cond: Optional[Array] = None) -> Array:
    """-log p(x) / (D ln 2), shape [B] (traceable, no validation)."""
    del cond
    log_prob = kde_log_prob(x, params["train"], params["log_sigma"],
                            block_size=self.block_size)
    return units.bits_per_dim(log_prob, self.num_dims)

  @functools.cached_property
  def _log_prob(self):
    return lambda p, x, c: kde_log_prob(x, p["train"], p["log_sigma"],
                                        block_size=self.block_size)

  @functools.cached_property
  def _sample(self):

    def sample(params, key, cond, num, temperature):
      del cond
      pick_key, noise_key = jax.random.split(key)
      centres = params["train"]
      index = jax.random.randint(pick_key, (num,), 0, centres.shape[0])
      noise = jax.random.normal(noise_key, (num,) + centres.shape[1:])
      return centres[index] + temperature * jnp.exp(params["log_sigma"]) * noise

    return jax.jit(sample, static_argnums=(3,))


def build_kde(config: ml_collections.ConfigDict) -> KernelDensityModel:
  """The KDE for `config.dataset` (shape and levels from `dataset_info`).

  Its params come from `model.fit(key, train, validation)`, not from
  gradient steps; `python -m train.main --config configs/kde_digits.py`
  fits it on the whole training split (`train.loop.fitting`).
  """
  info = sources.dataset_info(config.dataset)
  return KernelDensityModel(info.event_shape, name=config.model,
                            num_levels=info.num_levels)
