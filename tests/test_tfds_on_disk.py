"""Real TFDS datasets read from disk, offline: the path `tfds.testing.mock_data`
never reaches.

For each image dataset the configs name, the module prepares, in a temporary
data_dir, a small dataset in TFDS's own on-disk format
(`<data_dir>/<name>/<version>/` with dataset_info.json, features.json and
TFRecord shards, written by `tfds.dataset_builders.store_as_tfds_dataset`)
under the registered builder's name and version, with its real features and
splits. `sources.load` and every `ncl_*` and `nct_*` TFDS config then read it
through `tfds.load(..., download=False)`, as they read a dataset prepared by
`tfds build` on a machine with internet: `python -m train.main` for
ncl_mnist, `trainer.train_and_evaluate` in this process for the others (the
same function train.main calls, without a process start per config).

With a few hundred images of CelebA's 12,288 dimensions, `pca.fit` takes its
Gram-matrix route (N < D; tests/test_neighbours.py checks it).

The in-process runs compile with XLA's optimisations off (`fast_compiles`,
tests/conftest.py): they check that each config reads its data and trains,
and a compile of their two steps and one evaluation is most of their time.
"""
from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from nbflows.data import sources
from train.loop import trainer
from test_entry_points import run_module

pytestmark = pytest.mark.usefixtures("fast_compiles")   # conftest.py

# The real datasets' features (TFDS 4.9.10's registered builders): image
# shape, number of classes (None: no label), the other features' names.
REAL_FEATURES = {
    "mnist": ((28, 28, 1), 10, set()),
    "fashion_mnist": ((28, 28, 1), 10, set()),
    "svhn_cropped": ((32, 32, 3), 10, {"id"}),
    "cifar10": ((32, 32, 3), 10, {"id"}),
    "celeb_a": ((218, 178, 3), None, {"attributes", "identity", "landmarks"}),
}
# Examples written per split: enough that every class keeps more than
# cifar10's k = 10 same-class neighbours after the validation hold-out.
NUM_EXAMPLES = {"train": 200, "validation": 16, "test": 48}
# The config files of each dataset (configs/ncl_<suffix>.py, nct_<suffix>.py).
CONFIG_SUFFIX = {"mnist": "mnist", "fashion_mnist": "fashion_mnist",
                 "svhn_cropped": "svhn", "cifar10": "cifar10",
                 "celeb_a": "celeba"}
# Two steps, one validation, one checkpoint and the test evaluation with a
# one-coupling flow: every split is read and the model trains, while the
# compilations stay small (each run is still compile-bound: 12-20 s of CPU).
SHORT_RUN = {"num_train_steps": 2, "eval_every_steps": 2,
             "checkpoint_every_steps": 2, "log_every_steps": 1,
             "optimizer.warmup_steps": 1, "num_sample_images": 0,
             "eval.metrics": "bpd", "flow.num_scales": 1,
             "flow.couplings_per_scale": 1}
SHORT_RUN_FLAGS = [f"--config.{field}={value}"
                   for field, value in SHORT_RUN.items()]


def split_names(name):
  return ("train", "validation", "test") if name == "celeb_a" else ("train",
                                                                     "test")


def fake_value(feature, index, rng):
  """A value of `feature` for example `index` (recursing into dicts)."""
  if isinstance(feature, tfds.features.FeaturesDict):
    return {key: fake_value(sub, index, rng) for key, sub in feature.items()}
  if isinstance(feature, tfds.features.Image):
    if feature.shape[:2] == (218, 178):
      # CelebA is stored as JPEG: one colour per image survives the lossy
      # encoding, the crop and the resize, so the test can find it again.
      return np.full(feature.shape, (index % 256, 255 - index % 256, 7),
                     np.uint8)
    return rng.integers(0, 256, feature.shape, dtype=np.uint8)
  if isinstance(feature, tfds.features.ClassLabel):
    return index % feature.num_classes
  if isinstance(feature, tfds.features.Text):
    return f"example_{index}"
  return np.zeros(feature.shape, feature.np_dtype)


