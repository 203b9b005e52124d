"""Checkpoints of a training run: the latest N and the best, saved with orbax.

The workdir's layout and the items a model is loaded from ("params",
"step", config.json) are `nbflows.checkpoint`'s. A training state is saved
as those items plus the trainer's own, each its own orbax item:

  params      state.params                       (the library's)
  step        state.step, as JSON                (the library's)
  opt_state   state.opt_state: the optimizer's moments (absent for a fitted
              model, which has no optimizer)
  trainer     the state's other fields: the typed PRNG key `rng` and the
              non-finite counters
  loop        JSON: the trainer's early-stopping bookkeeping

Saves are atomic: orbax writes `<step>.orbax-checkpoint-tmp-*` and renames
it when complete, so a save killed half-way leaves a temporary directory that
`latest_step` ignores (and that the next run deletes); a restore always reads
a complete checkpoint.

Before restoring, the parameter shapes stored in the checkpoint are compared
with those the current config builds; a checkpoint written for another model
raises a `ValueError` naming the differing parameters and config fields.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from nbflows import checkpoint as checkpoint_format

OPT_STATE_ITEM = "opt_state"
TRAINER_ITEM = "trainer"
LOOP_ITEM = "loop"
UNREADABLE_DIR = "unreadable_checkpoints"   # where `set_aside` moves them
PyTree = Any


def item_handlers() -> Dict[str, Any]:
  """Fresh orbax handlers of every item a training checkpoint may hold."""
  return dict(checkpoint_format.library_item_handlers(),
              **{OPT_STATE_ITEM: ocp.StandardCheckpointHandler(),
                 TRAINER_ITEM: ocp.StandardCheckpointHandler(),
                 LOOP_ITEM: ocp.JsonCheckpointHandler()})


def _fields(state: PyTree) -> Dict[str, Any]:
  """A `TrainState`'s (or a mapping's) top-level fields by name."""
  if isinstance(state, Mapping):
    return dict(state)
  return {field.name: getattr(state, field.name)
          for field in dataclasses.fields(state)}


def _rebuilt(target: PyTree, fields: Dict[str, Any]) -> PyTree:
  """`target`'s type holding `fields`."""
  if isinstance(target, Mapping):
    return dict(fields)
  return target.replace(**fields)


def _step_array(value: int, target: Any) -> jax.Array:
  """The saved step as an array like `target` (a scalar), on its devices."""
  sharding = getattr(target, "sharding", None)
  if sharding is None:
    return jnp.asarray(value, target.dtype)
  return jax.make_array_from_callback(
      (), sharding, lambda index: np.asarray(value, target.dtype)[index])


def save_args(state: PyTree, loop: Mapping[str, Any]) -> ocp.args.Composite:
  """The orbax items of the module docstring for `state` and `loop`.

  Args:
    state: the `TrainState`, or a mapping with the same field names; it
      needs "params", and an item is written for each field it has.
    loop: JSON-serialisable bookkeeping.
  """
  fields = _fields(state)
  trained = fields.pop(checkpoint_format.STEP_ITEM, None)
  args = checkpoint_format.library_save_args(
      fields.pop(checkpoint_format.PARAMS_ITEM),
      None if trained is None else jax.device_get(trained))
  if OPT_STATE_ITEM in fields:
    args[OPT_STATE_ITEM] = ocp.args.StandardSave(fields.pop(OPT_STATE_ITEM))
  if fields:
    args[TRAINER_ITEM] = ocp.args.StandardSave(fields)
  args[LOOP_ITEM] = ocp.args.JsonSave(loop)
  return ocp.args.Composite(**args)


