"""Tests of nbflows.metrics: AUROC, Frechet distance, PRD, feature network."""
from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import sklearn.datasets
import sklearn.metrics

from nbflows.metrics import roc
from nbflows.metrics import feature_net
from nbflows.metrics import frechet
from nbflows.metrics import prd

# ---------------------------------------------------------------- AUROC
# Positives (label 1): 0.9, 0.8, 0.7, 0.5; negatives (label 0): 0.8, 0.5, 0.3.
SCORES = [0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.3]
LABELS = [1, 1, 0, 1, 0, 1, 0]


def test_auroc_equals_hand_count_with_ties():
  # Count, for each of the 4 x 3 = 12 (positive, negative) pairs, 1 if the
  # positive scores higher and 1/2 on a tie:
  #   positive 0.9 beats 0.8, 0.5, 0.3                    -> 3
  #   positive 0.8 ties 0.8, beats 0.5, 0.3               -> 2.5
  #   positive 0.7 loses to 0.8, beats 0.5, 0.3           -> 2
  #   positive 0.5 loses to 0.8, ties 0.5, beats 0.3      -> 1.5
  # total 9 of 12 pairs: AUROC = 0.75.
  assert roc.auroc(SCORES, LABELS) == pytest.approx(0.75, abs=1e-12)
  # Reversing the scores swaps wins and losses; ties stay half.
  assert roc.auroc(-np.array(SCORES), LABELS) == pytest.approx(0.25)


def test_roc_curve_equals_hand_points_and_area():
  # Thresholds +inf, 0.9, 0.8, 0.7, 0.5, 0.3 call the examples with
  # score >= threshold positive; (TP of 4, FP of 3) at each:
  # (0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (4, 3).
  fpr, tpr, thresholds = roc.roc_curve(SCORES, LABELS)
  np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
  np.testing.assert_allclose(tpr, [0, 1 / 4, 2 / 4, 3 / 4, 1, 1])
  np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.5, 0.3])
  # Trapezoids: 0 + 1/3 * (1/4 + 2/4) / 2 + 0 + 1/3 * (3/4 + 1) / 2 + 1/3
  #           = 0.125 + 0.291666... + 0.333333... = 0.75, as the pair count.
  assert np.trapezoid(tpr, fpr) == pytest.approx(0.75, abs=1e-12)


def test_auroc_matches_sklearn_on_many_ties():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, size=500)
  scores = rng.integers(0, 6, size=500) + labels  # few distinct values
  expected = sklearn.metrics.roc_auc_score(labels, scores)
  assert roc.auroc(scores, labels) == pytest.approx(expected, abs=1e-12)
  fpr, tpr, _ = roc.roc_curve(scores, labels)
  assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-12)


def test_auroc_handles_tied_infinities():
  # -inf log-likelihoods tie with each other: one positive and one negative
  # at -inf make a half pair; both beat nothing else. Pairs (2 x 2 = 4):
  # positive 1.0 beats both negatives (2), positive -inf ties -inf (0.5).
  scores = [1.0, -np.inf, -np.inf, 0.0]
  labels = [1, 1, 0, 0]
  assert roc.auroc(scores, labels) == pytest.approx(2.5 / 4)
  fpr, tpr, _ = roc.roc_curve(scores, labels)
  assert np.trapezoid(tpr, fpr) == pytest.approx(2.5 / 4)


@pytest.mark.parametrize("scores, labels, message", [
    ([0.1, 0.2], [1, 1], "both classes"),
    ([0.1, np.nan], [1, 0], "NaN"),
    ([0.1, 0.2], [1, 2], "0 \\(negative\\) or 1"),
    ([0.1, 0.2, 0.3], [1, 0], "shape"),
])
def test_auroc_rejects_bad_input(scores, labels, message):
  with pytest.raises(ValueError, match=message):
    roc.auroc(scores, labels)


# ------------------------------------------------------ Frechet distance
def _correlated_features(rng, n, f, shift):
  mixing = rng.normal(size=(f, f)) / np.sqrt(f)
  return rng.normal(size=(n, f)) @ mixing + shift


