"""Precision and recall for distributions (PRD; Sajjadi et al., 2018).

"Assessing generative models via precision and recall" (NeurIPS 2018). The
union of the reference features (real images) and the evaluated features
(model samples) is clustered with k-means into `num_clusters` bins; P is the
histogram of the reference set over the bins and Q that of the evaluated set.
For every slope lambda = tan(angle), angles evenly spaced in (0, pi/2),

  precision alpha(lambda) = sum over bins w of min(lambda P(w), Q(w)),
  recall    beta(lambda)  = alpha(lambda) / lambda,

(the paper's Theorem 2), averaged over `num_runs` clusterings. The curve is
summarised by the maximal F_beta scores

  F_beta = (1 + beta^2) p r / (beta^2 p + r),

F_8 weighting recall (does the model cover the data?) and F_1/8 weighting
precision (are its samples like the data?). The defaults (20 clusters, 1001
angles, 10 runs, mini-batch k-means with 10 initialisations, epsilon 1e-10)
are those of the authors' reference implementation (which also clusters
with scikit-learn's `MiniBatchKMeans`).

Example:
  >>> import numpy as np
  >>> same = np.array([0.5, 0.5])
  >>> precision, recall = prd_curve(same, same, num_angles=3)
  >>> precision.round(6).tolist(), recall.round(6).tolist()
  ([0.0, 1.0, 1.0], [1.0, 1.0, 0.0])
"""
from __future__ import annotations

import math
from typing import NamedTuple, Tuple

import numpy as np
from numpy.typing import ArrayLike
import sklearn.cluster
import threadpoolctl


class PRDResult(NamedTuple):
  """A PRD curve ([num_angles] each) and its F_8 / F_1/8 summary."""
  precision: np.ndarray
  recall: np.ndarray
  f_8: float      # max F_8: recall-like, 1 when the model covers the data
  f_1_8: float    # max F_1/8: precision-like, 1 when samples look real


def _check_features(features: ArrayLike, name: str) -> np.ndarray:
  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2 or features.shape[0] < 1:
    raise ValueError(f"{name} has shape {features.shape}; expected "
                     "[num_examples, num_features]")
  if not np.isfinite(features).all():
    raise ValueError(f"{name} has non-finite entries")
  return features


