"""End to end: train_and_evaluate on digits, and the two command lines.

Both compile with XLA's optimisations off (`fast_compiles`,
tests/conftest.py, and JAX_DISABLE_MOST_OPTIMIZATIONS for the command lines):
the quick runs are compile-bound, and what they check does not depend on it.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from nbflows import checkpoint_loading
from nbflows import compilation_cache
from nbflows.models import base as model_base
from train.loop import trainer

pytestmark = pytest.mark.usefixtures("fast_compiles")   # conftest.py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_KEYS = {"test_bpd", "num_params", "model", "dataset", "num_train_steps",
             "steps_trained", "checkpoint_step", "skipped_nonfinite_steps"}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, compilation_cache_dir):
  workdir = str(tmp_path_factory.mktemp("digits_quick"))
  with compilation_cache.reused_compilations(compilation_cache_dir):
    results = trainer.train_and_evaluate(default.get_config("quick"), workdir)
  return workdir, results


def tensorboard_events(directory):
  """({tag: [(step, value)]}, {tag: [(step, uint8 [H, W, C])]}): the scalars
  and images of the event files in `directory`."""
  from nbflows.data import sources
  tf = sources.import_tensorflow()
  scalars, images = {}, {}
  for name in sorted(os.listdir(directory)):
    for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        tensor = tf.make_ndarray(value.tensor)
        if value.metadata.plugin_data.plugin_name == "images":
          width, height, png = tensor
          image = tf.io.decode_png(png).numpy()
          assert image.shape[:2] == (int(height), int(width))
          images.setdefault(value.tag, []).append((event.step, image))
        else:
          assert value.metadata.plugin_data.plugin_name == "scalars"
          scalars.setdefault(value.tag, []).append((event.step,
                                                    float(tensor)))
  return scalars, images


def test_metric_writer_images_round_trip_through_the_event_file(tmp_path):
  from train.loop import metric_writer
  writer = metric_writer.MetricWriter(str(tmp_path))
  grid = np.linspace(0, 1, 5 * 7 * 3).reshape(5, 7, 3)
  writer.write_image(3, "samples", grid)
  writer.write_image(6, "samples", grid[..., :1] * 0.5)
  with pytest.raises(ValueError, match=r"shape \(5, 7\); expected"):
    writer.write_image(9, "samples", grid[..., 0])
  writer.close()
  _, images = tensorboard_events(str(tmp_path / "tensorboard"))
  (step_a, image_a), (step_b, image_b) = images["samples"]
  assert (step_a, step_b) == (3, 6)
  np.testing.assert_array_equal(image_a, np.round(grid * 255))
  np.testing.assert_array_equal(image_b, np.round(grid[..., :1] * 127.5))


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_train_and_evaluate_on_digits_writes_every_output(digits_run):
  workdir, results = digits_run
  config = default.get_config("quick")
  with open(os.path.join(workdir, "eval.json")) as f:
    saved = json.load(f)
  assert EVAL_KEYS <= set(saved)
  assert saved == {k: v for k, v in results.items() if k != "preempted"}
  assert saved["model"] == "rnvp" and saved["dataset"] == "digits"
  assert saved["num_train_steps"] == saved["steps_trained"] == 20
  assert saved["skipped_nonfinite_steps"] == 0
  # Better than the uniform distribution over 17 levels after 20 steps: the
  # bits/dim count the dequantisation and logit terms correctly.
  assert 0.5 < saved["test_bpd"] < math.log2(17), saved

  lines = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  train_lines = [l for l in lines if l["split"] == "train"]
  assert [l["step"] for l in train_lines] == [5, 10, 15, 20]
  assert {"loss", "bpd", "grad_norm", "learning_rate", "skipped_steps",
          "nonfinite_total"} <= set(train_lines[0]["values"])
  assert train_lines[-1]["values"]["loss"] < train_lines[0]["values"]["loss"]
  validation = [l for l in lines if l["split"] == "validation"]
  assert [l["step"] for l in validation] == [10, 20]
  test_lines = [l for l in lines if l["split"] == "test"]
  assert test_lines[0]["values"]["bpd"] == pytest.approx(saved["test_bpd"])
  events, images = tensorboard_events(os.path.join(workdir, "tensorboard"))
  steps, values = zip(*events["validation/bpd"])
  assert steps == (10, 20)
  assert values == pytest.approx([l["values"]["bpd"] for l in validation])
  assert [step for step, _ in events["train/loss"]] == [5, 10, 15, 20]
  # A sample grid per validation: 8 x 8 cells with 1-pixel borders, drawn
  # with the same key, so they differ only by the parameters.
  steps, grids = zip(*images["samples"])
  assert steps == (10, 20)
  assert all(g.shape[2] == 1 and (g.shape[0] - 1) % 9 == 0
             and (g.shape[1] - 1) % 9 == 0 for g in grids)
  assert np.std(grids[1] / 255.0) > 0.05
  assert not np.array_equal(grids[0], grids[1])

  best = min(validation, key=lambda l: l["values"]["bpd"])["step"]
  assert saved["checkpoint_step"] == best
  assert os.listdir(os.path.join(workdir, "best")) == [str(best)]
  assert "20" in os.listdir(os.path.join(workdir, "checkpoints"))

  from matplotlib import image
  grid = image.imread(os.path.join(workdir, "samples.png"))
  assert grid.ndim == 3 and min(grid.shape[:2]) > 32
  assert np.std(grid[..., 0]) > 0.05   # samples, not a blank canvas

  model, params, loaded = checkpoint_loading.load_checkpoint(workdir)
  assert loaded.to_dict() == config.to_dict()
  assert model_base.count_params(params) == saved["num_params"]


def test_rerunning_a_finished_run_resumes_without_training(
    digits_run, compilation_cache_dir):
  workdir, results = digits_run
  with compilation_cache.reused_compilations(compilation_cache_dir):
    again = trainer.train_and_evaluate(default.get_config("quick"), workdir)
  assert again["steps_trained"] == 20
  assert again["test_bpd"] == results["test_bpd"]


def run_module(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
             PYTHONPATH=REPO, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def test_command_lines_train_and_evaluate(tmp_path):
  workdir = str(tmp_path / "cli")
  overrides = ["--config.model=rnvp_mlp", "--config.dataset=two_rectangles",
               "--config.flow.num_layers=2", "--config.num_train_steps=8",
               "--config.eval_every_steps=4",
               "--config.checkpoint_every_steps=4"]
  run = run_module("train.main", "--config", "configs/default.py:quick",
                   "--workdir", workdir, *overrides)
  assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
  assert "test bits/dim:" in run.stdout
  # The console: INFO lines only from this project's modules (orbax's, JAX's
  # and TensorFlow's are dropped, train.cli), one validation line for each
  # of the two evaluations, and the progress bar shows the last value.
  project_files = {name for package in ("nbflows", "train", "configs")
                   for _, _, names in os.walk(os.path.join(REPO, package))
                   for name in names if name.endswith(".py")}
  log_lines = [re.match(r"([IWEF])\d{4} [\d:.]+ +\d+ ([^:\]]+):\d+\] (.*)",
                        line) for line in re.split(r"[\r\n]", run.stderr)]
  info_files = {m.group(2) for m in log_lines if m and m.group(1) == "I"}
  assert info_files and info_files <= project_files, info_files
  assert "oneDNN" not in run.stderr
  validations = [m.group(3) for m in log_lines
                 if m and "validation bits/dim" in m.group(3)]
  assert [line.split(":")[0] for line in validations] == ["step 4", "step 8"]
  assert re.search(r"val_bpd=\d+\.\d{4}", run.stderr)
  with open(os.path.join(workdir, "eval.json")) as f:
    trained = json.load(f)
  assert trained["model"] == "rnvp_mlp" and trained["num_train_steps"] == 8

  os.remove(os.path.join(workdir, "eval.json"))
  run = run_module("train.evaluate", "--config", "configs/default.py:quick",
                   "--workdir", workdir, *overrides)
  assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
  with open(os.path.join(workdir, "eval.json")) as f:
    evaluated = json.load(f)
  assert evaluated == trained   # same checkpoint, same deterministic pass