def _scipy_frechet(a, b):
  """The usual reference: scipy.linalg.sqrtm of the covariance product."""
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
  covmean = np.real(covmean)
  return (np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) -
          2 * np.trace(covmean))


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_frechet_matches_scipy_sqrtm_reference(shift):
  rng = np.random.default_rng(1)
  a = _correlated_features(rng, 400, 16, 0.0)
  b = _correlated_features(rng, 300, 16, shift)
  expected = _scipy_frechet(a, b)
  assert frechet.frechet_distance(a, b) == pytest.approx(expected, abs=1e-4)
  assert frechet.frechet_distance(b, a) == pytest.approx(expected, abs=1e-4)


def test_frechet_closed_form_for_known_gaussians():
  # N(0, I_F) vs N(m, 4 I_F): |m|^2 + F (1 + 4 - 2 * sqrt(1 * 4)) = |m|^2 + F.
  f = 5
  mean = np.arange(f, dtype=float)
  a = frechet.GaussianStatistics(np.zeros(f), np.eye(f))
  b = frechet.GaussianStatistics(mean, 4 * np.eye(f))
  assert frechet.frechet_distance_from_statistics(a, b) == pytest.approx(
      np.sum(mean ** 2) + f, abs=1e-10)


def test_frechet_of_a_set_with_itself_is_zero_even_when_rank_deficient():
  rng = np.random.default_rng(2)
  a = rng.normal(size=(10, 32))  # 10 examples in 32-D: singular covariance
  assert frechet.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_rejects_mismatched_features():
  with pytest.raises(ValueError, match="same feature dimension"):
    frechet.frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))


# ------------------------------------------------------------------ PRD
def _reference_prd(eval_labels, ref_labels, num_clusters, num_angles):
  """Direct loop over angles and bins (Sajjadi et al. 2018, Theorem 2)."""
  bins = dict(bins=num_clusters, range=[0, num_clusters], density=True)
  eval_dist = np.histogram(eval_labels, **bins)[0]
  ref_dist = np.histogram(ref_labels, **bins)[0]
  angles = np.linspace(1e-10, np.pi / 2 - 1e-10, num_angles)
  precision, recall = [], []
  for angle in angles:
    slope = np.tan(angle)
    alpha = sum(min(slope * p, q) for p, q in zip(ref_dist, eval_dist))
    precision.append(min(alpha, 1.0))
    recall.append(min(alpha / slope, 1.0))
  return np.array(precision), np.array(recall)


def _reference_max_f(precision, recall, beta):
  return max((1 + beta ** 2) * p * r / (beta ** 2 * p + r + 1e-10)
             for p, r in zip(precision, recall))


def test_prd_matches_numpy_reference_given_cluster_assignments():
  rng = np.random.default_rng(3)
  ref = rng.normal(size=(300, 8))
  evaluated = rng.normal(size=(300, 8)) * 1.5 + 0.3
  curves = []
  for run in range(3):
    eval_labels, ref_labels = prd.cluster_assignments(evaluated, ref, 20,
                                                      seed=run)
    precision, recall = prd.prd_from_assignments(eval_labels, ref_labels, 20,
                                                 1001)
    expected = _reference_prd(eval_labels, ref_labels, 20, 1001)
    np.testing.assert_allclose(precision, expected[0], atol=1e-4)
    np.testing.assert_allclose(recall, expected[1], atol=1e-4)
    curves.append(expected)
  expected_precision, expected_recall = np.mean(curves, axis=0)
  result = prd.prd_score(evaluated, ref, num_runs=3, seed=0)
  np.testing.assert_allclose(result.precision, expected_precision, atol=1e-4)
  np.testing.assert_allclose(result.recall, expected_recall, atol=1e-4)
  assert result.f_8 == pytest.approx(
      _reference_max_f(expected_precision, expected_recall, 8), abs=1e-4)
  assert result.f_1_8 == pytest.approx(
      _reference_max_f(expected_precision, expected_recall, 1 / 8), abs=1e-4)


