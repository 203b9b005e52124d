"""Checkpoints of a training run: the latest N and the best, saved with orbax.

A workdir holds

  config.json            the run's config (written once at the start)
  checkpoints/<step>/    the latest `keep` training states
  best/<step>/           the state with the best validation metric so far

Each step directory has two items: "state" (the whole `TrainState`) and
"loop" (JSON: the trainer's early-stopping bookkeeping). Saves are atomic:
orbax writes `<step>.orbax-checkpoint-tmp-*` and renames it when complete,
so a save killed half-way leaves a temporary directory that `latest_step`
ignores (and that the next run deletes); a restore always reads a complete
checkpoint.

Before restoring, the parameter shapes stored in the checkpoint are compared
with those the current config builds; a checkpoint written for another model
raises a `ValueError` naming the differing parameters and config fields.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax
import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
LATEST_DIR = "checkpoints"
BEST_DIR = "best"
PyTree = Any


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes `config` as JSON to `workdir/config.json` (process 0 only)."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json(indent=2, sort_keys=True))
  os.replace(path + ".tmp", path)


def _lists_to_tuples(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _lists_to_tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_lists_to_tuples(v) for v in value)
  return value


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads the locked config saved by `save_config` (JSON lists -> tuples).

  Raises:
    FileNotFoundError: if `workdir` holds no config.json.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist; expected the config.json "
                            "that training writes into its workdir")
  with open(path) as f:
    values = _lists_to_tuples(json.load(f))
  config = ml_collections.ConfigDict(values)
  config.lock()
  return config


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                       prefix: str = "") -> List[str]:
  """Lists the fields that differ between two (nested) configs.

  Example:
    >>> config_differences({"flow": {"hidden": 8}}, {"flow": {"hidden": 16}})
    ['flow.hidden: 8 in the checkpoint, 16 now']
  """
  differences = []
  for name in sorted(set(saved) | set(current)):
    field = prefix + name
    a, b = saved.get(name, "<absent>"), current.get(name, "<absent>")
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      differences += config_differences(a, b, field + ".")
    elif _lists_to_tuples(a) != _lists_to_tuples(b):
      differences.append(f"{field}: {a!r} in the checkpoint, {b!r} now")
  return differences


def _path_name(path: Tuple[Any, ...]) -> str:
  parts = []
  for key in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
  return "/".join(parts)


def _shapes(tree: PyTree) -> Dict[str, Tuple[int, ...]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path_name(path): tuple(leaf.shape) for path, leaf in leaves}


def param_mismatches(stored: PyTree, expected: PyTree) -> List[str]:
  """Lists parameters whose presence or shape differs between two trees.

  Args:
    stored: the parameter tree of a checkpoint (any leaves with `.shape`).
    expected: the parameter tree the current model builds.

  Returns:
    Human-readable lines, empty when the trees agree.
  """
  stored, expected = _shapes(stored), _shapes(expected)
  lines = []
  for name in sorted(set(stored) | set(expected)):
    if name not in expected:
      lines.append(f"{name}: in the checkpoint, not in the model")
    elif name not in stored:
      lines.append(f"{name}: in the model, not in the checkpoint")
    elif stored[name] != expected[name]:
      lines.append(f"{name}: shape {stored[name]} in the checkpoint, "
                   f"{expected[name]} in the model")
  return lines


def _mismatch_message(directory: str, mismatches: List[str],
                      config_diff: List[str], limit: int = 10) -> str:
  lines = [f"checkpoint {directory} was written for another model config:"]
  lines += ["  " + line for line in mismatches[:limit]]
  if len(mismatches) > limit:
    lines.append(f"  ... and {len(mismatches) - limit} more")
  if config_diff:
    lines.append("config fields that differ from the saved config.json:")
    lines += ["  " + line for line in config_diff]
  return "\n".join(lines)


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
    >>> restored, loop = ckpt.restore(7, tree)
    >>> restored["params"]["w"].tolist(), loop
    ([1.0, 1.0, 1.0], {'best_value': None})
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
    # orbax refuses relative paths ("Checkpoint path should be absolute").
    self.workdir = workdir = os.path.abspath(workdir)
    self._read_only = read_only

    def manager(subdir, max_to_keep):
      # Both managers may save the same step; with several processes their
      # barriers need distinct names.
      processes = ocp.options.MultiprocessingOptions(
          barrier_sync_key_prefix=subdir)
      # Read-only access is a manager that never saves, creates or cleans
      # up (orbax's own read_only mode logs warnings on every open).
      options = ocp.CheckpointManagerOptions(
          max_to_keep=None if read_only else max_to_keep,
          create=not read_only, cleanup_tmp_directories=not read_only,
          multiprocessing_options=processes)
      return ocp.CheckpointManager(
          os.path.join(workdir, subdir), options=options,
          item_handlers={"state": ocp.StandardCheckpointHandler(),
                         "loop": ocp.JsonCheckpointHandler()})

    self._latest = manager(LATEST_DIR, keep)
    self._best = manager(BEST_DIR, 1)

  def latest_step(self) -> Optional[int]:
    """The step of the newest complete checkpoint, or None."""
    return self._latest.latest_step()

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
      state: the `TrainState` (or any pytree of arrays).
      loop: JSON-serialisable bookkeeping saved with it.
      best: also (not instead) save it as the best checkpoint.

    Raises:
      ValueError: if the checkpointer was opened read-only.
    """
    if self._read_only:
      raise ValueError(f"checkpoints of {self.workdir} were opened read-only")
    managers = [self._latest] + ([self._best] if best else [])
    for manager in managers:
      if manager.latest_step() == step:
        continue
      manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)))

  def restore(self, step: int, abstract_state: PyTree, which: str = "latest",
              config_diff: Optional[List[str]] = None
              ) -> Tuple[PyTree, Dict[str, Any]]:
    """Restores the state saved at `step` into the structure of a target.

    Args:
      step: a step of `latest_step()` (which="latest") or `best_step()`.
      abstract_state: a pytree like the saved state whose leaves are arrays
        or `jax.ShapeDtypeStruct`s with the shardings to restore into. If it
        has a `params` field, the stored parameter shapes are checked
        against it first.
      which: "latest" or "best".
      config_diff: lines from `config_differences`, included in the error.

    Returns:
      (state, loop).

    Raises:
      ValueError: if the checkpoint's parameters do not match the target's,
        or for an unknown `which`.
    """
    manager = self._manager(which)
    manager.wait_until_finished()
    expected = getattr(abstract_state, "params", None)
    if expected is None and isinstance(abstract_state, Mapping):
      expected = abstract_state.get("params")
    if expected is not None:
      stored = manager.item_metadata(step)["state"].tree["params"]
      mismatches = param_mismatches(stored, expected)
      if mismatches:
        raise ValueError(_mismatch_message(
            os.path.join(manager.directory, str(step)), mismatches,
            config_diff or []))
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        loop=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["loop"])

  def stored_params(self, step: int, which: str = "latest") -> PyTree:
    """The parameters saved at `step` as `jax.ShapeDtypeStruct`s (metadata).

    For models whose parameter shapes come from the data (the KDE's centres
    are the training split), the restore target is built from these.
    """
    metadata = self._manager(which).item_metadata(step)["state"].tree
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape,
                                                          leaf.dtype),
                        metadata["params"])

  def _manager(self, which: str) -> ocp.CheckpointManager:
    if which not in ("latest", "best"):
      raise ValueError(f"which={which!r}; expected 'latest' or 'best'")
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
