"""Kill-and-resume with a real SIGKILL of `python -m train.main`.

One run is killed three times, each at a step drawn from a seeded RNG
(detected by watching its checkpoint directory, with a random delay of up to
0.2 s so the kill lands anywhere in a step or an asynchronous save), then
given a half-written checkpoint on top of its last good one, and resumed
each time with the same --workdir. Its final parameters must be bitwise
those of the same command run uninterrupted: resuming restores the
parameters, optimizer state, step, RNG and data-iterator position exactly,
and a CPU step is deterministic.

The subprocesses share a persistent compilation cache, so only the first
compiles; each start still costs the imports (about 8 s on an idle core).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from nbflows import checkpoint as checkpoint_format
from nbflows import checkpoint_loading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 14
OVERRIDES = [
    "--config.model=rnvp_mlp", "--config.dataset=two_rectangles",
    f"--config.num_train_steps={NUM_STEPS}", "--config.flow.num_layers=2",
    "--config.checkpoint_every_steps=1", "--config.eval_every_steps=4",
    "--config.num_sample_images=4", "--config.optimizer.warmup_steps=2"]
TIMEOUT_S = 300


def start(workdir: str, cache_dir: str, log_path: str) -> subprocess.Popen:
  """Starts the training command line on `workdir`, logging to `log_path`."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=REPO, JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  command = [sys.executable, "-m", "train.main", "--config",
             "configs/default.py:quick", "--workdir", workdir, *OVERRIDES]
  with open(log_path, "w") as log:
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def saved_steps(workdir: str) -> list[int]:
  """Steps of the complete checkpoints (orbax renames a save when done)."""
  directory = os.path.join(workdir, checkpoint_format.LATEST_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def read(path: str) -> str:
  with open(path) as f:
    return f.read()


def kill_after_checkpoint(process: subprocess.Popen, workdir: str, step: int,
                          delay_s: float, log_path: str) -> None:
  """SIGKILLs `process` `delay_s` after a checkpoint of >= `step` appears."""
  deadline = time.time() + TIMEOUT_S
  while not saved_steps(workdir) or saved_steps(workdir)[-1] < step:
    assert process.poll() is None, (
        f"the run exited ({process.returncode}) before step {step}:\n"
        + read(log_path)[-3000:])
    assert time.time() < deadline, read(log_path)[-3000:]
    time.sleep(0.01)
  time.sleep(delay_s)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode == -signal.SIGKILL, read(log_path)[-3000:]


def half_written_save(workdir: str, step: int) -> str:
  """Leaves what a save of `step + 1` killed half-way leaves: orbax's
  temporary directory, with the commit marker missing and a data file cut in
  half."""
  root = os.path.join(workdir, checkpoint_format.LATEST_DIR)
  partial = os.path.join(root, f"{step + 1}.orbax-checkpoint-tmp")
  if os.path.exists(partial):   # the kill itself left one: replace it
    shutil.rmtree(partial)
  shutil.copytree(os.path.join(root, str(step)), partial)
  os.remove(os.path.join(partial, "commit_success.txt"))
  data = os.path.join(partial, checkpoint_format.PARAMS_ITEM, "d")
  victim = os.path.join(data, sorted(os.listdir(data))[0])
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)
  return partial


def test_sigkilled_run_resumes_to_the_uninterrupted_parameters(tmp_path):
  cache_dir, straight = str(tmp_path / "cache"), str(tmp_path / "straight")
  workdir = str(tmp_path / "resumed")
  tick = time.time()
  # The uninterrupted run, alongside the interrupted chain.
  reference = start(straight, cache_dir, str(tmp_path / "straight.log"))

  rng = np.random.default_rng(8)
  kill_points = sorted(rng.choice(np.arange(2, NUM_STEPS - 4), 3,
                                  replace=False).tolist())
  resumed_from, killed_at = [0], []
  for segment, point in enumerate(kill_points):
    log_path = str(tmp_path / f"segment{segment}.log")
    process = start(workdir, cache_dir, log_path)
    target = max(point, resumed_from[-1] + 1)   # each segment trains
    kill_after_checkpoint(process, workdir, target,
                          float(rng.uniform(0.0, 0.2)), log_path)
    if segment:
      assert f"resumed from step {resumed_from[-1]}" in read(log_path)
    killed_at.append(saved_steps(workdir)[-1])
    assert target <= killed_at[-1] < NUM_STEPS, (target, killed_at)
    resumed_from.append(killed_at[-1])
  assert len(set(killed_at)) == 3, killed_at

  partial = half_written_save(workdir, resumed_from[-1])
  log_path = str(tmp_path / "final.log")
  final = start(workdir, cache_dir, log_path)
  assert final.wait(TIMEOUT_S) == 0, read(log_path)[-3000:]
  assert reference.wait(TIMEOUT_S) == 0, read(str(tmp_path / "straight.log"))
  wall_s = time.time() - tick
  # It resumed from the last good checkpoint, past the half-written one,
  # and deleted the latter.
  assert f"resumed from step {resumed_from[-1]}" in read(log_path)
  assert not os.path.exists(partial)

  results = [json.loads(read(os.path.join(d, "eval.json")))
             for d in (straight, workdir)]
  assert results[0] == results[1]           # test bits/dim, best step, ...
  assert results[0]["steps_trained"] == NUM_STEPS
  for which in ("latest", "best"):
    _, want, _ = checkpoint_loading.load_checkpoint(straight, which=which)
    _, got, _ = checkpoint_loading.load_checkpoint(workdir, which=which)
    want, got = jax.device_get((want, got))
    assert jax.tree.structure(want) == jax.tree.structure(got)
    jax.tree.map(np.testing.assert_array_equal, got, want)   # bitwise
  print(f"kill points {kill_points}, killed after checkpoints {killed_at}, "
        f"wall {wall_s:.1f} s")