def test_prd_separates_precision_from_recall_under_mode_dropping():
  # Reference: two far-apart blobs; evaluated: only the first blob. Every
  # evaluated sample looks real (precision 1, F_1/8 near 1), but half the
  # data is never produced (recall 1/2, F_8 near 65 * 0.5 / 64.5 = 0.504).
  rng = np.random.default_rng(4)
  blob_a = rng.normal(size=(400, 4))
  blob_b = rng.normal(size=(400, 4)) + 20.0
  ref = np.concatenate([blob_a[:200], blob_b[:200]])
  evaluated = blob_a[200:]
  result = prd.prd_score(evaluated, ref, num_runs=2)
  assert result.f_1_8 > 0.9
  assert result.f_8 < 0.6
  same = prd.prd_score(ref, ref, num_runs=1)
  assert same.f_8 == pytest.approx(1.0, abs=1e-6)
  assert same.f_1_8 == pytest.approx(1.0, abs=1e-6)


def test_prd_rejects_bad_histograms():
  with pytest.raises(ValueError, match="probability vector"):
    prd.prd_curve(np.array([0.5, 0.6]), np.array([0.5, 0.5]))


# ------------------------------------------ classifier features on digits
def _blur(images):
  return np.rint(scipy.ndimage.uniform_filter(
      images.astype(float), size=(1, 3, 3, 1))).astype(np.uint8)


def test_classifier_features_rank_real_above_degraded_digits(tmp_path):
  digits = sklearn.datasets.load_digits()
  images = digits.images.reshape(-1, 8, 8, 1).astype(np.uint8)  # 0..16
  labels = digits.target
  order = np.random.default_rng(0).permutation(len(images))
  train, test = order[:1400], order[1400:]
  settings = feature_net.ClassifierSettings(num_steps=300, batch_size=64)
  net = feature_net.load_or_train("digits", images[train], labels[train], 17,
                                  10, str(tmp_path), settings)
  assert net.accuracy(images[test], labels[test]) > 0.9

  rng = np.random.default_rng(1)
  noised = np.clip(np.rint(images[test] + rng.normal(0, 3, images[test].shape)),
                   0, 16).astype(np.uint8)
  train_features = net(images[train])
  spread = np.trace(np.cov(train_features, rowvar=False))
  distance = {name: frechet.frechet_distance(net(x), train_features)
              for name, x in [("real", images[test]),
                              ("blurred", _blur(images[test])),
                              ("noised", noised)]}
  # Measured: real 6.3, noised 15.8, blurred 215, spread 475.
  assert distance["real"] < 0.05 * spread
  assert distance["noised"] > 2 * distance["real"]
  assert distance["blurred"] > 10 * distance["real"]

  real = feature_net.sample_quality(net, images[train], images[test],
                                    num_runs=2)
  blurred = feature_net.sample_quality(net, images[train], _blur(images[test]),
                                       num_runs=2)
  assert real["frechet_distance"] == pytest.approx(distance["real"])
  assert min(real["prd_f8"], real["prd_f1_8"]) > 0.9
  assert max(blurred["prd_f8"], blurred["prd_f1_8"]) < 0.6

  # Data-unit floats (uint8 + u) give the same features as the uint8 images.
  dequantised = images[test] + rng.uniform(0, 1, images[test].shape)
  np.testing.assert_allclose(net(dequantised), net(images[test]))

  # The second call loads the cached classifier instead of training again.
  files = os.listdir(tmp_path)
  assert len(files) == 1 and files[0].startswith("feature_net-digits-")
  loaded = feature_net.load_or_train("digits", images[train], labels[train],
                                     17, 10, str(tmp_path), settings)
  np.testing.assert_allclose(loaded(images[test]), net(images[test]),
                             rtol=1e-6, atol=1e-6)
  other = feature_net.ClassifierSettings(num_steps=301, batch_size=64)
  assert (feature_net.cache_key("digits", images[train], labels[train], 17, 10,
                                other) + ".npz") not in files


def test_network_input_rejects_out_of_range_integers():
  with pytest.raises(ValueError, match="expected \\[0, 17\\)"):
    feature_net.to_network_input(np.full((1, 2, 2, 1), 17, np.uint8), 17)
