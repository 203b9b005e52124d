"""Past a checkpoint that cannot be read, to the previous one that can.

A step directory can be complete (orbax committed it) and still be
unreadable: a truncated `_METADATA` (a JSON error), an array file cut short
or overwritten (a TensorStore error), a copy or a disk that lost part of it.
Loading tries the candidate steps newest first and takes the first that
reads, warning with the bad steps, the reason for each and the step that
loaded; if none reads, `UnreadableCheckpointError` lists them all with what
to do. A checkpoint that reads but belongs to another model config
(`nbflows.checkpoint.CheckpointMismatchError`) is not skipped: every step
would mismatch alike, and its message names the differing fields.

Example:
  >>> def read(which, step):
  ...   if step == 8:
  ...     raise ValueError("Unterminated string")
  ...   return f"params of {which}/{step}"
  >>> import warnings
  >>> with warnings.catch_warnings(record=True) as caught:
  ...   warnings.simplefilter("always")
  ...   first_readable("w", [("best", 8), ("latest", 4)], read)
  ('params of latest/4', 'latest', 4)
  >>> "best/8" in str(caught[0].message)
  True
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

from nbflows import checkpoint as checkpoint_format
from nbflows import workdir_errors

Loaded = TypeVar("Loaded")
Candidate = Tuple[str, int]       # (which, step)
# TensorStore's message goes on with a dump of the array's whole spec.
_SPEC_DUMP = ". See full TensorStore details"


class UnreadableCheckpointError(workdir_errors.WorkdirFileError, RuntimeError):
  """No candidate checkpoint of a workdir can be read."""


class CheckpointFallbackWarning(UserWarning):
  """A checkpoint could not be read; an earlier one was loaded instead."""


def candidates(workdir: str, which: Optional[str] = None) -> List[Candidate]:
  """The steps to try, in order: `which`'s newest first.

  None tries the best checkpoint, then the latest ones (so a damaged best
  falls back to the newest latest checkpoint that reads).
  """
  names = ("best", "latest") if which is None else (which,)
  return [(name, step) for name in names
          for step in checkpoint_format.all_steps(workdir, name)]


def step_dir(workdir: str, which: str, step: int) -> str:
  """The directory of one checkpoint."""
  return os.path.join(checkpoint_format.checkpoints_dir(workdir, which),
                      str(step))


def reason(error: BaseException) -> str:
  """One line saying why a read failed: the error and its cause, each cut
  to its first line (and TensorStore's spec dump cut off)."""
  parts = []
  while error is not None and len(parts) < 2:
    text = str(error).split(_SPEC_DUMP)[0].strip().splitlines()
    parts.append(f"{type(error).__name__}: {text[0] if text else ''}"[:300])
    error = error.__cause__
  return ", caused by ".join(parts)


def first_readable(workdir: str, tried: Sequence[Candidate],
                   read: Callable[[str, int], Loaded]
                   ) -> Tuple[Loaded, str, int]:
  """`read(which, step)` of the first candidate that can be read.

  Args:
    workdir: the run's directory (for the messages).
    tried: (which, step) candidates in order (`candidates`).
    read: loads one checkpoint; a `CheckpointMismatchError` it raises is
      raised at once, any other error marks the checkpoint unreadable.

  Returns:
    (what `read` returned, which, step) of the checkpoint that loaded; a
    `CheckpointFallbackWarning` names the unreadable ones before it.

  Raises:
    UnreadableCheckpointError: if none can be read (or `tried` is empty),
      listing each with its reason.
    CheckpointMismatchError: from `read`.
  """
  failures = []
  for which, step in tried:
    try:
      loaded = read(which, step)
    except checkpoint_format.CheckpointMismatchError:
      raise
    # orbax raises a bare Exception for a damaged array file.
    except Exception as error:  # pylint: disable=broad-except
      failures.append(f"{step_dir(workdir, which, step)} ({reason(error)})")
      continue
    if failures:
      warnings.warn(CheckpointFallbackWarning(
          "cannot read checkpoint " + "; ".join(failures) + "; loaded "
          f"{step_dir(workdir, which, step)} (step {step}) instead. The "
          "unreadable files are damaged: restore them from a copy, or "
          "delete those step directories"), stacklevel=2)
    return loaded, which, step
  raise UnreadableCheckpointError(
      f"no checkpoint of {workdir} can be read: "
      + ("; ".join(failures) if failures else "it holds none")
      + ". The files are damaged: restore the workdir from a copy, or move "
      f"{os.path.join(workdir, checkpoint_format.LATEST_DIR)} and "
      f"{os.path.join(workdir, checkpoint_format.BEST_DIR)} aside and train "
      "again from the start")
