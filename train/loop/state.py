"""The training state and the optimizer that updates it.

`TrainState` is a pytree (a `flax.struct.dataclass`), so the whole state is
donated to the jitted train step, sharded, and checkpointed as one object:

  step               int32 []    number of batches consumed so far
  params             the model's parameters
  opt_state          the optax state of `make_optimizer(...)`
  rng                a typed PRNG key []; step t uses fold_in(rng, t)
  nonfinite_streak   int32 []    consecutive steps skipped as non-finite
  nonfinite_total    int32 []    all steps skipped as non-finite

The optimizer is AdamW after global-norm clipping, with a learning rate that
rises linearly from 0 over `warmup_steps` and then follows a cosine to 0 at
`num_train_steps` (or stays constant).
"""
from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from nbflows.models import protocols

Array = jax.Array
Params = Any
SCHEDULES = ("cosine", "constant")


@flax.struct.dataclass
class TrainState:
  """Everything a train step reads and writes; see the module docstring."""
  step: Array
  params: Params
  opt_state: optax.OptState
  rng: Array
  nonfinite_streak: Array
  nonfinite_total: Array


def make_schedule(optimizer_config: ml_collections.ConfigDict,
                  num_train_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to the peak rate, then cosine to 0 (or constant).

  lr(t) = peak * t / W                               for t < W
  lr(t) = peak * (1 + cos(pi (t - W) / (T - W))) / 2  for W <= t <= T ("cosine")
  lr(t) = peak                                        for t >= W ("constant")

  Args:
    optimizer_config: `config.optimizer` (learning_rate, warmup_steps,
      schedule).
    num_train_steps: T, the length of the run.

  Returns:
    An optax schedule, step -> learning rate.

  Raises:
    ValueError: for an unknown `schedule`.

  Example:
    >>> from configs import default
    >>> config = default.get_config()
    >>> schedule = make_schedule(config.optimizer, 3000)
    >>> [round(float(schedule(t)), 6) for t in (0, 50, 100, 3000)]
    [0.0, 0.0005, 0.001, 0.0]
  """
  peak = optimizer_config.learning_rate
  warmup = optimizer_config.warmup_steps
  if optimizer_config.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup,
        decay_steps=num_train_steps, end_value=0.0)
  if optimizer_config.schedule == "constant":
    if not warmup:  # optax's linear schedule over 0 steps stays at its start
      return optax.constant_schedule(peak)
    return optax.linear_schedule(0.0, peak, transition_steps=warmup)
  raise ValueError(f"config.optimizer.schedule={optimizer_config.schedule!r}; "
                   f"expected one of {SCHEDULES}")


def make_optimizer(optimizer_config: ml_collections.ConfigDict,
                   num_train_steps: int) -> optax.GradientTransformation:
  """Global-norm clipping followed by AdamW on `make_schedule`'s rate.

  AdamW is used even when `weight_decay` is 0, so the optimizer state has the
  same structure for every config (a checkpoint restores across changes of
  the decay).

  Args:
    optimizer_config: `config.optimizer` (learning_rate, warmup_steps,
      schedule, grad_clip_norm, weight_decay).
    num_train_steps: the length of the run (end of the cosine).

  Returns:
    An optax gradient transformation.
  """
  return optax.chain(
      optax.clip_by_global_norm(optimizer_config.grad_clip_norm),
      optax.adamw(make_schedule(optimizer_config, num_train_steps),
                  weight_decay=optimizer_config.weight_decay))


def create_train_state(model: protocols.Trainable,
                       optimizer: optax.GradientTransformation, key: Array,
                       batch: Mapping[str, Array]) -> TrainState:
  """Initialises the parameters from `batch` and the optimizer from them.

  Pure and traceable: the trainer jits it with replicated output shardings,
  and `jax.eval_shape` of it gives the restore target of a checkpoint.

  Args:
    model: the model facade.
    optimizer: from `make_optimizer`.
    key: a typed PRNG key; split into the initialisation key and `rng`.
    batch: a training batch (data-dependent initialisation sees it).

  Returns:
    A `TrainState` at step 0.
  """
  init_key, rng = jax.random.split(key)
  params = model.init(init_key, batch)
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      opt_state=optimizer.init(params), rng=rng,
      nonfinite_streak=jnp.zeros((), jnp.int32),
      nonfinite_total=jnp.zeros((), jnp.int32))

