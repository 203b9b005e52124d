r"""Paper 5, Fig. 4 at small scale: GLF (eq. 5) against regularised GLF (eq. 4).

  python -m train.glf_stability --workdir_root DIR

trains, with the same overrides, `configs/glf_digits.py` (GLF, eq. 5: the
flow scores sg[E(x)]) in ``<workdir_root>/glf`` and
`configs/glf_regularised_digits.py` (eq. 4, beta = 50, no stop-gradient)
in ``<workdir_root>/glf_regularised``: `NUM_TRAIN_STEPS` steps at a constant
learning rate (paper 5, App. B.6: Adam at 1e-3, halved only every 150
epochs; the configs' cosine would hide a late collapse), training metrics
logged at every step, then the `--set` overrides. Per step, from each
run's metrics.jsonl (`GLFModel.loss`'s batch means):

  * latent norm: ||E(x)||_2, the codes' size. Under eq. 4 the flow's
    log-det grows as the codes shrink and the encoder obliges (Sec. 3.3.1);
    under eq. 5 nothing pulls them in;
  * NLL: L_NLL = -log p_f(E(x)) (Fig. 4c: under eq. 4 it falls without
    bound, "a negative value of very large magnitude");
  * reconstruction: L_recon (Fig. 4b);

and from eval.json `skipped_nonfinite_steps`, the steps the trainer dropped
for a NaN or infinite loss or gradient (the "numerical issues" of Sec.
3.3.1 would show there, not in the curves). `plot` draws the three curves
of both models against the step on log axes (symmetric-log for the NLL,
which turns negative); `format_table` gives one row per model.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from train.experiments import compare
from train.loop import trainer

MODELS = (("glf", "configs/glf_digits.py"),
          ("glf_regularised", "configs/glf_regularised_digits.py"))
# 3,000 steps (2,300 epochs of the 1,294 training digits, more than Fig. 4's
# 500) take about 70 s a model on two idle CPU cores.
NUM_TRAIN_STEPS = 3000
FIXED_OVERRIDES = ("log_every_steps=1", "optimizer.schedule=constant")
CURVES = ("latent_norm", "nll", "reconstruction")
COLUMNS = (("model", "model", "{}"), ("objective", "objective", "{}"),
           ("beta", "beta", "{:g}"), ("steps", "steps_trained", "{}"),
           ("latent norm, peak", "latent_norm_peak", "{:.3g}"),
           ("latent norm, final", "latent_norm_final", "{:.3g}"),
           ("NLL min", "nll_min", "{:.2f}"), ("NLL max", "nll_max", "{:.2f}"),
           ("NLL final", "nll_final", "{:.2f}"),
           ("skipped steps", "skipped_nonfinite_steps", "{}"))


def read_curves(workdir: str) -> Dict[str, np.ndarray]:
  """{"step", *CURVES}: float arrays over the run's training log lines.

  A value the writer stored as null (non-finite, or a step skipped alone in
  its window) is NaN.
  """
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  train = [line for line in lines if line["split"] == "train"]
  missing = [name for name in CURVES if train and name not in
             train[0]["values"]]
  if not train or missing:
    raise ValueError(f"{workdir}/metrics.jsonl has {len(train)} training "
                     f"lines without {missing or list(CURVES)}; expected a "
                     "GLF run's (GLFModel.loss logs them)")
  curves = {"step": np.array([line["step"] for line in train], np.float64)}
  for name in CURVES:
    curves[name] = np.array([np.nan if line["values"][name] is None
                             else line["values"][name] for line in train],
                            np.float64)
  return curves


def summary(name: str, config: Any, curves: Mapping[str, np.ndarray],
            results: Mapping[str, Any]) -> Dict[str, Any]:
  """The table row of one model: its curves' extremes and skipped steps."""
  norm, nll = curves["latent_norm"], curves["nll"]
  return {"model": name, "objective": config.glf.objective,
          "beta": float(config.glf.beta),
          "steps_trained": results["steps_trained"],
          "latent_norm_peak": float(np.nanmax(norm)),
          "latent_norm_final": float(norm[-1]),
          "nll_min": float(np.nanmin(nll)), "nll_max": float(np.nanmax(nll)),
          "nll_final": float(nll[-1]),
          "skipped_nonfinite_steps": results["skipped_nonfinite_steps"],
          "frechet_distance": results.get("frechet_distance", float("nan"))}


def run(workdir_root: str, overrides: Sequence[str] = (),
        num_train_steps: int = NUM_TRAIN_STEPS
        ) -> tuple[List[Dict[str, Any]], Dict[str, Dict[str, np.ndarray]]]:
  """Trains (or resumes, or reuses) both models; (rows, curves by model)."""
  rows, curves = [], {}
  for name, path in MODELS:
    config = compare.load_config(path, [
        f"num_train_steps={num_train_steps}", *FIXED_OVERRIDES, *overrides])
    workdir = os.path.join(workdir_root, name)
    results = trainer.train_and_evaluate(config, workdir)
    curves[name] = read_curves(workdir)
    rows.append(summary(name, config, curves[name], results))
  return rows, curves


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """The Markdown table of `COLUMNS`, one row per model."""
  return compare.markdown_table(rows, COLUMNS)


def plot(curves: Mapping[str, Mapping[str, np.ndarray]], path: str) -> None:
  """Latent norm, NLL and reconstruction against the step, both models."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  titles = {"latent_norm": "latent norm ||E(x)||", "nll": "NLL -log p_f(z)",
            "reconstruction": "reconstruction L_recon"}
  fig, axes = plt.subplots(1, len(CURVES), figsize=(12, 3.4))
  for ax, name in zip(axes, CURVES):
    for model, curve in curves.items():
      ax.plot(curve["step"], curve[name], label=model, linewidth=0.8)
    ax.set_xscale("log")
    if name == "nll":
      ax.set_yscale("symlog", linthresh=1.0)
    else:
      ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_title(titles[name])
  axes[0].legend()
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
