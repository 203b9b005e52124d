"""`load_checkpoint(workdir)`: a trained model back from a training run.

A run's workdir holds the config it was trained with (config.json) and orbax
checkpoints (see `train.checkpoint`). Loading rebuilds the model from the
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

from nbflows.models import base as model_base
from nbflows.neighbours import index as index_lib


def example_batch(model: model_base.Model, num_neighbours: int,
                  batch_size: int = 2) -> Dict[str, jax.Array]:
  """A batch of zeros with every field a model may read (for shapes only).

  Args:
    model: the model (its event shape).
    num_neighbours: k, the neighbours per example.
    batch_size: the number of examples.

  Returns:
    {"x": [B, *event], "neighbours": [B, k, *event], "label": [B],
    "index": [B]}.
  """
  event = model.event_shape
  return {
      "x": jnp.zeros((batch_size, *event), jnp.float32),
      "neighbours": jnp.zeros((batch_size, num_neighbours, *event),
                              jnp.float32),
      "label": jnp.zeros((batch_size,), jnp.int32),
      "index": jnp.zeros((batch_size,), jnp.int32),
  }


def chosen_checkpoint(checkpointer: Any, which: Optional[str] = None
                      ) -> Tuple[str, Optional[int]]:
  """(which, step) of a run's `train.checkpoint.Checkpointer`.

  `which` is "best" or "latest"; None takes the best if there is one, else
  the latest. The step is None when the run holds no such checkpoint.
  """
  if which is None:
    which = "best" if checkpointer.best_step() is not None else "latest"
  return which, (checkpointer.best_step() if which == "best"
                 else checkpointer.latest_step())


def load_checkpoint(workdir: str,
                    config: Optional[ml_collections.ConfigDict] = None,
                    which: Optional[str] = None
                    ) -> Tuple[model_base.Model, Any,
                               ml_collections.ConfigDict]:
  """Rebuilds the model of a training run and restores its parameters.

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
    ValueError: if the checkpoint was written for another model config (the
      message names the differing parameters and config fields).
  """
  # Imported here: they need the training code (orbax, optax), which plain
  # `import nbflows` does not.
  from nbflows.models import registry  # pylint: disable=g-import-not-at-top
  from train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from train import state as state_lib  # pylint: disable=g-import-not-at-top

  saved = checkpoint_lib.load_config(workdir)
  config = saved if config is None else config
  checkpointer = checkpoint_lib.Checkpointer(workdir, read_only=True)
  which, step = chosen_checkpoint(checkpointer, which)
  if step is None:
    checkpointer.close()
    raise FileNotFoundError(
        f"{workdir} holds no {which} checkpoint; expected the workdir of a "
        "training run that saved at least one")

  model = registry.build_model(config)
  optimizer = state_lib.make_optimizer(config.optimizer,
                                       config.num_train_steps)
  batch = example_batch(model,
                        index_lib.neighbourhood_size(config.neighbours))
  abstract = jax.eval_shape(
      lambda key: state_lib.create_train_state(model, optimizer, key, batch),
      jax.random.key(0))
  if hasattr(model, "fit"):
    # Fitted to the data, not trained (the KDE: its centres are the whole
    # training split), so the parameter shapes are the checkpoint's.
    params = checkpointer.stored_params(step, which)
    abstract = abstract.replace(params=params,
                                opt_state=jax.eval_shape(optimizer.init,
                                                         params))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
      abstract)
  state, _ = checkpointer.restore(
      step, abstract, which=which,
      config_diff=checkpoint_lib.config_differences(saved.to_dict(),
                                                    config.to_dict()))
  checkpointer.close()
  return model, state.params, config
