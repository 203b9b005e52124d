"""`train --model ... --vs-baseline`: the same step at the baseline commit.

The baseline commit is exported with `git archive` into a temporary
directory, and `train.benchmarks.train_step_driver` (this checkout's copy,
placed in the export) runs there in a subprocess, with the export as its
working directory and PYTHONPATH, so it imports the baseline's nbflows and
train (its JSON line names the `nbflows_file` it imported). Each run
compiles the step, times `--steps` steps and saves the log-likelihoods of
the driver's batch on perturbed parameters, which the caller compares with
its own.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import Any, Dict, Iterator

import numpy as np

# main's train step before issue 21's optimisations (the commit branch wt21s
# started from); `--vs-baseline` times it next to this checkout's.
BASELINE_COMMIT = "80d4fe06eeb8eacea321cd97fad7f86fdf6e6974"

REPO_ROOT = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir))
DRIVER = os.path.join("train", "benchmarks", "train_step_driver.py")


@contextlib.contextmanager
def exported_commit(commit: str = BASELINE_COMMIT) -> Iterator[str]:
  """A temporary directory holding `commit`'s tree and this driver.

  Raises:
    RuntimeError: when git is missing, this checkout is not a git
      repository (e.g. an installed wheel), or it lacks the commit.
  """
  if shutil.which("git") is None:
    raise RuntimeError("--vs-baseline needs git to export the baseline "
                       f"commit {commit}; git was not found on PATH")
  with tempfile.TemporaryDirectory(prefix="nbflows_baseline_") as tmp:
    archive = os.path.join(tmp, "baseline.tar")
    completed = subprocess.run(
        ["git", "-C", REPO_ROOT, "archive", "--format=tar", "-o", archive,
         commit], capture_output=True, text=True, check=False)
    if completed.returncode:
      raise RuntimeError(
          f"--vs-baseline could not export commit {commit} from {REPO_ROOT} "
          f"(it needs a git checkout of nbflows that holds it, not an "
          f"installed copy): {completed.stderr.strip()}")
    tree = os.path.join(tmp, "tree")
    with tarfile.open(archive) as tar:
      tar.extractall(tree)
    shutil.copy(os.path.join(REPO_ROOT, DRIVER), os.path.join(tree, DRIVER))
    yield tree


def run_driver(tree: str, args: Any, log_prob_out: str) -> Dict[str, Any]:
  """One driver run in `tree` for `train --model`'s args: its JSON line.

  Its perturbed log-likelihoods are saved to `log_prob_out`.
  """
  env = dict(os.environ, PYTHONPATH=tree)
  command = [sys.executable, "-m", "train.benchmarks.train_step_driver",
             "--model", args.model, "--data", args.data, "--batch",
             str(args.batch), "--steps", str(args.steps), "--warmup",
             str(args.warmup), "--log-prob-out", log_prob_out]
  if args.quick:
    command.append("--quick")
  completed = subprocess.run(command, cwd=tree, env=env, capture_output=True,
                             text=True, check=False)
  if completed.returncode:
    raise RuntimeError(f"the baseline driver failed in {tree}:\n"
                       f"{completed.stderr[-4000:]}")
  result = json.loads(completed.stdout.strip().splitlines()[-1])
  if not result["nbflows_file"].startswith(tree):
    raise RuntimeError(f"the baseline driver imported {result['nbflows_file']}"
                       f", not the export in {tree}")
  return result


def max_abs_diff(log_prob: np.ndarray, log_prob_path: str) -> float:
  """max |log p| difference against the driver's saved log-likelihoods."""
  return float(np.max(np.abs(log_prob - np.load(log_prob_path))))
