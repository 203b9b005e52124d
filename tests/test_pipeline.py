"""Tests of the tf.data input pipeline."""
import itertools

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import default
from nbflows.data import pipeline, sources
from nbflows.neighbours import index as index_lib

K = 3


def pixel_means(images):
  """A cheap feature hook (8 features) so every dataset builds an index fast."""
  flat = images.reshape(len(images), -1).astype(np.float32)
  return np.stack([part.mean(1) for part in np.array_split(flat, 8, axis=1)],
                  axis=1)


def make_config(batch_size=8, subset=0):
  config = default.get_config()
  with config.unlocked():
    config.batch_size = batch_size
    config.neighbours.k = K
    config.neighbours.same_class = False
    config.neighbours.train_subset_k = subset
  return config


def make_index(splits, config, tmp_path):
  return index_lib.build_or_load(splits, config.neighbours, str(tmp_path),
                                 features=pixel_means,
                                 features_name="pixel_means", progress=False)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
  splits = sources.load("digits")
  return splits, make_index(splits, make_config(), tmp_path_factory.mktemp("i"))


def check_batch(batch, splits, index, split, batch_size, k=K):
  """Structure, dtypes and the dequantisation x = uint8 + u, u in [0, 1)."""
  shape = splits.info.event_shape
  assert sorted(batch) == ["index", "label", "neighbours", "x"]
  assert batch["x"].shape == (batch_size, *shape)
  assert batch["neighbours"].shape == (batch_size, k, *shape)
  assert batch["x"].dtype == batch["neighbours"].dtype == np.float32
  assert batch["label"].dtype == batch["index"].dtype == np.int32
  data = getattr(splits, split)
  rows = batch["index"]
  np.testing.assert_array_equal(np.floor(batch["x"]), data.images[rows])
  np.testing.assert_array_equal(batch["label"], data.labels[rows])
  neighbours = splits.train.images[index.neighbours[split][rows]]
  if k == index.k:
    np.testing.assert_array_equal(np.floor(batch["neighbours"]), neighbours)
  for field in ("x", "neighbours"):
    noise = batch[field] - np.floor(batch[field])
    assert noise.min() >= 0.0 and noise.max() < 1.0


@pytest.mark.parametrize("name", ("digits",) + sources.TFDS_NAMES)
def test_same_batch_structure_for_offline_and_tfds(name, digits, tmp_path):
  if name == "digits":
    splits, index = digits
  else:
    with tfds.testing.mock_data(num_examples=24):
      splits = sources.load(name)
    index = make_index(splits, make_config(), tmp_path)
  batch = next(pipeline.train_iterator(splits, index, make_config(), seed=0))
  check_batch(batch, splits, index, "train", 8)
  batch = next(pipeline.eval_iterator(splits, index, "test", 8))
  check_batch(batch, splits, index, "test", 8)


def test_dequantisation_noise_is_uniform(digits):
  splits, index = digits
  batch = next(pipeline.train_iterator(splits, index, make_config(256), 0))
  noise = (batch["x"] - np.floor(batch["x"])).ravel()         # 16,384 values
  # U[0, 1): mean 1/2, variance 1/12; each quarter holds a quarter.
  assert abs(noise.mean() - 0.5) < 0.01
  assert abs(noise.var() - 1 / 12) < 0.005
  counts = np.histogram(noise, bins=4, range=(0, 1))[0] / noise.size
  np.testing.assert_allclose(counts, 0.25, atol=0.02)


def test_dequantised_values_stay_below_the_next_level():
  # In float32, 255 + u rounds to 256 for u > 1 - 2^-17 (about 8 in 10^6
  # draws); the pipeline must cap it. 4 batches hold 10^6 values.
  images = np.full((256, 32, 32, 1), 255, np.uint8)
  split = sources.Split(images, np.zeros(256, np.int32))
  info = sources.DatasetInfo("full", (32, 32, 1), 256, None)
  splits = sources.Splits(split, split, split, info)
  batches = take(pipeline.train_iterator(splits, None, make_config(256), 0), 4)
  x = np.stack([b["x"] for b in batches])
  assert x.min() >= 255.0 and x.max() < 256.0
  largest = np.nextafter(np.float32(256), np.float32(0))    # 256 - 2^-16
  assert np.sum(x == largest) > 0                 # the cap was exercised


def take(iterator, n):
  return list(itertools.islice(iterator, n))


