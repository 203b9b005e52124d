"""One run at a time in a workdir: a lock file holding its holder.

Every entry point that writes into a workdir (training, evaluation, novelty)
runs inside `with workdir_lock.hold(workdir):`, entered before it writes
anything. The lock is the file `workdir/LOCK_FILE`, created atomically
(`os.open` with O_CREAT | O_EXCL, so of two runs exactly one creates it) and
holding JSON:

  {"host": "vm-3", "pid": 4242, "since": "2026-12-03T18:30:00+00:00",
   "command": "python -m train.main --config ... --workdir ..."}

A second run finds the file and raises `WorkdirLockedError` naming the
holder and the lock's path, having written nothing. A lock left by a process
that no longer runs on this host (a SIGKILL, a crash outside Python) is stale
and is taken over with a warning; a lock from another host is never taken
over (its process cannot be checked from here): the error says how to remove
it once the user knows that run is dead. The lock is released (the file
removed) when the block exits, normally, by an exception, or after the
trainer's SIGTERM preemption, which returns normally.

Holding is re-entrant within a process (`train_and_evaluate` holds it and
calls `train`, which holds it too), and with several processes only process
0 holds it: the others write only through orbax's coordinated saves.

Example:
  >>> import tempfile
  >>> workdir = tempfile.mkdtemp()
  >>> with hold(workdir) as path:
  ...   holder(path)["pid"] == os.getpid()
  True
  >>> os.path.exists(path)
  False
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import threading
from typing import Any, Dict, Iterator, Optional

from absl import logging
import jax

from nbflows import workdir_errors

LOCK_FILE = "nbflows.lock"
_held: Dict[str, int] = {}        # lock path -> depth, in this process
_held_guard = threading.Lock()


class WorkdirLockedError(workdir_errors.WorkdirFileError, RuntimeError):
  """Another run holds the workdir's lock."""


def lock_path(workdir: str) -> str:
  """The lock file of `workdir`."""
  return os.path.join(os.path.abspath(workdir), LOCK_FILE)


def holder(path: str) -> Optional[Dict[str, Any]]:
  """The holder recorded in lock file `path`; None if it cannot be read.

  An unreadable lock is one being written this instant, or left damaged.
  """
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def _alive(pid: int) -> bool:
  """Whether process `pid` runs on this host."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:     # alive, another user's
    return True
  return True


def _is_stale(record: Dict[str, Any]) -> bool:
  """Whether `record`'s holder is a process of this host that has ended.

  A lock with this process's own pid that this process does not hold was
  left by an earlier process with the same pid (a restarted container).
  """
  if record.get("host") != socket.gethostname():
    return False
  pid = record.get("pid")
  return isinstance(pid, int) and (pid == os.getpid() or not _alive(pid))


def _describe(record: Dict[str, Any]) -> str:
  return (f"pid {record.get('pid')} on host {record.get('host')!r} since "
          f"{record.get('since')} ({record.get('command', 'command unknown')})")


def _locked_message(path: str, record: Optional[Dict[str, Any]]) -> str:
  workdir = os.path.dirname(path)
  if record is None:
    return (f"workdir {workdir} is locked by {path}, which cannot be read "
            "(a run is creating it, or it was left damaged); nothing was "
            "written. If no run is using this workdir, remove the lock "
            f"(rm {path}) and start again")
  message = (f"workdir {workdir} is in use by another run: {_describe(record)}"
             f"; its lock is {path}. Nothing was written. Wait for that run "
             "to finish, or use another --workdir")
  if record.get("host") != socket.gethostname():
    message += (f". The lock was taken on another host, so this one cannot "
                f"tell whether that run is alive; if you know it has ended, "
                f"remove the lock (rm {path}) and start again")
  return message


def _take_over(path: str, record: Dict[str, Any]) -> None:
  """Removes the stale lock `record` at `path`, unless it has changed.

  A guard file makes the check and the removal one step among the processes
  that take over at once.

  Raises:
    WorkdirLockedError: if another process is taking it over.
  """
  guard = path + ".takeover"
  try:
    descriptor = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    raise WorkdirLockedError(
        f"another process is taking over the stale lock {path}; if none is, "
        f"remove {guard} and start again") from None
  try:
    if holder(path) == record:
      logging.warning("taking over the stale lock %s of %s: that process no "
                      "longer runs", path, _describe(record))
      os.remove(path)
  finally:
    os.close(descriptor)
    os.remove(guard)


def _record() -> Dict[str, Any]:
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "since": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds"),
          "command": " ".join([os.path.basename(sys.executable)]
                              + sys.argv)[:500]}


def acquire(workdir: str) -> str:
  """Creates `workdir`'s lock (and the workdir), taking over a stale one.

  Returns:
    The lock's path.

  Raises:
    WorkdirLockedError: if a live run holds it, it is another host's, or it
      cannot be read; the message names the holder and the path.
  """
  path = lock_path(workdir)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  record = _record()
  for _ in range(2):    # a second try after taking over a stale lock
    try:
      descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      found = holder(path)
      if found is None or not _is_stale(found):
        raise WorkdirLockedError(_locked_message(path, found)) from None
      _take_over(path, found)
      continue
    with os.fdopen(descriptor, "w") as f:
      json.dump(record, f)
    return path
  raise WorkdirLockedError(_locked_message(path, holder(path)))


def release(path: str) -> None:
  """Removes lock `path` if this process holds it (else warns, keeps it)."""
  found = holder(path)
  if found is not None and found.get("pid") == os.getpid() and found.get(
      "host") == socket.gethostname():
    os.remove(path)
  else:
    logging.warning("lock %s is no longer this process's (%s); left in place",
                    path, "unreadable" if found is None else _describe(found))


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[str]:
  """Holds `workdir`'s lock while the block runs (re-entrant).

  Yields:
    The lock's path.

  Raises:
    WorkdirLockedError: see `acquire`.
  """
  path = lock_path(workdir)
  if jax.process_index() != 0:
    yield path
    return
  with _held_guard:
    depth = _held.get(path, 0)
    if not depth:
      acquire(workdir)
    _held[path] = depth + 1
  try:
    yield path
  finally:
    with _held_guard:
      _held[path] -= 1
      if not _held[path]:
        del _held[path]
        release(path)
