"""Principal component analysis, keeping a fraction of the variance.

Paper 1, App. B.2: "we use PCA to reduce the dimension. We let the principal
components explain 99% of the variance on the training set. Then we search k
nearest neighbors based on the PCA coefficients."

With the training points x_1..x_N (flattened) and their mean m, the
covariance is C = (1/N) sum_n (x_n - m)(x_n - m)^T = V diag(lambda) V^T with
lambda_1 >= lambda_2 >= ... The kept components are the first P columns of
V, P the smallest number with

  sum_{p <= P} lambda_p >= fraction * trace(C),

and a point's features are (x - m) V[:, :P].

Memory is O(D^2 + block D) whatever N, so CelebA at 64 x 64 x 3 (N = 202,599,
D = 12,288) fits in a few GB beside its uint8 images:

  * `covariance` reads the data (uint8 images are fine) one block of rows at
    a time, converting only that block to float32: the mean in a first pass
    (float64 sums), then the centred products on JAX's default device,
    added up in float32 for at most `flush_rows` rows and then into a
    float64 D x D accumulator.
  * `from_covariance` diagonalises C with LAPACK's dsyevr (float64), asking
    only for the eigenvalues above tau = (1 - fraction) trace(C) / (2 D).
    That is exact, not an approximation: the eigenvalues below tau sum to
    less than D tau = (1 - fraction) trace(C) / 2, so those above it explain
    more than `fraction` and the P components are among them. Skipping the
    other eigenvectors makes it 2.3x faster than the full `eigh` at
    D = 6,144 (18 s against 42 s; PERFORMANCE.md).
  * `transform` projects a block at a time into float32 [N, P].

Example:
  >>> import numpy as np
  >>> from nbflows.neighbours import pca
  >>> x = np.random.default_rng(0).normal(size=(500, 3)) * [10.0, 1.0, 0.1]
  >>> fitted = pca.fit(x, 0.95)
  >>> fitted.components.shape, bool(pca.kept_fraction(fitted) >= 0.95)
  ((3, 1), True)
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg


class PCA(NamedTuple):
  """A fitted PCA.

  Attributes:
    mean: float32 [D], the training mean.
    components: float32 [D, P], orthonormal principal directions, by
      decreasing variance.
    variances: float32 [P], the training variance along each component.
    total_variance: the trace of the training covariance.
  """
  mean: np.ndarray
  components: np.ndarray
  variances: np.ndarray
  total_variance: float


def fit(x: np.ndarray, fraction: float = 0.99, block_size: int = 4096) -> PCA:
  """Fits a PCA keeping at least `fraction` of the variance of `x`.

  Args:
    x: [N, ...] training points, any numeric dtype (uint8 images are fine,
      and are never converted whole); trailing axes are flattened.
    fraction: the fraction of the total variance the kept components must
      explain, in (0, 1].
    block_size: rows per block while accumulating the covariance.

  Returns:
    The fitted `PCA`; `kept_fraction(result) >= fraction`.

  With fewer rows than dimensions (N < D) the same PCA comes from the
  N x N Gram matrix (`from_gram`), in O(N^2 D) instead of the O(D^3) of the
  D x D covariance: for 200 CelebA images of 12,288 dimensions, a second
  instead of minutes.

  Raises:
    ValueError: if `fraction` is outside (0, 1], or `x` has fewer than 2 rows
      or no variance.
  """
  _check_fraction(fraction)
  x = np.reshape(x, (len(x), -1))
  if len(x) < x.shape[1]:
    return from_gram(x, fraction)
  return from_covariance(*covariance(x, block_size), fraction)


def from_gram(x: np.ndarray, fraction: float = 0.99) -> PCA:
  """The PCA of N < D points through their N x N Gram matrix.

  With X the centred [N, D] points, G = X X^T / N has the nonzero
  eigenvalues of C = X^T X / N, and each eigenvector u of G gives the
  component v = X^T u / sqrt(N lambda) of C (C v = lambda v, |v| = 1).

  Args:
    x: [N, D] points, N < D (held as float64 whole: small N only).
    fraction: the fraction of the variance to keep, in (0, 1].

  Returns:
    The same `PCA` as `from_covariance` (components up to sign).

  Raises:
    ValueError: if `x` has fewer than 2 rows or no variance.
  """
  _check_fraction(fraction)
  n = len(x)
  if n < 2:
    raise ValueError(f"x has {n} rows; PCA needs at least 2")
  x = np.reshape(x, (n, -1)).astype(np.float64)
  mean = x.mean(axis=0)
  centred = x - mean                                          # [N, D]
  total_variance = float(np.sum(centred ** 2) / n)
  if total_variance <= 0.0:
    raise ValueError("x has no variance; every row is the same")
  eigenvalues, vectors = np.linalg.eigh(centred @ centred.T / n)
  eigenvalues = np.maximum(eigenvalues[::-1], 0.0)            # descending
  explained = np.cumsum(eigenvalues) / total_variance
  num_kept = min(int(np.sum(eigenvalues > 1e-12 * total_variance)),
                 int(np.searchsorted(explained, fraction)) + 1)
  components = (centred.T @ vectors[:, ::-1][:, :num_kept] /
                np.sqrt(n * eigenvalues[:num_kept]))
  return PCA(mean=mean.astype(np.float32),
             components=np.ascontiguousarray(components, np.float32),
             variances=eigenvalues[:num_kept].astype(np.float32),
             total_variance=total_variance)


def covariance(x: np.ndarray, block_size: int = 4096,
               flush_rows: int = 65536) -> Tuple[np.ndarray, np.ndarray]:
  """The mean and covariance of the rows of `x`, a block at a time.

  Args:
    x: [N, ...] points, any numeric dtype; trailing axes are flattened.
    block_size: rows converted to float32 at a time.
    flush_rows: rows whose products are summed in float32 (on JAX's default
      device) before being added to the float64 result.

  Returns:
    `(mean, cov)`: float64 [D] and float64 [D, D], C = (1/N) sum_n
    (x_n - m)(x_n - m)^T.

  Raises:
    ValueError: if `x` has fewer than 2 rows.
  """
  x = np.reshape(x, (len(x), -1))                # a view for contiguous x
  n, d = x.shape
  if n < 2:
    raise ValueError(f"x has {n} rows; PCA needs at least 2")
  block_size = min(block_size, n)
  sums = np.zeros(d, np.float64)
  for start in range(0, n, block_size):
    sums += np.sum(x[start:start + block_size], axis=0, dtype=np.float64)
  mean = sums / n
  # Padding rows equal the float32 mean, so they add exactly nothing. (That
  # mean is off by at most 2^-24 |m|: a negligible r r^T in C.)
  mean32 = mean.astype(np.float32)
  on_device = jax.device_put(mean32)
  per_flush = max(1, flush_rows // block_size)
  cov = np.zeros((d, d), np.float64)
  for i, (block, size) in enumerate(_blocks(x, block_size)):
    block[size:] = mean32
    if i % per_flush == 0:
      partial = jnp.zeros((d, d), jnp.float32)
    # One product in flight while the next block is converted: without the
    # wait, dispatch runs ahead and every queued block stays in memory.
    partial = _add_outer_products(partial.block_until_ready(), block,
                                  on_device)
    if (i + 1) % per_flush == 0 or (i + 1) * block_size >= n:
      cov += np.asarray(partial)
  cov /= n
  return mean, cov


def from_covariance(mean: np.ndarray, cov: np.ndarray,
                    fraction: float = 0.99) -> PCA:
  """The PCA of a covariance matrix, keeping `fraction` of its variance.

  Args:
    mean: [D], the mean of the data.
    cov: float64 [D, D], the covariance (overwritten: dsyevr works in place).
    fraction: the fraction of trace(cov) the kept components must explain.

  Returns:
    The `PCA`, with the fewest components that explain `fraction`.

  Raises:
    ValueError: if `fraction` is outside (0, 1] or `cov` has no variance.
  """
  _check_fraction(fraction)
  d = len(cov)
  total_variance = float(np.trace(cov))
  if total_variance <= 0.0:
    raise ValueError("x has no variance; every row is the same")
  # Eigenvalues <= tau sum to at most D tau, half the variance PCA may drop.
  tau = 0.5 * (1.0 - fraction) * total_variance / d
  subset = None if fraction >= 1.0 else (tau, np.inf)
  # cov.T: the same symmetric matrix, Fortran-ordered, so LAPACK needs no copy.
  eigenvalues, eigenvectors = scipy.linalg.eigh(
      cov.T, subset_by_value=subset, driver="evr", overwrite_a=True,
      check_finite=False)
  eigenvalues = np.maximum(eigenvalues[::-1], 0.0)             # descending
  explained = np.cumsum(eigenvalues) / total_variance
  # Short of `fraction` only by rounding, far below the margin tau leaves.
  num_kept = min(len(eigenvalues),
                 int(np.searchsorted(explained, fraction)) + 1)
  return PCA(mean=np.asarray(mean, np.float32),
             components=np.ascontiguousarray(
                 eigenvectors[:, ::-1][:, :num_kept], np.float32),
             variances=eigenvalues[:num_kept].astype(np.float32),
             total_variance=total_variance)


def _check_fraction(fraction: float) -> None:
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction={fraction}; expected a fraction of the "
                     "variance in (0, 1]")


def transform(pca: PCA, x: np.ndarray, block_size: int = 4096) -> np.ndarray:
  """The PCA features (x - mean) @ components, float32 [N, P]."""
  x = np.reshape(x, (len(x), -1))
  if x.shape[1] != pca.mean.shape[0]:
    raise ValueError(f"x has {x.shape[1]} dimensions per row; this PCA was "
                     f"fitted to {pca.mean.shape[0]}")
  features = np.zeros((len(x), pca.components.shape[1]), np.float32)
  mean, components = jax.device_put((pca.mean, pca.components))
  start = 0
  for block, size in _blocks(x, min(block_size, max(len(x), 1))):
    features[start:start + size] = np.asarray(
        _project(block, mean, components))[:size]
    start += size
  return features


def kept_fraction(pca: PCA) -> float:
  """The fraction of the training variance the kept components explain."""
  return float(np.sum(pca.variances, dtype=np.float64) / pca.total_variance)


def _blocks(x: np.ndarray, block_size: int):
  """(float32 block [block_size, D], number of real rows), zero-padded."""
  for start in range(0, len(x), block_size):
    part = x[start:start + block_size]
    block = np.zeros((block_size, x.shape[1]), np.float32)
    block[:len(part)] = part
    yield block, len(part)


@functools.partial(jax.jit, donate_argnums=0)
def _add_outer_products(cov, block, mean):
  centred = block - mean
  return cov + centred.T @ centred


@jax.jit
def _project(block, mean, components):
  return (block - mean) @ components
