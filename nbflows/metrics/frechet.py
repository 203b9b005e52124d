"""Frechet distance between Gaussians fitted to two sets of features.

With (mu_a, C_a) and (mu_b, C_b) the means and covariances of the two feature
sets, the squared 2-Wasserstein (Frechet) distance between the Gaussians is

  d^2 = ||mu_a - mu_b||^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^(1/2)).

On Inception features this is the "FID"; nbflows computes it on the features
of whatever network it is given (by default the small classifier of
`nbflows.metrics.feature_net`) and calls it the Frechet distance on those
features, so numbers are never mistaken for Inception FIDs.

The trace term is computed stably in float64: with S = C_a^(1/2) (symmetric,
from an eigen-decomposition), C_a C_b = S^-1 (S C_b S) S is similar to the
symmetric positive semi-definite S C_b S, so tr((C_a C_b)^(1/2)) is the sum of
the square roots of the eigenvalues of S C_b S (negative round-off clipped).
No non-symmetric matrix square root, hence no complex parts to discard.

Example:
  >>> import numpy as np
  >>> rng = np.random.default_rng(0)
  >>> a = rng.normal(size=(500, 3))
  >>> b = a + np.array([2.0, 0.0, 0.0])   # the same cloud shifted by 2
  >>> round(frechet_distance(a, b), 6)
  4.0
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class GaussianStatistics(NamedTuple):
  """Mean [F] and covariance [F, F] of a feature set, float64."""
  mean: np.ndarray
  covariance: np.ndarray


def gaussian_statistics(features: ArrayLike) -> GaussianStatistics:
  """Mean and unbiased covariance (ddof=1) of `features` [N, F], in float64.

  Raises:
    ValueError: if `features` is not [N, F] with N >= 2, or is not finite.
  """
  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"features has shape {features.shape}; expected "
                     "[num_examples >= 2, num_features]")
  if not np.isfinite(features).all():
    raise ValueError("features has non-finite entries")
  return GaussianStatistics(features.mean(axis=0),
                            np.cov(features, rowvar=False, ddof=1).reshape(
                                features.shape[1], features.shape[1]))


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Square root of a symmetric PSD matrix, eigenvalues clipped at 0."""
  eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
  root = np.sqrt(np.clip(eigenvalues, 0.0, None))
  return (eigenvectors * root) @ eigenvectors.T


def trace_sqrt_product(covariance_a: np.ndarray,
                       covariance_b: np.ndarray) -> float:
  """tr((C_a C_b)^(1/2)) for symmetric PSD C_a, C_b (see the module doc)."""
  root_a = _symmetric_sqrt(covariance_a)
  middle = root_a @ covariance_b @ root_a  # [F, F], symmetric PSD
  eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
  return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance_from_statistics(a: GaussianStatistics,
                                     b: GaussianStatistics) -> float:
  """Squared Frechet distance between N(a.mean, a.cov) and N(b.mean, b.cov).

  Raises:
    ValueError: if the two feature dimensions differ.
  """
  if a.mean.shape != b.mean.shape or a.covariance.shape != b.covariance.shape:
    raise ValueError(f"statistics have feature shapes {a.mean.shape} and "
                     f"{b.mean.shape}; expected the same feature dimension")
  mean_term = float(np.sum((a.mean - b.mean) ** 2))
  trace_term = (np.trace(a.covariance) + np.trace(b.covariance) -
                2.0 * trace_sqrt_product(a.covariance, b.covariance))
  # The exact value is >= 0; round-off can leave a tiny negative number.
  return max(mean_term + float(trace_term), 0.0)


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike) -> float:
  """Squared Frechet distance between Gaussians fitted to two feature sets.

  Args:
    features_a: [N_a, F] features, e.g. of real test images.
    features_b: [N_b, F] features, e.g. of model samples.

  Returns:
    d^2 >= 0 (the conventional "FID" number when the features are
    Inception's pool3 features; not on any other features).

  Raises:
    ValueError: if either set is not [N >= 2, F] or the F differ.
  """
  return frechet_distance_from_statistics(gaussian_statistics(features_a),
                                          gaussian_statistics(features_b))
