"""The tf.data input pipeline: batches of examples and their neighbourhoods.

A batch is a dict of NumPy arrays:

  "x"           float32 [B, *event]     the examples, dequantised
  "neighbours"  float32 [B, k, *event]  their neighbourhoods (training
                                        examples), dequantised the same way;
                                        absent when there is no index
  "label"       int32 [B]
  "index"       int32 [B]               the examples' rows in their split
  "context"     float32 [B, C]          the examples' context vectors, for a
                                        dataset with them (`Split.context`,
                                        e.g. "rotated_moons"); else absent

Images are dequantised as in paper 1, Sec. 4: x = uint8 + u, u ~ U[0, 1), in
the data units of `nbflows.models.base` (x + u capped below x + 1, which
float32 rounding would otherwise reach for x >= 128); the 2-D toy targets are continuous
and are passed through unchanged. For a k-means index the neighbourhood is
the prototypes of the example's cluster (App. B.5).

Training batches (`train_iterator`) come from a seeded permutation per epoch
of this host's shard of the training split (host p of P takes rows p, p + P,
...), repeated forever, `config.batch_size // P` per host; all randomness
(order, noise, the optional subset of `config.neighbours.train_subset_k` of
the k neighbours) is a function of the seed and the batch number, so two
iterators with the same seed are equal and one can start at any batch in
constant time (a resumed run).

The images stay uint8 in host memory, once: batches gather from the NumPy
arrays of `splits` (no TensorFlow or float copy of a split) and are
dequantised per batch.

Evaluation batches (`eval_iterator`) are one pass over a whole split in
order, the last batch possibly smaller, with noise drawn from a fixed seed.

TensorFlow runs on the host CPU only (`sources.import_tensorflow`).

Example:
  >>> from nbflows.data import pipeline, sources
  >>> from configs import default
  >>> splits = sources.load("digits")
  >>> batch = next(pipeline.train_iterator(splits, None, default.get_config(), 0))
  >>> sorted(batch), batch["x"].shape, batch["x"].dtype.name
  (['index', 'label', 'x'], (64, 8, 8, 1), 'float32')
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

import jax
import numpy as np

from nbflows.data import sources

tf = sources.import_tensorflow()

Batch = Dict[str, np.ndarray]
_NOISE_SALT = 0x5EED
_LAST_STEP = 2**62  # "forever": far beyond any run's number of steps


def train_iterator(splits: sources.Splits, index: Optional[Any], config: Any,
                   seed: int, *, start_step: int = 0) -> Iterator[Batch]:
  """Training batches of this host's shard, shuffled and repeated forever.

  Epoch e visits this host's rows in the order of a stateless permutation
  seeded by (seed, host, e) (`tf.random.experimental.index_shuffle`), so
  batch number s is a function of the seed and s alone: starting at
  `start_step` costs the same whatever the step (a resumed run skips no
  batches through the map) and gives the batches an uninterrupted run would
  have given from there.

  Args:
    splits: the dataset.
    index: a `nbflows.neighbours.index.NeighbourIndex`, or None for batches
      without "neighbours".
    config: the run's config (batch_size, neighbours.train_subset_k).
    seed: the seed of the order, the dequantisation noise and the neighbour
      subsets.
    start_step: the number of the first batch (the step a run resumes at).

  Returns:
    An iterator of batch dicts with `config.batch_size // jax.process_count()`
    examples each.

  Raises:
    ValueError: if the batch size does not split evenly over the hosts, is
      larger than this host's shard, `train_subset_k` exceeds k, or
      `start_step` is negative.
  """
  hosts, host = jax.process_count(), jax.process_index()
  if config.batch_size % hosts:
    raise ValueError(f"config.batch_size={config.batch_size} does not split "
                     f"evenly over {hosts} hosts")
  batch_size = config.batch_size // hosts
  n = len(splits.train.labels)
  shard_size = len(range(host, n, hosts))
  if batch_size > shard_size:
    raise ValueError(f"per-host batch size {batch_size} exceeds the "
                     f"{shard_size} training examples of host {host}")
  subset = int(config.neighbours.train_subset_k)
  if index is not None and not 0 <= subset <= index.k:
    raise ValueError(f"config.neighbours.train_subset_k={subset}; expected 0 "
                     f"(all) or at most the index's k={index.k}")
  if start_step < 0:
    raise ValueError(f"start_step={start_step}; expected >= 0")
  base_seed = tf.constant(seed * 1_000_003 + host, tf.int64)

  def rows_of(step):
    """The training rows of batch `step`: [batch_size] int64."""
    position = step * batch_size + tf.range(batch_size, dtype=tf.int64)
    offset = position % shard_size
    first_epoch = position[0] // shard_size
    # A batch spans at most two epochs (batch_size <= shard_size). One
    # scalar seed per epoch: index_shuffle mis-pads batched [n, 2] seeds.
    orders = [tf.random.experimental.index_shuffle(
        offset, tf.stack([base_seed, epoch]), shard_size - 1)
              for epoch in (first_epoch, first_epoch + 1)]
    shard_rows = tf.where(position // shard_size == first_epoch, *orders)
    return host + hosts * shard_rows

  steps = tf.data.Dataset.range(start_step, _LAST_STEP)
  batches = steps.map(lambda step: (step, rows_of(step)))
  make = _batch_fn(splits, index, "train", noise_seed=(seed, host),
                   subset=subset)
  return _as_numpy(batches.map(make, num_parallel_calls=tf.data.AUTOTUNE))


def eval_iterator(splits: sources.Splits, index: Optional[Any], split: str,
                  batch_size: int, seed: int = 0) -> Iterator[Batch]:
  """One deterministic pass over a whole split, in order.

  Args:
    splits: the dataset.
    index: the neighbour index, or None.
    split: "train", "validation" or "test".
    batch_size: examples per batch (the last batch may be smaller).
    seed: seed of the dequantisation noise; the same seed gives the same
      batches on every call.

  Returns:
    An iterator over every example of the split exactly once.

  Raises:
    ValueError: for an unknown split name.
  """
  if split not in ("train", "validation", "test"):
    raise ValueError(f"split={split!r}; expected 'train', 'validation' or "
                     "'test'")
  n = len(getattr(splits, split).labels)
  batches = tf.data.Dataset.range(n).batch(batch_size).enumerate()
  make = _batch_fn(splits, index, split, noise_seed=(seed, _NOISE_SALT),
                   subset=0)
  return _as_numpy(batches.map(make, num_parallel_calls=tf.data.AUTOTUNE))


def _batch_fn(splits: sources.Splits, index: Optional[Any], split: str,
              noise_seed, subset: int):
  """(batch number, rows [B]) -> batch dict, with stateless randomness."""
  data = getattr(splits, split)
  images = _gather_from(data.images)
  labels = tf.constant(data.labels.astype(np.int32))
  context = None if data.context is None else tf.constant(
      data.context.astype(np.float32))
  train_images = _gather_from(splits.train.images)
  neighbours = None if index is None else tf.constant(
      index.neighbours[split].astype(np.int32))
  continuous = splits.info.num_levels is None
  base_seed = tf.constant(noise_seed, tf.int64)

  def dequantise(x, seed):
    x = tf.cast(x, tf.float32)
    if continuous:
      return x
    u = tf.random.stateless_uniform(tf.shape(x), seed=seed)
    # In float32, 157 + 0.99999994 rounds to 158: cap at the largest float
    # below x + 1 so that floor(x + u) == x and x + u < num_levels.
    return tf.minimum(x + u, tf.math.nextafter(x + 1.0, x))

  def make(step, rows):
    seeds = tf.random.experimental.stateless_split(
        tf.stack([base_seed[0] * 1_000_003 + base_seed[1], step]), 3)
    batch = {"x": dequantise(images(rows), seeds[0]),
             "label": tf.gather(labels, rows),
             "index": tf.cast(rows, tf.int32)}
    if context is not None:
      batch["context"] = tf.gather(context, rows)
    if neighbours is not None:
      chosen = tf.gather(neighbours, rows)                       # [B, k]
      if subset:
        keys = tf.random.stateless_uniform(tf.shape(chosen), seed=seeds[1])
        order = tf.argsort(keys, axis=1)[:, :subset]
        chosen = tf.gather(chosen, order, batch_dims=1)          # [B, s]
      batch["neighbours"] = dequantise(train_images(chosen),
                                       seeds[2])
    return batch

  return make


def _gather_from(images: np.ndarray):
  """rows -> images[rows], read from the NumPy array itself.

  A `tf.constant` of the images, captured by a tf.data function, holds its
  own copies of them (measured: two extra bytes per image byte); gathering
  through `tf.numpy_function` keeps the host's one uint8 copy, shared by
  every iterator over the same splits.
  """
  event_shape = tf.TensorShape(images.shape[1:])
  dtype = tf.as_dtype(images.dtype)

  def gather(rows):
    taken = tf.numpy_function(lambda r: images[r], [rows], dtype,
                              stateful=False)
    taken.set_shape(rows.shape.concatenate(event_shape))
    return taken

  return gather


def _as_numpy(dataset) -> Iterator[Batch]:
  options = tf.data.Options()
  options.deterministic = True
  return dataset.with_options(options).prefetch(
      tf.data.AUTOTUNE).as_numpy_iterator()
