"""The checkpoint format of a run's workdir, as the library reads it.

A workdir holds

  config.json            the run's config (JSON, beside the checkpoints)
  checkpoints/<step>/    the latest checkpoints
  best/<step>/           the checkpoint with the best validation metric

The config is one file per run rather than an item per step: it is written
at every start, and stays readable without orbax.

Each `<step>` directory is an orbax checkpoint of named items, each its own
subdirectory, readable without the others:

  params      the model's parameters (a pytree of arrays)
  step        JSON: the number of training batches the parameters have seen

The library owns these two; `train.loop.checkpoint` writes its own items beside
them (the optimizer state, the RNG and the loop bookkeeping), which loading a
model never reads. Checkpoints written before this layout hold one item,
"state" (the whole training state); reading them raises a `ValueError` that
names `python -m train.convert_checkpoint WORKDIR`, which rewrites them.

Example:
  >>> import tempfile
  >>> from configs import default
  >>> workdir = tempfile.mkdtemp()
  >>> save_config(default.get_config("quick"), workdir)
  >>> load_config(workdir).model
  'rnvp'
  >>> chosen_checkpoint(workdir)
  ('latest', None)
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from etils import epath
import jax
import ml_collections
import orbax.checkpoint as ocp

from nbflows import parametrisations
from nbflows import workdir_errors

CONFIG_FILE = parametrisations.CONFIG_FILE
LATEST_DIR = "checkpoints"
BEST_DIR = "best"
PARAMS_ITEM = "params"
STEP_ITEM = "step"
OLD_STATE_ITEM = "state"   # the whole TrainState, before this layout
CONVERT_COMMAND = parametrisations.CONVERT_COMMAND
PyTree = Any


class CheckpointMismatchError(ValueError):
  """A readable checkpoint of another model config, or of the old layout."""


class UnreadableConfigError(workdir_errors.WorkdirFileError, ValueError):
  """A workdir's config.json is truncated or damaged."""


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
    UnreadableConfigError: if it is not valid JSON (truncated or damaged);
      the message names the file and how to write it again.
    parametrisations.OutdatedConfigError: if it was written before a
      parametrisation change its model records (`nbflows.parametrisations`).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist; expected the config.json "
                            "that training writes into its workdir")
  with open(path) as f:
    text = f.read()
  try:
    values = _lists_to_tuples(json.loads(text))
  except ValueError as e:
    raise UnreadableConfigError(
        f"{path} is not valid JSON ({e}; the file has {len(text)} bytes): it "
        "is truncated or damaged. Restore it from a copy, or write it again "
        "from the run's config: `python -m train.main --config <the run's "
        f"config> --workdir {workdir}` rewrites it (and resumes the run), as "
        "does nbflows.checkpoint.save_config(config, workdir)") from e
  parametrisations.check_recorded(values, path)
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


def checkpoints_dir(workdir: str, which: str) -> str:
  """The absolute directory of the "latest" or the "best" checkpoints.

  Raises:
    ValueError: for any other `which`.
  """
  if which not in ("latest", "best"):
    raise ValueError(f"which={which!r}; expected 'latest' or 'best'")
  # orbax refuses relative paths ("Checkpoint path should be absolute").
  return os.path.join(os.path.abspath(workdir),
                      LATEST_DIR if which == "latest" else BEST_DIR)


def manager(directory: str, item_handlers: Mapping[str, Any],
            max_to_keep: Optional[int], read_only: bool
            ) -> ocp.CheckpointManager:
  """An orbax manager of the step directories under `directory`.

  Args:
    directory: an absolute path (`checkpoints_dir`).
    item_handlers: item name -> orbax handler; `library_item_handlers()`
      plus those of whoever writes more items.
    max_to_keep: how many steps to keep (None: all).
    read_only: never save, create or clean up (orbax's own read-only mode
      logs warnings on every open).
  """
  # The latest and best managers may save the same step; with several
  # processes their barriers need distinct names.
  processes = ocp.options.MultiprocessingOptions(
      barrier_sync_key_prefix=os.path.basename(directory))
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else max_to_keep,
      create=not read_only, cleanup_tmp_directories=not read_only,
      multiprocessing_options=processes)
  return ocp.CheckpointManager(directory, options=options,
                               item_handlers=dict(item_handlers))


def library_item_handlers() -> Dict[str, Any]:
  """Fresh orbax handlers of the items the library owns."""
  return {PARAMS_ITEM: ocp.StandardCheckpointHandler(),
          STEP_ITEM: ocp.JsonCheckpointHandler()}


