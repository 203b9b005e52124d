"""Metrics of a run: `workdir/metrics.jsonl` and TensorBoard event files.

Each line of metrics.jsonl is one JSON object

  {"step": 20, "split": "train" | "validation" | "test", "values": {...}}

with non-finite values written as null. TensorBoard gets one scalar per value,
tagged "<split>/<name>", under `workdir/tensorboard`, and the images of
`write_image` (the trainer's sample grids, tag "samples"); the events are
written with `tf.summary.write` and the scalars and images plugins' metadata
and tensor layouts, so the `tensorboard` package itself is not needed to
write them (only to view them). Only process 0 writes.
"""
from __future__ import annotations

import json
import os
from typing import Mapping

import jax
import numpy as np

from nbflows.data import sources


class MetricWriter:
  """Appends metrics to `workdir/metrics.jsonl` and TensorBoard (process 0).

  Example:
    >>> import tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> writer = MetricWriter(workdir)
    >>> writer.write(10, "validation", {"bpd": 1.5, "nll": float("nan")})
    >>> writer.close()
    >>> print(open(os.path.join(workdir, "metrics.jsonl")).read().strip())
    {"step": 10, "split": "validation", "values": {"bpd": 1.5, "nll": null}}
  """

  def __init__(self, workdir: str):
    self._enabled = jax.process_index() == 0
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._summary = None
    if self._enabled:
      tf = sources.import_tensorflow()
      self._tf = tf
      self._metadata = tf.compat.v1.SummaryMetadata(
          plugin_data=tf.compat.v1.SummaryMetadata.PluginData(
              plugin_name="scalars"))
      self._summary = tf.summary.create_file_writer(
          os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
    """Records `values` of `split` at `step`."""
    if not self._enabled:
      return
    values = {k: (float(v) if np.isfinite(v) else None)
              for k, v in sorted(values.items())}
    with open(self._path, "a") as f:
      record = {"step": step, "split": split, "values": values}
      f.write(json.dumps(record) + "\n")
    with self._summary.as_default():
      for name, value in values.items():
        if value is not None:
          self._tf.summary.write(f"{split}/{name}",
                                 self._tf.constant(value, self._tf.float32),
                                 step=step, metadata=self._metadata)
    self._summary.flush()

  def write_image(self, step: int, tag: str, image: np.ndarray) -> None:
    """Records `image`, [H, W, C] in [0, 1] with C in (1, 3), at `step`.

    The images plugin's tensor: the width and height as strings, then the
    PNG (what `tensorboard.summary.image` writes for one image).
    """
    if not self._enabled:
      return
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
      raise ValueError(f"image has shape {image.shape}; expected [height, "
                       "width, 1 or 3 channels]")
    tf = self._tf
    png = tf.io.encode_png(np.round(np.clip(image, 0, 1) * 255).astype(
        np.uint8))
    height, width = image.shape[:2]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), png])
    with self._summary.as_default():
      tf.summary.write(tag, tensor, step=step,
                       metadata=tf.compat.v1.SummaryMetadata(
                           plugin_data=tf.compat.v1.SummaryMetadata.PluginData(
                               plugin_name="images")))
    self._summary.flush()

  def close(self) -> None:
    """Flushes and closes the event file."""
    if self._summary is not None:
      self._summary.close()
