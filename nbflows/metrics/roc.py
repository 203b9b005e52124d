"""Area under the ROC curve, for novelty detection (paper 1, Sec. 3.2, Table 4).

The score of an example is its (conditional) log-likelihood; examples of the
class the model was trained on are the positives, every other test example a
negative, and a good detector scores positives higher. The AUROC is the
Mann-Whitney statistic

  AUROC = (1 / (P * N)) * sum over positive p, negative n of
          ( [s_p > s_n] + 0.5 * [s_p == s_n] ),

the probability that a random positive outscores a random negative, ties
counted as one half. It equals the trapezoidal area under `roc_curve`, whose
points move diagonally across a group of tied scores.

Example:
  >>> auroc([0.9, 0.8, 0.8, 0.1], [1, 1, 0, 0])
  0.875
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from numpy.typing import ArrayLike


def _check_scores_labels(scores: ArrayLike,
                         labels: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
  """Validates and converts to (float64 scores [N], bool labels [N])."""
  scores = np.asarray(scores, dtype=np.float64)
  labels = np.asarray(labels)
  if scores.ndim != 1 or labels.shape != scores.shape:
    raise ValueError(f"scores has shape {scores.shape} and labels "
                     f"{labels.shape}; expected two arrays of shape [N]")
  if np.isnan(scores).any():
    raise ValueError(f"scores has {int(np.isnan(scores).sum())} NaN entries; "
                     "expected numbers (+-inf are allowed)")
  if not np.isin(labels, (0, 1)).all():
    raise ValueError(f"labels has values {np.unique(labels)[:10]}; expected "
                     "0 (negative) or 1 (positive)")
  labels = labels.astype(bool)
  num_positive = int(labels.sum())
  if num_positive in (0, labels.size):
    raise ValueError(f"labels has {num_positive} positives out of "
                     f"{labels.size}; the AUROC needs both classes")
  return scores, labels


def average_ranks(values: np.ndarray) -> np.ndarray:
  """Ranks 1..N of `values`, tied values sharing their mean rank.

  Example:
    >>> average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
  """
  _, inverse, counts = np.unique(values, return_inverse=True,
                                 return_counts=True)
  first_rank = np.cumsum(counts) - counts + 1  # rank of each group's first
  return (first_rank + (counts - 1) / 2.0)[inverse]


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
  """ROC AUC as the Mann-Whitney U statistic, ties counting one half.

  Computed from average ranks: U = R_pos - P (P + 1) / 2, AUROC = U / (P N),
  where R_pos is the sum of the positives' ranks among all scores.

  Args:
    scores: [N] scores, higher meaning "more positive" (e.g. log p(x | N(x))).
    labels: [N] 1 for positives (the training class), 0 for negatives.

  Returns:
    The AUROC in [0, 1]; 0.5 is chance.

  Raises:
    ValueError: if the shapes differ, a score is NaN, a label is not 0/1, or
      one of the classes is empty.
  """
  scores, labels = _check_scores_labels(scores, labels)
  num_positive = labels.sum()
  num_negative = labels.size - num_positive
  rank_sum = average_ranks(scores)[labels].sum()
  u = rank_sum - num_positive * (num_positive + 1) / 2.0
  return float(u / (num_positive * num_negative))


def roc_curve(scores: ArrayLike,
              labels: ArrayLike) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The ROC curve: one point per distinct threshold, from (0, 0) to (1, 1).

  An example is called positive when its score is >= the threshold. Tied
  scores share a threshold, so a tie between a positive and a negative makes
  a diagonal step, and `np.trapezoid(tpr, fpr)` equals `auroc`.

  Args:
    scores: [N] scores, higher meaning "more positive".
    labels: [N] 1 for positives, 0 for negatives.

  Returns:
    (fpr, tpr, thresholds), each of shape [T + 1] for T distinct scores:
    false- and true-positive rates, and the thresholds in decreasing order,
    the first being +inf (nothing called positive).

  Raises:
    ValueError: as `auroc`.
  """
  scores, labels = _check_scores_labels(scores, labels)
  order = np.argsort(-scores, kind="stable")
  scores, labels = scores[order], labels[order]
  # The last index of every group of equal scores (scores sorted descending).
  # (A comparison, not np.diff, so that tied infinities form one group.)
  group_ends = np.append(np.flatnonzero(scores[1:] != scores[:-1]),
                         scores.size - 1)
  true_positives = np.cumsum(labels)[group_ends]
  false_positives = (group_ends + 1) - true_positives
  tpr = np.concatenate([[0.0], true_positives / labels.sum()])
  fpr = np.concatenate([[0.0], false_positives / (~labels).sum()])
  thresholds = np.concatenate([[np.inf], scores[group_ends]])
  return fpr, tpr, thresholds
