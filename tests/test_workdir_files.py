"""What a trained workdir's files survive: a second run, damaged files.

One tiny run (RealNVP-MLP on two_rectangles, checkpoints at steps 4 and 8)
is trained once for the module; each test damages a copy of it. A second
run in a locked workdir must refuse before writing anything (every file
byte-identical afterwards); each damaged file must give an error naming it
and the remedy, or, for a checkpoint, fall back to the previous readable
step with a warning naming both.
"""
from __future__ import annotations

import glob
import hashlib
import os
import logging
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import default
from nbflows import checkpoint as checkpoint_format
from nbflows import checkpoint_fallback
from nbflows import checkpoint_loading
from train.evaluation import evaluate
from train.loop import trainer
from train.loop import workdir_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = {"model": "rnvp_mlp", "dataset": "two_rectangles",
             "num_train_steps": 8, "eval_every_steps": 4,
             "checkpoint_every_steps": 4, "flow.num_layers": 2,
             "num_sample_images": 4, "optimizer.warmup_steps": 2}


def run_config():
  config = default.get_config("quick")
  config.update_from_flattened_dict(OVERRIDES)
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  trainer.train_and_evaluate(run_config(), workdir)
  assert checkpoint_format.all_steps(workdir, "latest") == [8, 4]
  return workdir


@pytest.fixture
def copy(trained, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  return workdir


def file_hashes(workdir):
  hashes = {}
  for root, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        hashes[os.path.relpath(path, workdir)] = hashlib.sha256(
            f.read()).hexdigest()
  return hashes


def truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def params_of(workdir, which, step):
  """The parameters of one checkpoint, read directly."""
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      checkpoint_format.stored_params(
          checkpoint_fallback.step_dir(workdir, which, step)))
  return jax.device_get(checkpoint_format.restore_params(
      workdir, abstract, which, step)[0])


def assert_same(a, b):
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(a),
               jax.device_get(b))


# ------------------------------------------------------------ the lock
def test_a_second_command_line_run_refuses_and_touches_nothing(copy):
  before = file_hashes(copy)
  with workdir_lock.hold(copy) as lock:       # the first run, still running
    before_locked = file_hashes(copy)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
               PYTHONPATH=REPO)
    run = subprocess.run(
        [sys.executable, "-m", "train.main", "--config",
         "configs/default.py:quick", "--workdir", copy,
         *[f"--config.{k}={v}" for k, v in OVERRIDES.items()],
         "--config.num_train_steps=16"],    # would train on if it started
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]   # one line
    for part in ("error: workdir", "is in use by another run", f"pid {os.getpid()}", lock,
                 "Nothing was written"):
      assert part in run.stderr, (part, run.stderr[-3000:])
    assert file_hashes(copy) == before_locked     # byte-identical
  assert file_hashes(copy) == before


def test_evaluation_and_training_refuse_a_workdir_another_process_holds(
    copy):
  holder = subprocess.Popen([sys.executable, "-c",
                             "import time; time.sleep(120)"])
  try:
    path = workdir_lock.lock_path(copy)
    with open(path, "w") as f:
      f.write('{"host": "%s", "pid": %d, "since": "now"}'
              % (socket.gethostname(), holder.pid))
    before = file_hashes(copy)
    with pytest.raises(workdir_lock.WorkdirLockedError,
                       match=f"pid {holder.pid}"):
      evaluate.evaluate(run_config(), copy)
    with pytest.raises(workdir_lock.WorkdirLockedError,
                       match=f"pid {holder.pid}"):
      trainer.train_and_evaluate(run_config(), copy)
    assert file_hashes(copy) == before
  finally:
    holder.kill()
    holder.wait()


