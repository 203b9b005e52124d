"""Tests of one-class novelty detection (train/novelty.py, paper 1 Table 4).

The data split, the labels the AUROC is computed against and the
neighbourhoods of test points are checked directly (no training); one
end-to-end run of NCL on digits with a tiny flow checks novelty.json against
the saved per-example scores.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from configs import ccrnvp_digits
from configs import novelty_ncl_contrastive_digits
from configs import novelty_rnvp_digits
from nbflows.data import sources
from nbflows.models import registry
from nbflows.neighbours import index as index_lib
from nbflows.neighbours import pca as pca_lib
from train.experiments import novelty


@pytest.fixture(scope="module")
def digits():
  return sources.load("digits")


def test_one_class_splits_keep_one_class_for_training_and_the_whole_test(
    digits):
  data = novelty.one_class_splits(digits, 4)
  assert set(data.train.labels.tolist()) == {4}
  assert set(data.validation.labels.tolist()) == {4}
  assert len(data.train.labels) == int(np.sum(digits.train.labels == 4))
  np.testing.assert_array_equal(data.test.images, digits.test.images)
  np.testing.assert_array_equal(data.test.labels, digits.test.labels)
  with pytest.raises(ValueError, match="class 12 has no examples"):
    novelty.one_class_splits(digits, 12)


def test_auroc_is_against_test_label_equal_to_the_normal_class(digits):
  labels = digits.test.labels
  oracle = (labels == 2).astype(np.float64)
  assert novelty.one_class_auroc(oracle, labels, 2) == 1.0
  assert novelty.one_class_auroc(-oracle, labels, 2) == 0.0
  # The oracle of class 2 knows nothing of class 7 being normal: every
  # class-7 example ties with the class-2-free rest, the class-2 examples
  # are negatives that outscore them all.
  positives, negatives = np.sum(labels == 7), np.sum(labels != 7)
  ties = np.sum((labels != 7) & (labels != 2))
  expected = 0.5 * positives * ties / (positives * negatives)
  assert novelty.one_class_auroc(oracle, labels, 7) == pytest.approx(expected)


def test_test_neighbours_are_the_nearest_training_images_of_the_class(
    digits):
  config = novelty_ncl_contrastive_digits.get_config("quick")
  data = novelty.one_class_splits(digits, 3)
  index = index_lib.build(data, config.neighbours, progress=False)
  # PCA fitted to class-3 training images; neighbours index them only.
  train_features = pca_lib.transform(index.pca, data.train.images)
  test_features = pca_lib.transform(index.pca, data.test.images)
  distances = ((test_features[:, None, :] - train_features[None]) ** 2).sum(-1)
  nearest = np.argsort(distances, axis=1, kind="stable")[:, :config.neighbours.k]
  neighbours = index.neighbours["test"]
  assert neighbours.max() < len(data.train.labels)
  np.testing.assert_array_equal(np.sort(neighbours, 1), np.sort(nearest, 1))
  # Novel test points (not 3) get neighbours too, all of them class 3.
  assert set(data.train.labels[neighbours[digits.test.labels != 3]].ravel()
             .tolist()) == {3}


def test_configs_that_would_read_test_labels_are_rejected():
  config = novelty_ncl_contrastive_digits.get_config("quick")
  config.neighbours.same_class = True
  with pytest.raises(ValueError, match="same_class=True"):
    novelty.check_novelty_config(config, registry.build_model(config))
  config = novelty_rnvp_digits.for_novelty(ccrnvp_digits.get_config("quick"),
                                           "quick")
  with pytest.raises(ValueError, match="conditioned on the class label"):
    novelty.check_novelty_config(config, registry.build_model(config))


def test_run_novelty_end_to_end_writes_aurocs_of_the_saved_scores(
    tmp_path, digits):
  config = novelty_ncl_contrastive_digits.get_config("quick")
  config.num_train_steps = 4
  config.eval_every_steps = 2
  config.optimizer.warmup_steps = 1
  config.flow.num_scales = 1
  config.flow.couplings_per_scale = 1
  results = novelty.run_novelty(config, str(tmp_path), classes=[0, 1])
  with open(tmp_path / novelty.NOVELTY_FILE) as f:
    written = json.load(f)
  assert written["per_class"] == results["per_class"]
  assert sorted(written["per_class"]) == ["0", "1"]
  assert written["mean_auroc"] == pytest.approx(
      np.mean(list(written["per_class"].values())))
  assert written["config"]["contrastive"]["enabled"] is True
  for c in (0, 1):
    directory = novelty.class_dir(str(tmp_path), c)
    with np.load(os.path.join(directory, novelty.SCORES_FILE)) as f:
      scores, labels = f["log_prob"], f["test_labels"]
    np.testing.assert_array_equal(labels, digits.test.labels)
    assert np.all(np.isfinite(scores))
    assert written["per_class"][str(c)] == pytest.approx(
        novelty.one_class_auroc(scores, labels, c))
    assert written["details"][str(c)]["steps_trained"] >= 2
    with np.load(os.path.join(directory, novelty.INDEX_FILE)) as f:
      test_neighbours = f["neighbours_test"]
    assert test_neighbours.max() < written["details"][str(c)]["num_train"]


def test_side_by_side_runs_every_model_on_a_class_before_the_next(
    tmp_path, monkeypatch):
  """Class-major order, so a stopped run holds the same classes per model."""
  calls = []

  def fake_run_class(config, workdir, splits, normal_class, mesh):
    del splits, mesh
    calls.append((os.path.basename(workdir), normal_class))
    auroc = 0.5 + 0.1 * normal_class + (0.01 if config.contrastive.enabled
                                        else 0.0)
    return {"auroc": auroc, "seconds": 0.0}

  monkeypatch.setattr(novelty, "run_class", fake_run_class)
  runs = {str(tmp_path / "rnvp"): novelty_rnvp_digits.get_config("quick"),
          str(tmp_path / "nclc"):
              novelty_ncl_contrastive_digits.get_config("quick")}
  results = novelty.run_side_by_side(runs, classes=[2, 0])
  assert calls == [("rnvp", 2), ("nclc", 2), ("rnvp", 0), ("nclc", 0)]
  for name, extra in (("rnvp", 0.0), ("nclc", 0.01)):
    with open(tmp_path / name / novelty.NOVELTY_FILE) as f:
      written = json.load(f)
    assert written["per_class"] == results[str(tmp_path / name)]["per_class"]
    assert written["per_class"] == pytest.approx({"2": 0.7 + extra,
                                                  "0": 0.5 + extra})
    assert written["mean_auroc"] == pytest.approx(0.6 + extra)
  other = novelty_rnvp_digits.for_mnist5k(
      novelty_rnvp_digits.get_config("quick"), "quick")
  with pytest.raises(ValueError, match="expected the same data"):
    novelty.run_side_by_side({
        str(tmp_path / "a"): other,
        str(tmp_path / "b"): runs[str(tmp_path / "rnvp")]})