def test_train_iterator_is_deterministic_under_a_seed(digits):
  splits, index = digits
  config = make_config(subset=2)
  first = take(pipeline.train_iterator(splits, index, config, seed=7), 3)
  second = take(pipeline.train_iterator(splits, index, config, seed=7), 3)
  other = take(pipeline.train_iterator(splits, index, config, seed=8), 3)
  for a, b in zip(first, second):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(first[0]["index"], other[0]["index"])


def test_train_iterator_visits_every_example_once_per_epoch(digits):
  splits, index = digits
  n = len(splits.train.labels)
  config = make_config(batch_size=64)
  batches = take(pipeline.train_iterator(splits, index, config, 0), n // 64)
  seen = np.concatenate([b["index"] for b in batches])
  assert len(np.unique(seen)) == len(seen)         # no repeat within an epoch


def test_train_iterator_started_at_a_step_continues_the_same_stream(digits):
  """Resuming at step s gives batches s, s + 1, ... of an uninterrupted run."""
  splits, index = digits
  config = make_config(batch_size=64, subset=2)
  n = len(splits.train.labels)
  straight = take(pipeline.train_iterator(splits, index, config, 3), 30)
  start = n // 64                  # this batch straddles epochs 0 and 1
  assert start * 64 < n < (start + 1) * 64 and start + 6 <= 30
  resumed = take(pipeline.train_iterator(splits, index, config, 3,
                                         start_step=start), 6)
  for a, b in zip(straight[start:], resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  epoch_0 = np.concatenate([b["index"] for b in straight])[:n]
  epoch_1 = np.concatenate([b["index"] for b in straight])[n:2 * n]
  assert sorted(epoch_0) == list(range(n))           # a permutation per epoch
  assert not np.array_equal(epoch_0[:len(epoch_1)], epoch_1)  # reshuffled


def test_train_iterator_starts_far_into_a_run_at_once(digits):
  """Batch 10**9 is computed, not reached by skipping 10**9 batches."""
  splits, index = digits
  far = next(pipeline.train_iterator(splits, index, make_config(), 0,
                                     start_step=10**9))
  assert far["x"].shape == (8, 8, 8, 1)
  assert len(np.unique(far["index"])) == 8
  with pytest.raises(ValueError, match="start_step=-1"):
    pipeline.train_iterator(splits, index, make_config(), 0, start_step=-1)


def test_train_subset_of_neighbours(digits):
  splits, index = digits
  batch = next(pipeline.train_iterator(splits, index, make_config(subset=2), 0))
  check_batch(batch, splits, index, "train", 8, k=2)
  full = splits.train.images[index.neighbours["train"][batch["index"]]]
  for i in range(8):
    chosen = np.floor(batch["neighbours"][i])
    # Each chosen neighbour is one of the k, and the two are distinct ones.
    positions = [{j for j, f in enumerate(full[i]) if np.array_equal(c, f)}
                 for c in chosen]
    assert any(a != b for a in positions[0] for b in positions[1])
  with pytest.raises(ValueError, match="train_subset_k=4"):
    pipeline.train_iterator(splits, index, make_config(subset=4), 0)


def test_each_host_reads_its_own_shard(digits, monkeypatch):
  splits, index = digits
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  for host in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda host=host: host)
    batch = next(pipeline.train_iterator(splits, index, make_config(16), 0))
    assert batch["x"].shape[0] == 8                 # global 16 over 2 hosts
    assert np.all(batch["index"] % 2 == host)       # host p: rows p, p + 2...
  with pytest.raises(ValueError, match="batch_size=15"):
    pipeline.train_iterator(splits, index, make_config(15), 0)


def test_eval_iterator_is_one_ordered_deterministic_pass(digits):
  splits, index = digits
  n = len(splits.validation.labels)
  first = list(pipeline.eval_iterator(splits, index, "validation", 50))
  second = list(pipeline.eval_iterator(splits, index, "validation", 50))
  np.testing.assert_array_equal(
      np.concatenate([b["index"] for b in first]), np.arange(n))
  assert len(first[-1]["index"]) == n - 50 * (len(first) - 1)
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["neighbours"], b["neighbours"])
  with pytest.raises(ValueError, match="split='valid'"):
    pipeline.eval_iterator(splits, index, "valid", 50)


def test_toy_data_are_not_dequantised_and_have_no_neighbours():
  splits = sources.load("rings", num_toy_examples=500)
  batch = next(pipeline.train_iterator(splits, None, make_config(), 0))
  assert sorted(batch) == ["index", "label", "x"]
  assert batch["x"].shape == (8, 2) and batch["x"].dtype == np.float32
  np.testing.assert_array_equal(batch["x"],
                                splits.train.images[batch["index"]])
