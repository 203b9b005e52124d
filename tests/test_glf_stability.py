"""train.glf_stability (paper 5, Fig. 4): both runs, their curves, the plot."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from nbflows import compilation_cache
from nbflows.models import glf
from train.experiments import glf_stability

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

STEPS = 4
TINY = ("batch_size=8", "eval_every_steps=4", "checkpoint_every_steps=4",
        "optimizer.warmup_steps=1", "num_sample_images=0",
        "glf.hidden=(8,)", "glf.flow_hidden=(4,)", "glf.latent_dim=2")


def test_both_runs_log_every_step_and_count_skipped_steps(
    tmp_path, monkeypatch, compilation_cache_dir):
  monkeypatch.setattr(glf_stability, "MODELS", tuple(
      (name, f"{path}:quick") for name, path in glf_stability.MODELS))
  # No Frechet distance (its classifier and samples are half the compiles).
  monkeypatch.setattr(glf.GLFModel, "default_metrics", lambda self, images: ())
  with compilation_cache.reused_compilations(compilation_cache_dir):
    rows, curves = glf_stability.run(str(tmp_path), TINY, STEPS)
  assert [row["model"] for row in rows] == ["glf", "glf_regularised"]
  assert [row["objective"] for row in rows] == ["stop_gradient",
                                                "regularised"]
  for row in rows:
    name = row["model"]
    # One training line per step (log_every_steps=1), each with the curves.
    np.testing.assert_array_equal(curves[name]["step"],
                                  np.arange(1, STEPS + 1))
    with open(tmp_path / name / "metrics.jsonl") as f:
      lines = [json.loads(line) for line in f]
    train = [line["values"] for line in lines if line["split"] == "train"]
    assert len(train) == STEPS
    for curve in glf_stability.CURVES:
      np.testing.assert_allclose(curves[name][curve],
                                 [values[curve] for values in train])
    assert np.all(curves[name]["latent_norm"] > 0)
    with open(tmp_path / name / "eval.json") as f:
      saved = json.load(f)
    assert saved["skipped_nonfinite_steps"] == row[
        "skipped_nonfinite_steps"] == 0
    assert row["latent_norm_final"] == curves[name]["latent_norm"][-1]
    assert row["nll_min"] == np.min(curves[name]["nll"])
    assert row["nll_max"] == np.max(curves[name]["nll"])
  table = glf_stability.format_table(rows).splitlines()
  assert len(table) == 4 and "| glf_regularised | regularised | 50 |" in (
      table[3])
  path = str(tmp_path / "figures" / "fig4.png")
  glf_stability.plot(curves, path)
  from matplotlib import image  # pylint: disable=g-import-not-at-top
  assert image.imread(path).shape[1] > 600


def test_curves_need_a_glf_run(tmp_path):
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.write(json.dumps({"step": 1, "split": "train",
                        "values": {"loss": 1.0}}) + "\n")
  with pytest.raises(ValueError, match=r"without \['latent_norm', 'nll', "
                     r"'reconstruction'\]; expected a GLF run"):
    glf_stability.read_curves(str(tmp_path))
  assert os.listdir(tmp_path) == ["metrics.jsonl"]