class Checkpointer:
  """The latest `keep` states of a run plus its best one, in a workdir.

  Example:
    >>> import tempfile, jax.numpy as jnp
    >>> workdir = tempfile.mkdtemp()
    >>> ckpt = Checkpointer(workdir, keep=2)
    >>> tree = {"step": jnp.int32(7), "params": {"w": jnp.ones(3)}}
    >>> ckpt.save(7, tree, {"best_value": None})
    >>> ckpt.wait()
    >>> ckpt.latest_step()
    7
    >>> sorted(os.listdir(os.path.join(workdir, "checkpoints", "7")))
    ['_CHECKPOINT_METADATA', 'commit_success.txt', 'loop', 'params', 'step']
    >>> restored, loop = ckpt.restore(7, tree)
    >>> restored["params"]["w"].tolist(), int(restored["step"]), loop
    ([1.0, 1.0, 1.0], 7, {'best_value': None})
    >>> ckpt.close()
  """

  def __init__(self, workdir: str, keep: int = 2, read_only: bool = False):
    """Opens (creating unless `read_only`) the two checkpoint directories.

    Args:
      workdir: the run's directory.
      keep: how many of the latest checkpoints to keep (>= 1).
      read_only: open existing checkpoints for restoring only.

    Raises:
      ValueError: if `keep` < 1.
    """
    if keep < 1:
      raise ValueError(f"config.keep_checkpoints={keep}; expected >= 1")
    self.workdir = os.path.abspath(workdir)
    self._read_only = read_only
    self._latest, self._best = (
        checkpoint_format.manager(
            checkpoint_format.checkpoints_dir(workdir, which),
            item_handlers(), max_to_keep, read_only)
        for which, max_to_keep in (("latest", keep), ("best", 1)))

  def latest_step(self) -> Optional[int]:
    """The step of the newest complete checkpoint, or None."""
    return self._latest.latest_step()

  def latest_steps(self) -> List[int]:
    """The steps of the complete latest checkpoints, newest first."""
    return sorted(self._latest.all_steps(), reverse=True)

  def set_aside(self, step: int) -> str:
    """Moves the latest checkpoint of `step` out of the way, kept whole.

    For a checkpoint that cannot be read: training from an earlier step
    saves `step` again, which orbax refuses while the old one is there.

    Returns:
      Its new directory, `workdir/UNREADABLE_DIR/<step>[.n]`.
    """
    self._latest.wait_until_finished()
    target = os.path.join(self.workdir, UNREADABLE_DIR, str(step))
    suffix = 0
    while os.path.exists(target):
      suffix += 1
      target = os.path.join(self.workdir, UNREADABLE_DIR, f"{step}.{suffix}")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(os.path.join(self._latest.directory, str(step)), target)
    self._latest.reload()
    return target

  def best_step(self) -> Optional[int]:
    """The step of the best checkpoint by validation metric, or None."""
    return self._best.latest_step()

  def save(self, step: int, state: PyTree, loop: Mapping[str, Any],
           best: bool = False) -> None:
    """Saves `state` and the `loop` bookkeeping at `step` (asynchronously).

    Every process must call it (orbax coordinates the hosts). A step already
    saved is not written again.

    Args:
      step: the training step the state has reached.
      state: the `TrainState`, or a mapping with its field names
        (`save_args`).
      loop: JSON-serialisable bookkeeping saved with it.
      best: also (not instead) save it as the best checkpoint.

    Raises:
      ValueError: if the checkpointer was opened read-only.
    """
    if self._read_only:
      raise ValueError(f"checkpoints of {self.workdir} were opened read-only")
    args = save_args(state, loop)
    for manager in [self._latest] + ([self._best] if best else []):
      if manager.latest_step() != step:
        manager.save(step, args=args)

  def restore(self, step: int, abstract_state: PyTree, which: str = "latest",
              config_diff: Optional[List[str]] = None
              ) -> Tuple[PyTree, Dict[str, Any]]:
    """Restores the state saved at `step` into the structure of a target.

    Args:
      step: a step of `latest_step()` (which="latest") or `best_step()`.
      abstract_state: a pytree like the saved state (a `TrainState` or a
        mapping with "params") whose leaves are arrays or
        `jax.ShapeDtypeStruct`s with the shardings to restore into. The
        stored parameter shapes are checked against its params first.
      which: "latest" or "best".
      config_diff: lines from `config_differences`, included in the error.

    Returns:
      (state, loop).

    Raises:
      ValueError: if the checkpoint's parameters do not match the target's,
        it was written before the layout of `nbflows.checkpoint`, or for an
        unknown `which`.
    """
    manager = self._manager(which)
    manager.wait_until_finished()
    fields = _fields(abstract_state)
    checkpoint_format.check_params(
        os.path.join(manager.directory, str(step)),
        fields[checkpoint_format.PARAMS_ITEM], config_diff)
    arrays = [name for name in (checkpoint_format.PARAMS_ITEM, OPT_STATE_ITEM)
              if name in fields]
    args = {name: ocp.args.StandardRestore(fields.pop(name))
            for name in arrays}
    target_step = fields.pop(checkpoint_format.STEP_ITEM, None)
    if target_step is not None:
      args[checkpoint_format.STEP_ITEM] = ocp.args.JsonRestore()
    if fields:
      args[TRAINER_ITEM] = ocp.args.StandardRestore(fields)
    args[LOOP_ITEM] = ocp.args.JsonRestore()
    restored = manager.restore(step, args=ocp.args.Composite(**args))
    state = dict(restored[TRAINER_ITEM]) if fields else {}
    state.update({name: restored[name] for name in arrays})
    if target_step is not None:
      state[checkpoint_format.STEP_ITEM] = _step_array(
          restored[checkpoint_format.STEP_ITEM], target_step)
    return _rebuilt(abstract_state, state), dict(restored[LOOP_ITEM])

  def nonfinite_total(self, step: int, which: str = "latest") -> int:
    """The steps skipped as non-finite up to `step` (`TrainState`'s count).

    Read from the "trainer" item alone; 0 for a checkpoint without one (a
    fitted model takes no gradient steps).
    """
    manager = self._manager(which)
    manager.wait_until_finished()
    if not os.path.isdir(os.path.join(manager.directory, str(step),
                                      TRAINER_ITEM)):
      return 0
    restored = manager.restore(step, args=ocp.args.Composite(
        **{TRAINER_ITEM: ocp.args.StandardRestore()}))
    return int(restored[TRAINER_ITEM]["nonfinite_total"])

  def _manager(self, which: str) -> ocp.CheckpointManager:
    checkpoint_format.checkpoints_dir(self.workdir, which)   # validates `which`
    return self._latest if which == "latest" else self._best

  def reached_preemption(self, step: int) -> bool:
    """Whether the hosts have agreed to stop for a preemption at `step`.

    With several processes, a SIGTERM reaches the hosts at different steps;
    JAX's preemption sync point (set up by `jax.distributed.initialize`)
    makes every host answer True at the same step.
    """
    return self._latest.reached_preemption(step)

  def wait(self) -> None:
    """Blocks until every pending asynchronous save is on disk."""
    self._latest.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the managers."""
    self._latest.close()
    self._best.close()