def library_save_args(params: PyTree, step: Optional[int] = None
                      ) -> Dict[str, Any]:
  """The orbax save arguments of the library's items (no step if None)."""
  args = {PARAMS_ITEM: ocp.args.StandardSave(params)}
  if step is not None:
    args[STEP_ITEM] = ocp.args.JsonSave(int(step))
  return args


def latest_step(workdir: str, which: str = "latest") -> Optional[int]:
  """The newest complete step of `checkpoints_dir(workdir, which)`, or None."""
  reader = manager(checkpoints_dir(workdir, which), {}, None, read_only=True)
  step = reader.latest_step()
  reader.close()
  return step


def all_steps(workdir: str, which: str) -> List[int]:
  """The complete steps of `checkpoints_dir(workdir, which)`, newest first."""
  reader = manager(checkpoints_dir(workdir, which), {}, None, read_only=True)
  steps = sorted(reader.all_steps(), reverse=True)
  reader.close()
  return steps


def chosen_checkpoint(workdir: str, which: Optional[str] = None
                      ) -> Tuple[str, Optional[int]]:
  """(which, step) of a run's checkpoint to load.

  `which` is "best" or "latest"; None takes the best if there is one, else
  the latest. The step is None when the run holds no such checkpoint.
  """
  if which is None:
    which = "best" if latest_step(workdir, "best") is not None else "latest"
  return which, latest_step(workdir, which)


def check_layout(step_dir: str) -> None:
  """Raises if `step_dir` is a checkpoint written before this layout.

  Raises:
    CheckpointMismatchError: naming the command that converts the workdir.
  """
  if (os.path.isdir(os.path.join(step_dir, OLD_STATE_ITEM))
      and not os.path.isdir(os.path.join(step_dir, PARAMS_ITEM))):
    workdir = os.path.dirname(os.path.dirname(step_dir))
    raise CheckpointMismatchError(
        f"checkpoint {step_dir} holds one item {OLD_STATE_ITEM!r} (the layout "
        f"before items {PARAMS_ITEM!r} and {STEP_ITEM!r}); convert the run "
        f"with `{CONVERT_COMMAND} {workdir}`")


def stored_params(step_dir: str) -> PyTree:
  """The parameters saved in `step_dir` as `jax.ShapeDtypeStruct`s.

  For models whose parameter shapes come from the data (the KDE's centres
  are the training split), the restore target is built from these.
  """
  check_layout(step_dir)
  handler = ocp.StandardCheckpointHandler()
  metadata = handler.metadata(epath.Path(step_dir) / PARAMS_ITEM).tree
  handler.close()
  return jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), metadata)


def check_params(step_dir: str, expected: PyTree,
                 config_diff: Optional[List[str]] = None) -> None:
  """Raises unless `step_dir`'s parameters have `expected`'s structure.

  Args:
    step_dir: a step directory of `checkpoints_dir`.
    expected: the parameter tree the current model builds (any leaves with
      `.shape`).
    config_diff: lines from `config_differences`, included in the error.

  Raises:
    CheckpointMismatchError: naming the differing parameters and config
      fields.
  """
  mismatches = param_mismatches(stored_params(step_dir), expected)
  if mismatches:
    raise CheckpointMismatchError(_mismatch_message(step_dir, mismatches,
                                       config_diff or []))


def restore_params(workdir: str, abstract_params: PyTree, which: str,
                   step: int, config_diff: Optional[List[str]] = None
                   ) -> Tuple[PyTree, int]:
  """The parameters and step of one checkpoint, without any optimizer.

  Args:
    workdir: the run's directory.
    abstract_params: the parameter tree to restore into, its leaves arrays
      or `jax.ShapeDtypeStruct`s with the shardings to place them with.
    which: "latest" or "best".
    step: a complete step of that directory (`chosen_checkpoint`).
    config_diff: lines from `config_differences`, included in the error.

  Returns:
    (params, the number of training batches they have seen).

  Raises:
    ValueError: if the checkpoint's parameters do not match
      `abstract_params`, or it was written before this layout.
  """
  step_dir = epath.Path(checkpoints_dir(workdir, which)) / str(step)
  check_params(os.fspath(step_dir), abstract_params, config_diff)
  handler = ocp.StandardCheckpointHandler()
  params = handler.restore(step_dir / PARAMS_ITEM,
                           args=ocp.args.StandardRestore(abstract_params))
  handler.close()
  trained = ocp.JsonCheckpointHandler().restore(step_dir / STEP_ITEM)
  return params, int(trained)
