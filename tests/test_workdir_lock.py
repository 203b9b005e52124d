"""The workdir lock: one run at a time, stale locks taken over, never lost.

The command line's refusal of a second run (with the first run's files
byte-identical afterwards) is in test_workdir_files.py, on a trained workdir.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest

from train.loop import workdir_lock


def write_lock(workdir, **record):
  """A lock file as another process would have left it."""
  os.makedirs(workdir, exist_ok=True)
  record = dict({"host": socket.gethostname(), "since": "2026-12-01T10:00:00"
                 "+00:00", "command": "python -m train.main"}, **record)
  path = workdir_lock.lock_path(workdir)
  with open(path, "w") as f:
    json.dump(record, f)
  return path, record


def dead_pid():
  """The pid of a process of this host that has ended (and been reaped)."""
  process = subprocess.Popen([sys.executable, "-c", ""])
  process.wait()
  return process.pid


def test_lock_records_holder_and_is_released(tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lock.hold(workdir) as path:
    record = workdir_lock.holder(path)
    assert record["pid"] == os.getpid()
    assert record["host"] == socket.gethostname()
    assert record["since"].endswith("+00:00")
    with workdir_lock.hold(workdir):       # re-entrant in one process
      assert os.path.exists(path)
    assert os.path.exists(path)            # the outer hold still has it
  assert not os.path.exists(path)


def test_lock_is_released_when_the_run_raises(tmp_path):
  workdir = str(tmp_path / "run")
  with pytest.raises(RuntimeError, match="simulated crash"):
    with workdir_lock.hold(workdir):
      raise RuntimeError("simulated crash")
  assert not os.path.exists(workdir_lock.lock_path(workdir))
  with workdir_lock.hold(workdir):         # and can be taken again
    pass


def test_a_live_holder_is_refused_with_its_host_pid_and_path(tmp_path):
  workdir = str(tmp_path / "run")
  holder = subprocess.Popen([sys.executable, "-c",
                             "import time; time.sleep(60)"])
  try:
    path, record = write_lock(workdir, pid=holder.pid)
    with pytest.raises(workdir_lock.WorkdirLockedError) as error:
      with workdir_lock.hold(workdir):
        pytest.fail("the block ran under another process's lock")
    message = str(error.value)
    for part in (f"pid {holder.pid}", socket.gethostname(), record["since"],
                 path, "Nothing was written"):
      assert part in message, (part, message)
    assert workdir_lock.holder(path) == record        # untouched
  finally:
    holder.kill()
    holder.wait()


def test_a_stale_lock_of_a_dead_pid_is_taken_over_with_a_warning(tmp_path,
                                                                 caplog):
  workdir = str(tmp_path / "run")
  pid = dead_pid()
  path, _ = write_lock(workdir, pid=pid)
  with caplog.at_level(logging.WARNING):
    with workdir_lock.hold(workdir):
      assert workdir_lock.holder(path)["pid"] == os.getpid()
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING]
  assert any("stale lock" in w and f"pid {pid}" in w and path in w
             for w in warnings), warnings
  assert not os.path.exists(path)
  assert not os.path.exists(path + ".takeover")


def test_a_lock_with_this_processes_pid_it_does_not_hold_is_stale(tmp_path):
  """Left by an earlier process that had this pid (a restarted container)."""
  workdir = str(tmp_path / "run")
  path, _ = write_lock(workdir, pid=os.getpid(), since="2026-01-01T00:00:00")
  with workdir_lock.hold(workdir):
    assert workdir_lock.holder(path)["since"] != "2026-01-01T00:00:00"


def test_another_hosts_lock_is_never_taken_over(tmp_path):
  workdir = str(tmp_path / "run")
  path, record = write_lock(workdir, host="other-host", pid=dead_pid())
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match="another host.*rm " + path):
    with workdir_lock.hold(workdir):
      pass
  assert workdir_lock.holder(path) == record


def test_an_unreadable_lock_is_refused_naming_how_to_remove_it(tmp_path):
  workdir = str(tmp_path / "run")
  path = workdir_lock.lock_path(workdir)
  os.makedirs(workdir)
  with open(path, "w") as f:
    f.write('{"host": "vm", "pi')             # a holder mid-write
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match="cannot be read.*rm " + path):
    with workdir_lock.hold(workdir):
      pass
  assert os.path.getsize(path) == len('{"host": "vm", "pi')


def test_training_holds_the_lock_and_releases_it_after_sigterm(tmp_path,
                                                               monkeypatch):
  """The trainer's SIGTERM preemption returns normally, releasing the lock."""
  from configs import default
  from nbflows.data import pipeline
  from nbflows.data import sources
  from tiny_flow import tiny_model
  from train.loop import trainer
  workdir = str(tmp_path / "run")
  config = default.get_config("quick")
  config.dataset, config.num_train_steps, config.batch_size = (
      "two_rectangles", 12, 8)
  config.optimizer.warmup_steps = 0
  seen, original = [], pipeline.train_iterator

  def preempted_at_batch_4(*args, **kwargs):
    for i, batch in enumerate(original(*args, **kwargs)):
      if i == 4:
        seen.append(workdir_lock.holder(workdir_lock.lock_path(workdir)))
        signal.raise_signal(signal.SIGTERM)
      yield batch

  monkeypatch.setattr(pipeline, "train_iterator", preempted_at_batch_4)
  results = trainer.train(config, workdir, tiny_model(),
                          sources.load("two_rectangles", num_toy_examples=400))
  assert results == {"preempted": True, "steps_trained": 5}
  assert seen[0]["pid"] == os.getpid()
  assert not os.path.exists(workdir_lock.lock_path(workdir))