def cluster_assignments(eval_features: ArrayLike, ref_features: ArrayLike,
                        num_clusters: int = 20,
                        seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """Clusters the union of both feature sets with mini-batch k-means.

  Args:
    eval_features: [N_e, F] features of the evaluated distribution (samples).
    ref_features: [N_r, F] features of the reference distribution (data).
    num_clusters: number of k-means clusters (bins).
    seed: random state of k-means.

  Returns:
    (eval_labels [N_e], ref_labels [N_r]) cluster indices in [0, num_clusters).

  Raises:
    ValueError: if the features are not [N, F] with the same F, or there are
      fewer examples than clusters.
  """
  eval_features = _check_features(eval_features, "eval_features")
  ref_features = _check_features(ref_features, "ref_features")
  if eval_features.shape[1] != ref_features.shape[1]:
    raise ValueError(f"eval_features has {eval_features.shape[1]} features "
                     f"and ref_features {ref_features.shape[1]}; expected the "
                     "same number")
  data = np.concatenate([eval_features, ref_features])
  if num_clusters < 1 or data.shape[0] < num_clusters:
    raise ValueError(f"num_clusters={num_clusters}; expected between 1 and the "
                     f"number of examples ({data.shape[0]})")
  kmeans = sklearn.cluster.MiniBatchKMeans(n_clusters=num_clusters, n_init=10,
                                           random_state=seed)
  # One thread: on problems this small, OpenMP/BLAS threads cost more than
  # they save (10x slower on a busy 2-core machine, measured).
  with threadpoolctl.threadpool_limits(limits=1):
    labels = kmeans.fit(data).labels_
  return labels[:len(eval_features)], labels[len(eval_features):]


def histogram(labels: np.ndarray, num_clusters: int) -> np.ndarray:
  """The normalised histogram [num_clusters] of cluster indices."""
  return np.bincount(labels, minlength=num_clusters) / labels.size


def prd_curve(eval_dist: np.ndarray, ref_dist: np.ndarray,
              num_angles: int = 1001,
              epsilon: float = 1e-10) -> Tuple[np.ndarray, np.ndarray]:
  """PRD curve of two histograms over the same bins (Theorem 2 of the paper).

  Args:
    eval_dist: [K] histogram Q of the evaluated distribution (sums to 1).
    ref_dist: [K] histogram P of the reference distribution (sums to 1).
    num_angles: number of slopes, angles evenly spaced in
      [epsilon, pi/2 - epsilon].
    epsilon: keeps the angles off 0 and pi/2.

  Returns:
    (precision, recall), each [num_angles] in [0, 1].

  Raises:
    ValueError: for num_angles outside [3, 1e6], epsilon outside (0, 0.1), or
      histograms that are not [K] probability vectors.
  """
  if not 3 <= num_angles <= 1e6:
    raise ValueError(f"num_angles={num_angles}; expected in [3, 1e6]")
  if not 0 < epsilon < 0.1:
    raise ValueError(f"epsilon={epsilon}; expected in (0, 0.1)")
  eval_dist = np.asarray(eval_dist, dtype=np.float64)
  ref_dist = np.asarray(ref_dist, dtype=np.float64)
  for name, dist in (("eval_dist", eval_dist), ("ref_dist", ref_dist)):
    if (dist.ndim != 1 or dist.shape != eval_dist.shape or (dist < 0).any()
        or not math.isclose(dist.sum(), 1.0, rel_tol=1e-6)):
      raise ValueError(f"{name} has shape {dist.shape} and sum {dist.sum()}; "
                       f"expected a probability vector of shape "
                       f"{eval_dist.shape}")
  slopes = np.tan(np.linspace(epsilon, math.pi / 2 - epsilon, num_angles))
  precision = np.minimum(ref_dist[None, :] * slopes[:, None],
                         eval_dist[None, :]).sum(axis=1)  # [num_angles]
  recall = precision / slopes
  # Round-off can leave values a hair above 1.
  return np.clip(precision, 0.0, 1.0), np.clip(recall, 0.0, 1.0)


def f_beta(precision: np.ndarray, recall: np.ndarray, beta: float,
           epsilon: float = 1e-10) -> np.ndarray:
  """F_beta = (1 + beta^2) p r / (beta^2 p + r + epsilon), elementwise."""
  return ((1 + beta ** 2) * precision * recall /
          (beta ** 2 * precision + recall + epsilon))


def prd_from_assignments(eval_labels: np.ndarray, ref_labels: np.ndarray,
                         num_clusters: int,
                         num_angles: int = 1001
                         ) -> Tuple[np.ndarray, np.ndarray]:
  """PRD curve (precision, recall) from given cluster indices of both sets."""
  return prd_curve(histogram(eval_labels, num_clusters),
                   histogram(ref_labels, num_clusters), num_angles)


def prd_score(eval_features: ArrayLike, ref_features: ArrayLike,
              num_clusters: int = 20, num_angles: int = 1001,
              num_runs: int = 10, seed: int = 0,
              beta: float = 8.0) -> PRDResult:
  """PRD of evaluated vs reference features and its (F_8, F_1/8) summary.

  The curve is the mean over `num_runs` k-means clusterings (seeds
  `seed, seed + 1, ...`); the summary is the maximum of F_beta and
  F_(1/beta) over that mean curve, as in the reference implementation.

  Args:
    eval_features: [N_e, F] features of the evaluated set (model samples).
    ref_features: [N_r, F] features of the reference set (real images); the
      paper uses equally many of each.
    num_clusters: k-means clusters (bins).
    num_angles: points on the curve.
    num_runs: clusterings averaged over.
    seed: seed of the first clustering.
    beta: the F-score weight (8 in the paper).

  Returns:
    PRDResult(precision, recall, f_8, f_1_8).

  Raises:
    ValueError: for invalid features or settings (see `cluster_assignments`
      and `prd_curve`), or num_runs < 1.
  """
  if num_runs < 1:
    raise ValueError(f"num_runs={num_runs}; expected >= 1")
  curves = []
  for run in range(num_runs):
    eval_labels, ref_labels = cluster_assignments(
        eval_features, ref_features, num_clusters, seed + run)
    curves.append(prd_from_assignments(eval_labels, ref_labels, num_clusters,
                                       num_angles))
  precision, recall = np.mean(curves, axis=0)
  return PRDResult(precision, recall,
                   float(np.max(f_beta(precision, recall, beta))),
                   float(np.max(f_beta(precision, recall, 1.0 / beta))))
