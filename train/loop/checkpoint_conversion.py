"""Rewrites a workdir's old-layout checkpoints into `nbflows.checkpoint`'s.

Before the library owned the checkpoint format, each step directory held two
items: "state" (the whole `TrainState`) and "loop". Loading such a run, or
resuming it, raises a `ValueError` naming this command:

  python -m train.convert_checkpoint WORKDIR

which restores every step of checkpoints/ and best/ into the `TrainState`
the saved config.json builds and saves it again as the items of
`train.loop.checkpoint` (params, step, opt_state, trainer, loop), bit for bit. A
fitted model's (the KDE's) optimizer state, which it never used, is dropped.
Each directory is written beside the old one and swapped in when complete.
"""
from __future__ import annotations

import os
import shutil
from typing import List

import jax
import orbax.checkpoint as ocp

from nbflows import checkpoint as checkpoint_format
from nbflows import checkpoint_loading
from nbflows.models import protocols
from nbflows.models import registry
from nbflows.neighbours import index as index_lib
from train.loop import checkpoint as checkpoint_lib
from train.loop import state as state_lib

OLD_LOOP_ITEM = "loop"


def _old_manager(directory: str) -> ocp.CheckpointManager:
  return checkpoint_format.manager(
      directory, {checkpoint_format.OLD_STATE_ITEM:
                  ocp.StandardCheckpointHandler(),
                  OLD_LOOP_ITEM: ocp.JsonCheckpointHandler()},
      None, read_only=True)


def convert(workdir: str) -> List[str]:
  """Converts every old-layout step of `workdir`; returns their new paths.

  A directory already in the current layout is left as it is.

  Raises:
    FileNotFoundError: if `workdir` has no config.json.
    ValueError: if a checkpoint directory mixes old and new layouts.
  """
  config = checkpoint_format.load_config(workdir)
  model = registry.build_model(config)
  optimizer = state_lib.make_optimizer(config.optimizer,
                                       config.num_train_steps)
  batch = checkpoint_loading.example_batch(
      model, index_lib.neighbourhood_size(config.neighbours))
  # The batch is an argument, so traced: its zeros are for shapes, and as
  # concrete values the units rule would refuse them (all at level 0).
  abstract = jax.eval_shape(
      lambda key, batch: state_lib.create_train_state(model, optimizer, key,
                                                      batch),
      jax.random.key(0), batch)
  fitted = protocols.offers(model, protocols.Fitted)
  converted = []
  for which in ("latest", "best"):
    directory = checkpoint_format.checkpoints_dir(workdir, which)
    old = _old_manager(directory)
    steps = [step for step in old.all_steps() if os.path.isdir(os.path.join(
        directory, str(step), checkpoint_format.OLD_STATE_ITEM))]
    if steps and len(steps) != len(old.all_steps()):
      raise ValueError(f"{directory} holds steps {old.all_steps()}, of which "
                       f"only {steps} have the old layout; expected all")
    if not steps:
      old.close()
      continue
    shutil.rmtree(directory + ".converted", ignore_errors=True)  # a crash's
    new = checkpoint_format.manager(directory + ".converted",
                                    checkpoint_lib.item_handlers(), None,
                                    read_only=False)
    for step in steps:
      target = abstract
      if fitted:
        # The KDE's parameter shapes are the data's: take the stored ones.
        metadata = old.item_metadata(step)[checkpoint_format.OLD_STATE_ITEM]
        params = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype),
            metadata.tree["params"])
        target = abstract.replace(
            params=params, opt_state=jax.eval_shape(optimizer.init, params))
      restored = old.restore(step, args=ocp.args.Composite(**{
          checkpoint_format.OLD_STATE_ITEM: ocp.args.StandardRestore(target),
          OLD_LOOP_ITEM: ocp.args.JsonRestore()}))
      state = restored[checkpoint_format.OLD_STATE_ITEM]
      if fitted:
        state = {"params": state.params, "step": state.step}
      new.save(step, args=checkpoint_lib.save_args(
          state, restored[OLD_LOOP_ITEM]))
      converted.append(os.path.join(directory, str(step)))
    new.close()
    old.close()
    os.rename(directory, directory + ".old")
    os.rename(directory + ".converted", directory)
    shutil.rmtree(directory + ".old")
  return converted