# ------------------------------------------------------------ checkpoints
def test_a_truncated_metadata_falls_back_to_the_latest_checkpoint(copy,
                                                                  trained):
  best = checkpoint_format.all_steps(copy, "best")[0]
  truncate(os.path.join(copy, "best", str(best), "params", "_METADATA"))
  with pytest.warns(checkpoint_fallback.CheckpointFallbackWarning) as caught:
    _, params, _ = checkpoint_loading.load_checkpoint(copy)
  message = str(caught[0].message)
  assert os.path.join(copy, "best", str(best)) in message
  assert "JSONDecodeError" in message
  assert f"loaded {os.path.join(copy, 'checkpoints', '8')}" in message
  assert_same(params, params_of(trained, "latest", 8))


def test_a_damaged_array_file_falls_back_to_the_previous_step(copy, trained):
  best = checkpoint_format.all_steps(copy, "best")[0]
  for step_dir in (os.path.join(copy, "best", str(best)),
                   os.path.join(copy, "checkpoints", "8")):
    for path in glob.glob(os.path.join(step_dir, "params", "ocdbt.process_0",
                                       "d", "*")):
      truncate(path)
  with pytest.warns(checkpoint_fallback.CheckpointFallbackWarning) as caught:
    _, params, _ = checkpoint_loading.load_checkpoint(copy)
  message = str(caught[0].message)
  assert os.path.join(copy, "best", str(best)) in message
  assert os.path.join(copy, "checkpoints", "8 (") in message
  assert "OUT_OF_RANGE" in message and "TensorStore({" not in message
  assert f"loaded {os.path.join(copy, 'checkpoints', '4')}" in message
  assert_same(params, params_of(trained, "latest", 4))


def test_no_readable_checkpoint_is_an_error_listing_each(copy):
  for path in glob.glob(os.path.join(copy, "*", "*", "params", "_METADATA")):
    truncate(path)
  with pytest.raises(checkpoint_fallback.UnreadableCheckpointError) as error:
    checkpoint_loading.load_checkpoint(copy)
  message = str(error.value)
  for which, step in checkpoint_fallback.candidates(copy):
    assert checkpoint_fallback.step_dir(copy, which, step) in message
  assert "restore the workdir from a copy" in message


def test_resuming_skips_a_damaged_checkpoint_and_rewrites_config_json(
    copy, trained, caplog):
  """Resumed from step 4 past a damaged step 8, training reaches the
  parameters the first run had at step 8, bitwise; the damaged step is kept
  aside and the truncated config.json is written again."""
  for path in glob.glob(os.path.join(copy, "checkpoints", "8", "params",
                                     "ocdbt.process_0", "d", "*")):
    truncate(path)
  config_path = os.path.join(copy, checkpoint_format.CONFIG_FILE)
  truncate(config_path)
  with pytest.raises(checkpoint_format.UnreadableConfigError) as error:
    checkpoint_loading.load_checkpoint(copy)
  for part in (config_path, "truncated", "python -m train.main",
               "save_config"):
    assert part in str(error.value)

  caplog.set_level(logging.INFO, logger="absl")
  with pytest.warns(checkpoint_fallback.CheckpointFallbackWarning,
                    match="checkpoints/8 .*loaded .*checkpoints/4"):
    results = trainer.train_and_evaluate(run_config(), copy)
  assert results["steps_trained"] == 8
  assert "resumed from step 4" in caplog.text
  assert os.path.isdir(os.path.join(copy, "unreadable_checkpoints", "8"))
  assert_same(params_of(copy, "latest", 8), params_of(trained, "latest", 8))
  with open(config_path) as f, open(os.path.join(
      trained, checkpoint_format.CONFIG_FILE)) as g:
    assert f.read() == g.read()


# ------------------------------------------------------------ neighbours
NCL_OVERRIDES = {"num_train_steps": 2, "eval_every_steps": 2,
                 "optimizer.warmup_steps": 1, "eval.metrics": "bpd",
                 "num_sample_images": 4, "flow.couplings_per_scale": 1,
                 "flow.num_layers": 2}


