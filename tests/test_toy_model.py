"""Adding a model takes one module (tests/toy_model.py) and one registry line.

The diagonal Gaussian of tests/toy_model.py, registered by one line, is
trained by `train.loop.trainer`, evaluated by `train.evaluate` and loaded by
`nbflows.checkpoint_loading.load_checkpoint` with no other change; its
eval.json test bits/dim is its own log_prob on the test split.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from configs import maf_two_rectangles
from nbflows import checkpoint_loading
from nbflows.data import pipeline
from nbflows.models import protocols
from nbflows.models import registry
from train.evaluation import evaluate
from train.loop import trainer
import toy_model


@pytest.fixture
def toy_config(monkeypatch):
  monkeypatch.setitem(registry.BUILDERS, "toy_gaussian",
                      toy_model.build_toy_gaussian)   # the one registry line
  config = maf_two_rectangles.get_config("quick")
  config.model = "toy_gaussian"
  config.num_train_steps = 6
  config.log_every_steps = 3
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 3
  config.num_sample_images = 0
  config.eval.metrics = "bpd"
  config.optimizer.learning_rate = 0.1
  return config


def test_a_registered_toy_model_trains_evaluates_and_loads(toy_config,
                                                           tmp_path):
  workdir = str(tmp_path)
  model = registry.build_model(toy_config)
  assert protocols.offers(model, protocols.Trainable)
  assert protocols.offers(model, protocols.Density)
  assert not protocols.offers(model, protocols.Bijective)

  trained = trainer.train_and_evaluate(toy_config, workdir)
  assert trained["steps_trained"] == 6 and not trained["preempted"]

  report = evaluate.evaluate(toy_config, workdir)
  with open(os.path.join(workdir, evaluate.EVAL_FILE)) as f:
    assert json.load(f) == report
  assert report["model"] == "toy_gaussian"
  assert report["num_params"] == 4                 # mean and log_scale, D = 2

  loaded, params, config = checkpoint_loading.load_checkpoint(workdir)
  assert config.model == "toy_gaussian"
  assert isinstance(loaded.module, toy_model.DiagonalGaussian)
  moved = params["params"]
  assert float(np.abs(np.asarray(moved["mean"])).max()) > 0  # it trained
  splits, _ = evaluate.load_data(config, loaded)
  test_x = np.concatenate([batch["x"] for batch in pipeline.eval_iterator(
      splits, None, "test", config.eval_batch_size)])
  bpd = -np.asarray(loaded.log_prob(params, test_x), np.float64) / (
      test_x.shape[1] * math.log(2.0))
  assert report["test_bpd"] == pytest.approx(bpd.mean(), rel=1e-5)
  assert trained["test_bpd"] == pytest.approx(report["test_bpd"], rel=1e-6)
