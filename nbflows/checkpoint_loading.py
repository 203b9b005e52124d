"""`load_checkpoint(workdir)`: a trained model back from a training run.

A run's workdir holds the config it was trained with (config.json) and orbax
checkpoints (see `nbflows.checkpoint`). Loading rebuilds the model from the
config, computes the parameter structure it expects, checks it against the
checkpoint (a checkpoint of another model config is an error naming the
differing parameters and config fields) and restores the best checkpoint by
validation bits/dim, or the latest if the run never validated.

Example:
  >>> import jax, nbflows
  >>> workdir = "workdirs/default"   # after python -m train.main ... --workdir
  >>> model, params, config = nbflows.load_checkpoint(workdir)  # doctest: +SKIP
  >>> x = model.sample(params, jax.random.key(0), 16)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from nbflows import parametrisations
from nbflows.models import protocols
from nbflows.neighbours import index as index_lib


def example_batch(model: protocols.Trainable, num_neighbours: int,
                  batch_size: int = 2) -> Dict[str, jax.Array]:
  """A batch of zeros with every field a model may read (for shapes only).

  Args:
    model: the model (its event shape).
    num_neighbours: k, the neighbours per example.
    batch_size: the number of examples.

  Returns:
    {"x": [B, *event], "neighbours": [B, k, *event], "label": [B],
    "index": [B]}, and "context": [B, C] for a context model.
  """
  event = model.event_shape
  batch = {
      "x": jnp.zeros((batch_size, *event), jnp.float32),
      "neighbours": jnp.zeros((batch_size, num_neighbours, *event),
                              jnp.float32),
      "label": jnp.zeros((batch_size,), jnp.int32),
      "index": jnp.zeros((batch_size,), jnp.int32),
  }
  if model.context_dim:     # a context model, or NCL / NCT given one
    batch["context"] = jnp.zeros((batch_size, model.context_dim), jnp.float32)
  return batch


def load_checkpoint(workdir: str,
                    config: Optional[ml_collections.ConfigDict] = None,
                    which: Optional[str] = None
                    ) -> Tuple[protocols.Trainable, Any,
                               ml_collections.ConfigDict]:
  """Rebuilds the model of a training run and restores its parameters.

  Only the checkpoint's "params" item is read (`nbflows.checkpoint`): no
  optimizer is built and its state is never loaded. A checkpoint that
  cannot be read (damaged files) is skipped for the previous one with a
  warning (`nbflows.checkpoint_fallback`).

  Args:
    workdir: the run's directory.
    config: the config to rebuild the model from; None uses the config the
      run saved.
    which: "best" or "latest"; None takes the best if there is one, else the
      latest.

  Returns:
    (model, params on the default device, config).

  Raises:
    FileNotFoundError: if `workdir` has no config.json or no checkpoint.
    nbflows.checkpoint.CheckpointMismatchError: if the checkpoint was
      written for another model config (the message names the differing
      parameters and config fields), or before the layout of
      `nbflows.checkpoint` (the message names the command that converts it).
    nbflows.checkpoint.UnreadableConfigError: for a damaged config.json.
    nbflows.parametrisations.OutdatedConfigError: for a config.json written
      before a parametrisation change of its model; ValueError if `config`
      records another parametrisation than the saved one.
    nbflows.checkpoint_fallback.UnreadableCheckpointError: if no checkpoint
      can be read (the message lists them with the reasons).
  """
  model, params, config, _ = load_checkpoint_with_step(workdir, config, which)
  return model, params, config


def load_checkpoint_with_step(
    workdir: str, config: Optional[ml_collections.ConfigDict] = None,
    which: Optional[str] = None
) -> Tuple[protocols.Trainable, Any, ml_collections.ConfigDict, int]:
  """`load_checkpoint` plus the step of the checkpoint that loaded."""
  # Imported here: reading checkpoints needs orbax, which plain
  # `import nbflows` does not.
  from nbflows import checkpoint as checkpoint_format  # pylint: disable=g-import-not-at-top
  from nbflows import checkpoint_fallback  # pylint: disable=g-import-not-at-top
  from nbflows.models import registry  # pylint: disable=g-import-not-at-top

  saved = checkpoint_format.load_config(workdir)
  config = saved if config is None else config
  if which is None:
    which = checkpoint_format.chosen_checkpoint(workdir)[0]
  tried = checkpoint_fallback.candidates(workdir, which)
  if not tried:
    raise FileNotFoundError(
        f"{workdir} holds no {which} checkpoint; expected the workdir of a "
        "training run that saved at least one")
  if which == "best":    # then the latest ones, past a damaged best
    tried += checkpoint_fallback.candidates(workdir, "latest")

  model = registry.build_model(config)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  config_diff = checkpoint_format.config_differences(saved.to_dict(),
                                                     config.to_dict())
  parametrisations.check_same(saved.to_dict(), config.to_dict(), workdir)

  fitted = protocols.offers(model, protocols.Fitted)
  if not fitted:
    batch = example_batch(model,
                          index_lib.neighbourhood_size(config.neighbours))
    trained = jax.eval_shape(model.init, jax.random.key(0), batch)

  def read(which: str, step: int) -> Any:
    # A fitted model (the KDE: its centres are the whole training split)
    # takes its parameter shapes from the checkpoint.
    abstract = checkpoint_format.stored_params(checkpoint_fallback.step_dir(
        workdir, which, step)) if fitted else trained
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
        abstract)
    return checkpoint_format.restore_params(workdir, abstract, which, step,
                                            config_diff=config_diff)[0]

  params, _, step = checkpoint_fallback.first_readable(workdir, tried, read)
  return model, params, config, step