def test_stale_and_truncated_indices_name_the_file_and_rebuild_index(
    tmp_path):
  """A stale cached index (other data) and a truncated one each stop the run
  before it trains, naming the file and `--rebuild_index`; the command line
  with `--rebuild_index` rebuilds both indices the run reads and trains."""
  from configs import ncl_digits
  from nbflows.data import sources
  from nbflows.neighbours import index as index_lib
  cache, workdir = str(tmp_path / "cache"), str(tmp_path / "run")
  config = ncl_digits.get_config("quick")
  config.update_from_flattened_dict(dict(NCL_OVERRIDES, data_dir=cache))
  splits = sources.load("digits", validation_fraction=0.1, test_fraction=0.2)
  other = splits._replace(train=sources.Split(
      splits.train.images[::-1].copy(), splits.train.labels[::-1].copy()))
  free = evaluate.label_free_neighbours(config.neighbours)
  paths = [index_lib.default_path(splits, settings, cache)
           for settings in (config.neighbours, free)]
  for settings, path in zip((config.neighbours, free), paths):
    index_lib.save(index_lib.build(other, settings, progress=False), path)

  with pytest.raises(index_lib.IndexMismatchError,
                     match="data of the train split") as error:
    trainer.train_and_evaluate(config, workdir)
  assert paths[0] in str(error.value) and "--rebuild_index" in str(error.value)
  truncate(paths[0])
  with pytest.raises(index_lib.UnreadableIndexError) as error:
    trainer.train_and_evaluate(config, workdir)
  for part in (paths[0], "BadZipFile", "truncated", "--rebuild_index"):
    assert part in str(error.value), (part, str(error.value))
  assert not glob.glob(os.path.join(workdir, "*"))       # nothing written

  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
             PYTHONPATH=REPO)
  run = subprocess.run(
      [sys.executable, "-m", "train.main", "--config",
       "configs/ncl_digits.py:quick", "--workdir", workdir,
       f"--config.data_dir={cache}", "--rebuild_index",
       *[f"--config.{k}={v}" for k, v in NCL_OVERRIDES.items()]],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
  assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
  assert "test bits/dim" in run.stdout
  for settings, path in zip((config.neighbours, free), paths):
    rebuilt = index_lib.load(path, splits, settings)
    assert rebuilt.data_hashes == index_lib.data_hashes(splits)


def test_a_damaged_best_checkpoint_is_read_from_its_latest_twin(tmp_path,
                                                                 monkeypatch):
  """The test report of a rerun reads the best step from checkpoints/ when
  best/ is damaged: the same parameters, the same test bits/dim."""
  from nbflows.data import sources
  from tiny_flow import tiny_model
  # The four validations say step 4 is the best (the rerun validates none,
  # and the test evaluations are left as they are).
  validation_bpd, original = [3.0, 2.0, 2.5, 2.6], evaluate.evaluate_split
  monkeypatch.setattr(evaluate, "evaluate_split", lambda *a, **k: dict(
      original(*a, **k), **({"bpd": validation_bpd.pop(0)}
                            if validation_bpd else {})))
  config = default.get_config("quick")
  config.update_from_flattened_dict({
      "dataset": "two_rectangles", "num_train_steps": 8, "batch_size": 8,
      "eval_every_steps": 2, "checkpoint_every_steps": 4,
      "optimizer.warmup_steps": 0})
  workdir = str(tmp_path / "run")
  splits = sources.load("two_rectangles", num_toy_examples=400)
  first = trainer.train(config, workdir, tiny_model(), splits)
  assert first["checkpoint_step"] == 4
  truncate(os.path.join(workdir, "best", "4", "params", "_METADATA"))
  with pytest.warns(checkpoint_fallback.CheckpointFallbackWarning,
                    match="best/4 .*loaded .*checkpoints/4"):
    again = trainer.train(config, workdir, tiny_model(), splits)
  assert again["checkpoint_step"] == 4
  assert again["test_bpd"] == first["test_bpd"]
