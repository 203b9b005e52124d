"""End to end: train_and_evaluate on digits, and the two command lines."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from nbflows import checkpoint_loading
from nbflows import compilation_cache
from nbflows.models import base as model_base
from train.loop import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_KEYS = {"test_bpd", "num_params", "model", "dataset", "num_train_steps",
             "steps_trained", "checkpoint_step"}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, compilation_cache_dir):
  workdir = str(tmp_path_factory.mktemp("digits_quick"))
  with compilation_cache.reused_compilations(compilation_cache_dir):
    results = trainer.train_and_evaluate(default.get_config("quick"), workdir)
  return workdir, results


def tensorboard_scalars(directory):
  """{tag: [(step, value)]} from the event files in `directory`."""
  from nbflows.data import sources
  tf = sources.import_tensorflow()
  scalars = {}
  for name in sorted(os.listdir(directory)):
    for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        assert value.metadata.plugin_data.plugin_name == "scalars"
        scalars.setdefault(value.tag, []).append(
            (event.step, float(tf.make_ndarray(value.tensor))))
  return scalars


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
  events = tensorboard_scalars(os.path.join(workdir, "tensorboard"))
  steps, values = zip(*events["validation/bpd"])
  assert steps == (10, 20)
  assert values == pytest.approx([l["values"]["bpd"] for l in validation])
  assert [step for step, _ in events["train/loss"]] == [5, 10, 15, 20]

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
             PYTHONPATH=REPO)
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