def prepare(name, data_dir, seed=0):
  """Writes `name` into `data_dir` as TFDS would prepare it.

  Returns:
    {split: (features of each example)} as written.
  """
  registered = tfds.builder(name, data_dir=data_dir)  # builds nothing
  features = registered.info.features
  rng = np.random.default_rng(seed)
  written = {split: [fake_value(features, i, rng)
                     for i in range(NUM_EXAMPLES[split])]
             for split in split_names(name)}
  tfds.dataset_builders.store_as_tfds_dataset(
      name=name, version=str(registered.version), features=features,
      data_dir=data_dir,
      split_datasets={split: [(f"{split}_{i}", example)
                              for i, example in enumerate(examples)]
                      for split, examples in written.items()})
  return written


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(data_dir, {name: written examples}) with every TFDS dataset prepared."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  return data_dir, {name: prepare(name, data_dir)
                    for name in sources.TFDS_NAMES}


@pytest.mark.parametrize("name", sources.TFDS_NAMES)
def test_prepared_on_disk_with_the_real_features(name, prepared):
  data_dir, _ = prepared
  builder = tfds.builder(name, data_dir=data_dir)
  assert builder.is_prepared()
  dataset_dir = os.path.join(data_dir, name, str(builder.version))
  assert {"dataset_info.json", "features.json"} <= set(os.listdir(dataset_dir))
  with open(os.path.join(dataset_dir, "dataset_info.json")) as f:
    assert json.load(f)["name"] == name
  shape, num_classes, others = REAL_FEATURES[name]
  features = builder.info.features
  assert features["image"].shape == shape
  assert features["image"].np_dtype == np.uint8
  if num_classes is None:
    assert "label" not in features
  else:
    assert features["label"].num_classes == num_classes
  assert set(features) == {"image"} | others | (
      set() if num_classes is None else {"label"})
  if name == "celeb_a":
    assert len(features["attributes"]) == 40
    assert len(features["landmarks"]) == 10
  assert {split: info.num_examples
          for split, info in builder.info.splits.items()} == {
              split: NUM_EXAMPLES[split] for split in split_names(name)}


@pytest.mark.parametrize("name", sources.TFDS_NAMES)
def test_sources_load_reads_every_written_example(name, prepared):
  data_dir, written = prepared
  splits = sources.load(name, data_dir, validation_fraction=0.25)
  info = sources.dataset_info(name)
  for split in splits[:3]:
    assert split.images.dtype == np.uint8 and split.labels.dtype == np.int32
    assert split.images.shape[1:] == info.event_shape
  assert [len(s.labels) for s in splits[:3]] == [150, 50, 48]

  def as_read(split_name):
    """The written split as `sources.load` should return it, as a multiset."""
    examples = written[name][split_name]
    if name == "celeb_a":
      return sorted((int(e["image"][0, 0, 0]), 0) for e in examples)
    return sorted((e["image"].tobytes(), e["label"]) for e in examples)

  def as_loaded(*loaded):
    images = np.concatenate([s.images for s in loaded])
    labels = np.concatenate([s.labels for s in loaded])
    if name == "celeb_a":
      # Each image is one colour, JPEG-, crop- and resize-exact within 2.
      colours = images.reshape(len(images), -1, 3)
      assert np.all(np.ptp(colours.astype(int), axis=1) <= 2)
      return sorted((int(np.median(c[:, 0])), int(l))
                    for c, l in zip(colours, labels))
    return sorted((im.tobytes(), int(l)) for im, l in zip(images, labels))

  def close(loaded, expected):
    return len(loaded) == len(expected) and all(
        a[1] == b[1] and (a[0] == b[0] if isinstance(a[0], bytes)
                          else abs(a[0] - b[0]) <= 2)
        for a, b in zip(loaded, expected))

  # Train and validation are the written train split; test is test's.
  assert close(as_loaded(splits.train, splits.validation), as_read("train"))
  assert close(as_loaded(splits.test), as_read("test"))


