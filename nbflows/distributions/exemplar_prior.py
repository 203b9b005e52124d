"""The exemplar prior of the Exemplar VAE (paper 3, eq. 10, 12, 14, 15).

Each exemplar x_j contributes an isotropic Gaussian centred on its latent
mean, with one shared, learned scalar variance sigma^2 (eq. 12):

  r(z | {x_j}_{j=1}^M) = 1/M sum_j N(z; mu(x_j), sigma^2 I)            (eq. 10)
  log r = logsumexp_j(-||z - mu_j||^2 / (2 sigma^2)) - log C - log M    (eq. 14)
  log C = d_z log(sqrt(2 pi) sigma)

The squared distances between a batch of codes and all exemplar means come
from one matrix product, as the paper suggests. Training regularises the
prior by leaving a point's own exemplar out (eq. 4) and by subsampling M of
the N exemplars (eq. 5); `leave_one_out_mask` and `subsample` build those.
`knn_log_density` is the cheaper bound of eq. 15 over k nearest exemplars,
whose indices come from an `ExemplarCache` of latent means (Alg. 1), a host
object searched with the library's exact kNN between jitted steps.
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from nbflows.neighbours import knn

Array = jax.Array


def _check_codes(z: Array, means: Array, means_name: str) -> None:
  if z.ndim < 2 or z.shape[-1] != means.shape[-1]:
    raise ValueError(f"z has shape {tuple(z.shape)} and {means_name} has "
                     f"shape {tuple(means.shape)}; expected z of shape "
                     f"[..., B, {means.shape[-1]}] matching the latent size")


def _log_normaliser(log_variance: Array, latent_dim: int) -> Array:
  """log C = d/2 log(2 pi sigma^2) of eq. 14."""
  return 0.5 * latent_dim * (math.log(2.0 * math.pi) + log_variance)


def squared_distances(z: Array, means: Array) -> Array:
  """||z_b - mu_j||^2 for all pairs by one matrix product.

  Args:
    z: [..., d] codes.
    means: [M, d] exemplar means.

  Returns:
    [..., M] non-negative squared distances.
  """
  cross = jnp.einsum("...d,md->...m", z, means)
  sq = (jnp.sum(z * z, axis=-1, keepdims=True) - 2.0 * cross
        + jnp.sum(means * means, axis=-1))
  return jnp.maximum(sq, 0.0)


def log_density(z: Array, means: Array, log_variance: Array,
                mask: Optional[Array] = None) -> Array:
  """log r(z | X) of eq. 14 over the exemplars that `mask` keeps.

  Args:
    z: [..., B, d] latent codes (leading axes, e.g. importance samples,
      broadcast).
    means: [M, d] latent means mu(x_j) of the exemplars.
    log_variance: scalar log sigma^2 shared by all components (eq. 12).
    mask: optional boolean [B, M]; False removes exemplar j from row b's
      mixture (leave-one-out, eq. 4) and the normaliser counts only the kept
      ones, so each row stays a normalised mixture. Every row must keep at
      least one exemplar.

  Returns:
    [..., B] log-densities in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.zeros((1, 2)); means = jnp.zeros((3, 2))
    >>> round(float(log_density(z, means, jnp.array(0.0))[0]), 4)  # N(0; 0, I)
    -1.8379
  """
  _check_codes(z, means, "means")
  if means.ndim != 2:
    raise ValueError(f"means has shape {tuple(means.shape)}; expected "
                     "[num_exemplars, latent_dim]")
  logits = -0.5 * squared_distances(z, means) * jnp.exp(-log_variance)
  if mask is None:
    log_count = jnp.log(float(means.shape[0]))
  else:
    if tuple(mask.shape) != (z.shape[-2], means.shape[0]):
      raise ValueError(f"mask has shape {tuple(mask.shape)}; expected "
                       f"[{z.shape[-2]}, {means.shape[0]}] (batch, exemplars)")
    logits = jnp.where(mask, logits, -jnp.inf)
    log_count = jnp.log(jnp.sum(mask, axis=-1).astype(z.dtype))
  return (jax.nn.logsumexp(logits, axis=-1) - log_count
          - _log_normaliser(log_variance, z.shape[-1]))


def leave_one_out_mask(query_indices: Array, exemplar_indices: Array) -> Array:
  """[B, M] mask that removes each training point's own exemplar (eq. 4).

  Args:
    query_indices: [B] positions of the batch in the training split.
    exemplar_indices: [M] positions of the exemplars in the training split.

  Returns:
    Boolean [B, M], False exactly where the exemplar is the point itself.
  """
  return query_indices[:, None] != exemplar_indices[None, :]


def subsample(key: Array, num_exemplars: int, num_kept: int) -> Array:
  """M exemplar indices drawn uniformly without replacement (eq. 5).

  One subset serves a whole batch; with `leave_one_out_mask` each point then
  sees the subset minus itself, a uniformly random subset of the other N - 1
  exemplars (of size M or M - 1), as Pi_M^{N,i} of eq. 5 prescribes.

  Args:
    key: a PRNG key.
    num_exemplars: N, the size of the training split.
    num_kept: M, with 2 <= M <= N.

  Returns:
    int32 [M] sorted indices into the training split.
  """
  if not 2 <= num_kept <= num_exemplars:
    raise ValueError(f"num_kept={num_kept}; expected 2 <= M <= N = "
                     f"{num_exemplars}")
  chosen = jax.random.choice(key, num_exemplars, (num_kept,), replace=False)
  return jnp.sort(chosen).astype(jnp.int32)


def knn_log_density(z: Array, neighbour_means: Array, log_variance: Array,
                    num_components: Array, mask: Optional[Array] = None
                    ) -> Array:
  """The k-nearest-exemplar lower bound on log r(z | X) (eq. 15).

    log r(z) >= log sum_{j in kNN} 1/M N(z; mu_j, sigma^2 I)

  The sum runs over each row's own k neighbours but keeps the full mixture's
  weight 1/M, so dropping the other M - k (non-negative) terms can only lower
  it.

  Args:
    z: [B, d] latent codes.
    neighbour_means: [B, k, d] means of each row's nearest exemplars.
    log_variance: scalar log sigma^2.
    num_components: M, the number of components of the full mixture (scalar
      or [B]).
    mask: optional boolean [B, k]; False drops a neighbour (e.g. one outside
      the subsample or the point itself).

  Returns:
    [B] lower bounds in nats.
  """
  _check_codes(z, neighbour_means, "neighbour_means")
  if neighbour_means.ndim != 3 or neighbour_means.shape[0] != z.shape[0]:
    raise ValueError(f"neighbour_means has shape "
                     f"{tuple(neighbour_means.shape)}; expected "
                     f"[{z.shape[0]}, k, {z.shape[-1]}]")
  sq = jnp.sum((z[:, None, :] - neighbour_means) ** 2, axis=-1)  # [B, k]
  logits = -0.5 * sq * jnp.exp(-log_variance)
  if mask is not None:
    logits = jnp.where(mask, logits, -jnp.inf)
  return (jax.nn.logsumexp(logits, axis=-1)
          - jnp.log(jnp.asarray(num_components, z.dtype))
          - _log_normaliser(log_variance, z.shape[-1]))


class ExemplarCache:
  """Latent means of every training point, refreshed as they are encoded.

  The cache of Alg. 1: `means[i]` is mu(x_i) from the last time x_i passed
  through the encoder (as a batch point or as a neighbour). It lives on the
  host, outside the jitted gradient step, and is searched with the library's
  exact neighbour search (`nbflows.neighbours.knn.knn`).

  Args:
    means: [N, d] initial latent means of the training split.

  Example:
    >>> import numpy as np
    >>> cache = ExemplarCache(np.array([[0.], [1.], [5.]]))
    >>> cache.neighbours(np.array([[4.]]), 2).tolist()
    [[2, 1]]
    >>> cache.update(np.array([0]), np.array([[4.5]]))
    >>> cache.neighbours(np.array([[4.]]), 2).tolist()
    [[0, 2]]
  """

  def __init__(self, means: np.ndarray):
    means = np.array(means, np.float32)
    if means.ndim != 2 or means.shape[0] < 1:
      raise ValueError(f"means has shape {means.shape}; expected "
                       "[num_exemplars >= 1, latent_dim]")
    self.means = means

  def update(self, indices: np.ndarray, new_means: np.ndarray) -> None:
    """Sets rows `indices` [n] to `new_means` [n, d] (Alg. 1, Cache.update)."""
    indices = np.asarray(indices).reshape(-1)
    new_means = np.asarray(new_means, np.float32).reshape(
        len(indices), self.means.shape[1])
    self.means[indices] = new_means

  def neighbours(self, query: np.ndarray, k: int,
                 candidates: Optional[np.ndarray] = None) -> np.ndarray:
    """The k cached means nearest each query, by exact search.

    Args:
      query: [B, d] latent means.
      k: the number of neighbours.
      candidates: optional [M] indices of the exemplars to search among
        (the subsample pi of eq. 5, so that the kNN lie inside pi); default
        all.

    Returns:
      int32 [B, k] indices into the training split, nearest first.

    Raises:
      ValueError: if k is not in [1, number of exemplars searched].
    """
    means = self.means if candidates is None else self.means[candidates]
    if not 1 <= k <= means.shape[0]:
      raise ValueError(f"k={k}; expected 1 <= k <= {means.shape[0]} (the "
                       "number of exemplars searched)")
    nearest, _ = knn.knn(means, k, queries=np.asarray(query, np.float32),
                         progress=False)
    return (nearest if candidates is None
            else np.asarray(candidates)[nearest]).astype(np.int32)
