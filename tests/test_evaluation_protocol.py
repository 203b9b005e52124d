"""The test protocol of neighbourhood models: same-class and label-free."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import ncl_digits
from nbflows import units
from nbflows.data import pipeline
from nbflows.data import sources
from nbflows.models import registry
from nbflows.neighbours import index as index_lib
from train.evaluation import evaluate
from train.loop import sharding


@pytest.fixture(scope="module")
def digits():
  return sources.load("digits")


def test_label_free_settings_and_protocols():
  neighbours = default.get_config().neighbours
  assert neighbours.same_class
  assert evaluate.neighbourhood_protocol(neighbours).startswith(
      "same-class neighbourhoods (test labels used)")
  free = evaluate.label_free_neighbours(neighbours)
  assert not free.same_class and neighbours.same_class   # a copy
  assert {k: v for k, v in free.items() if k != "same_class"} == {
      k: v for k, v in neighbours.items() if k != "same_class"}
  assert "test labels not used" in evaluate.neighbourhood_protocol(free)
  assert evaluate.label_free_neighbours(free) is None
  with neighbours.unlocked():
    neighbours.kind = "kmeans"
  assert evaluate.label_free_neighbours(neighbours) is None
  assert "k-means" in evaluate.neighbourhood_protocol(neighbours)


def test_label_free_index_differs_where_labels_differ(digits, tmp_path):
  neighbours = default.get_config().neighbours
  same = index_lib.build_or_load(digits, neighbours, str(tmp_path),
                                 progress=False)
  free = index_lib.build_or_load(
      digits, evaluate.label_free_neighbours(neighbours), str(tmp_path),
      progress=False)
  labels, train_labels = digits.test.labels, digits.train.labels
  same_rows, free_rows = same.neighbours["test"], free.neighbours["test"]
  assert np.all(train_labels[same_rows] == labels[:, None])
  # Over all classes the j-th nearest is never farther than within one.
  # (to float32 rounding: the two searches sum in different block orders)
  assert np.all(free.distances["test"]
                <= same.distances["test"] * (1 + 1e-5) + 1e-4)
  mixed = np.any(train_labels[free_rows] != labels[:, None], axis=1)
  assert 0 < mixed.sum() < len(labels)
  assert np.all(np.any(free_rows[mixed] != same_rows[mixed], axis=1))
  # Where every nearest image has the test label, the two agree.
  np.testing.assert_array_equal(free_rows[~mixed], same_rows[~mixed])


def test_label_free_bpd_scores_the_same_points_with_the_other_index(digits):
  config = ncl_digits.get_config("quick")
  with config.unlocked():                  # the smallest NCL (fast compile)
    config.flow.num_scales = 1
    config.flow.hidden_channels = 4
  model = registry.build_model(config)
  splits, index = evaluate.load_data(config, model)
  batch = next(iter(pipeline.eval_iterator(splits, index, "test", 8)))
  params = jax.jit(model.init)(jax.random.key(0), batch)
  leaves, treedef = jax.tree.flatten(params)
  params = jax.tree.unflatten(treedef, [   # a fresh NCL ignores N
      leaf + 0.02 * jax.random.normal(jax.random.key(i), leaf.shape)
      for i, leaf in enumerate(leaves)])
  mesh = sharding.make_mesh()
  results = evaluate.label_free_results(
      config, model, params, splits, mesh, evaluate.make_eval_step(model, mesh),
      np.zeros(3))
  free = index_lib.build_or_load(
      splits, evaluate.label_free_neighbours(config.neighbours), None)

  log_prob = jax.jit(model.log_prob)

  def by_hand(neighbour_index):
    bits = []
    for test in pipeline.eval_iterator(splits, neighbour_index, "test",
                                       config.eval_batch_size):
      n = len(test["x"])
      pad = lambda a: np.concatenate(
          [a, np.repeat(a[:1], config.eval_batch_size - n, axis=0)])
      bits.append(units.bits_per_dim(log_prob(
          params, pad(test["x"]), pad(test["neighbours"])),
                                     model.num_dims)[:n])
    return np.concatenate(bits)

  assert results["conditional_bpd_protocol"] == (
      evaluate.neighbourhood_protocol(config.neighbours))
  label_free = by_hand(free)
  assert results["test_bpd_label_free"] == pytest.approx(
      float(np.mean(label_free)), rel=1e-4)
  assert np.max(np.abs(label_free - by_hand(index))) > 1e-3