def test_missing_dataset_names_dataset_dir_and_command(tmp_path):
  empty = str(tmp_path / "empty")
  with pytest.raises(sources.DatasetNotPreparedError) as raised:
    sources.load("cifar10", empty)
  error = raised.value
  assert isinstance(error, FileNotFoundError)
  assert (error.name, error.data_dir) == ("cifar10", empty)
  assert error.dataset_dir == os.path.join(empty, "cifar10", "3.0.2")
  message = str(error)
  assert "'cifar10'" in message and empty in message
  assert "tfds build cifar10 --data_dir DIR" in message
  assert "download=False" in message
  assert not os.path.exists(os.path.join(empty, "cifar10"))  # nothing fetched
  # Another version prepared there (by another TFDS) is named too.
  os.makedirs(os.path.join(empty, "cifar10", "1.0.0"))
  with pytest.raises(sources.DatasetNotPreparedError,
                     match=r"holds \['1.0.0'\]; this TFDS reads the version "
                     r"3.0.2"):
    sources.load("cifar10", empty)


def test_missing_dataset_from_the_command_line(tmp_path):
  empty = str(tmp_path / "empty")
  run = run_module("train.main", "--config", "configs/ncl_mnist.py:quick",
                   "--workdir", str(tmp_path / "run"),
                   f"--config.data_dir={empty}", *SHORT_RUN_FLAGS)
  assert run.returncode != 0
  assert "DatasetNotPreparedError: TFDS dataset 'mnist'" in run.stderr
  assert f"data_dir {empty!r}" in run.stderr
  assert "tfds build mnist --data_dir DIR" in run.stderr
  assert "tensorflow_datasets/core" not in run.stderr   # no trace from TFDS


def check_run(results, workdir, name, family):
  """The run trained two steps on `name` and wrote a sane eval.json."""
  with open(os.path.join(workdir, "eval.json")) as f:
    saved = json.load(f)
  assert saved == {k: v for k, v in results.items() if k != "preempted"}
  assert (saved["dataset"], saved["model"]) == (name, family)
  assert saved["steps_trained"] == 2
  # Bits/dim of 8-bit noise under a barely trained flow: near the uniform
  # distribution's 8 bits, not NaN or far off.
  assert 7.0 < saved["test_bpd"] < 12.0, saved


def test_train_main_command_line_on_prepared_mnist(prepared, tmp_path):
  data_dir, _ = prepared
  workdir = str(tmp_path / "run")
  run = run_module("train.main", "--config", "configs/ncl_mnist.py:quick",
                   "--workdir", workdir, f"--config.data_dir={data_dir}",
                   *SHORT_RUN_FLAGS)
  assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
  assert "test bits/dim:" in run.stdout
  with open(os.path.join(workdir, "eval.json")) as f:
    results = json.load(f)
  check_run(results, workdir, "mnist", "ncl")


# Every ncl_* and nct_* TFDS config but the command line's above, in process
# (each run is compile-bound; a process start would add its imports).
IN_PROCESS = [(family, name) for name in sources.TFDS_NAMES
              for family in ("ncl", "nct")
              if (family, name) != ("ncl", "mnist")]


@pytest.mark.parametrize("family,name", IN_PROCESS)
def test_config_trains_on_prepared_tfds_data(family, name, prepared, tmp_path):
  data_dir, _ = prepared
  config = importlib.import_module(
      f"configs.{family}_{CONFIG_SUFFIX[name]}").get_config("quick")
  config.update_from_flattened_dict(dict(SHORT_RUN, data_dir=data_dir))
  workdir = str(tmp_path / "run")
  results = trainer.train_and_evaluate(config, workdir)
  check_run(results, workdir, name, family)
