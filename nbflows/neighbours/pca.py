"""Principal component analysis in JAX, keeping a fraction of the variance.

Paper 1, App. B.2: "we use PCA to reduce the dimension. We let the principal
components explain 99% of the variance on the training set. Then we search k
nearest neighbors based on the PCA coefficients."

With the training points x_1..x_N (flattened) and their mean m, the
covariance is C = (1/N) sum_n (x_n - m)(x_n - m)^T = V diag(lambda) V^T with
lambda_1 >= lambda_2 >= ... The kept components are the first P columns of
V, P the smallest number with

  sum_{p <= P} lambda_p >= fraction * trace(C),

and a point's features are (x - m) V[:, :P]. C is accumulated in blocks of
rows (memory O(D^2 + block D), never N x D in float32), on JAX's default
device; `jnp.linalg.eigh` diagonalises it. That is O(D^3): fine for D up to a
few thousand (CIFAR-10's 3,072); for 64 x 64 x 3 images use a feature hook
(`nbflows.neighbours.index`) as the paper does for CelebA.

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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


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
    x: [N, ...] training points, any numeric dtype (uint8 images are fine);
      trailing axes are flattened.
    fraction: the fraction of the total variance the kept components must
      explain, in (0, 1].
    block_size: rows per block while accumulating the covariance.

  Returns:
    The fitted `PCA`; `kept_fraction(result) >= fraction`.

  Raises:
    ValueError: if `fraction` is outside (0, 1], or `x` has fewer than 2 rows
      or no variance.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction={fraction}; expected a fraction of the "
                     "variance in (0, 1]")
  x = np.reshape(x, (len(x), -1))
  n, d = x.shape
  if n < 2:
    raise ValueError(f"x has {n} rows; PCA needs at least 2")
  block_size = min(block_size, n)
  total = np.zeros(d, np.float32)
  for block, _ in _blocks(x, block_size):
    total = _add_sum(total, block)
  mean = np.asarray(total) / n
  cov = np.zeros((d, d), np.float32)
  for block, size in _blocks(x, block_size):
    block[size:] = mean                  # padding rows add nothing centred
    cov = _add_outer_products(cov, block, mean)
  eigenvalues, eigenvectors = _eigh(cov, n)                   # descending
  eigenvalues = np.maximum(np.asarray(eigenvalues, np.float64), 0.0)
  total_variance = float(np.trace(np.asarray(cov, np.float64)) / n)
  if total_variance <= 0.0:
    raise ValueError("x has no variance; every row is the same")
  explained = np.cumsum(eigenvalues) / total_variance
  num_kept = min(d, int(np.searchsorted(explained, fraction)) + 1)
  return PCA(mean=mean.astype(np.float32),
             components=np.ascontiguousarray(
                 np.asarray(eigenvectors)[:, :num_kept], np.float32),
             variances=eigenvalues[:num_kept].astype(np.float32),
             total_variance=total_variance)


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
def _add_sum(total, block):
  return total + jnp.sum(block, axis=0)


@functools.partial(jax.jit, donate_argnums=0)
def _add_outer_products(cov, block, mean):
  centred = block - mean
  return cov + centred.T @ centred


@jax.jit
def _eigh(cov, n):
  """Eigen-decomposition of cov / n, eigenvalues in descending order."""
  eigenvalues, eigenvectors = jnp.linalg.eigh(cov / n)
  return eigenvalues[::-1], eigenvectors[:, ::-1]


@jax.jit
def _project(block, mean, components):
  return (block - mean) @ components
