"""The model classes: what the trainer, the evaluators and users call.

Three levels, each a Flax module behind pure functions of `params`; a model
has the methods of the capabilities it offers (`nbflows.models.protocols`)
and no others:

  `TrainableModel` (every model: `protocols.Trainable`'s frame)
    params = model.init(key, batch)                  batch: {"x", ...}
    model.sample(params, key, n_or_cond, temperature=1.0) -> [n, *event]
    model.condition(batch)                     -> the batch field used as cond
    and, from each subclass, loss(params, batch, key) -> (scalar, metrics),
    eval_metrics(params, batch, key) -> {name: [B]}, selection_metric and
    default_metrics(images)
  `DensityModel(TrainableModel)` (`protocols.Density`: flows, LGF, the KDE)
    model.log_prob(params, x, cond=None)       -> [B] nats, x in data units
    model.bits_per_dim(params, x, cond=None)   -> [B]
    and the exact-likelihood loss and eval metrics (bits/dim)
  `BijectiveModel(DensityModel)` (`protocols.Bijective`: the flows, LGF)
    model.forward(params, x, cond=None)        -> (z, logdet [B])
    model.inverse(params, z, cond=None)        -> (x, logdet [B])

"Data units" are those of the discrete data plus uniform dequantisation noise
(x = uint8 + u, u ~ U[0, 1)), so ``-log_prob / (D ln 2)`` is bits per
dimension in the discrete data space with no further correction.

The wrapped module provides what its level calls: ``sample(key, cond,
num_samples, temperature)``; ``log_prob(x, cond)`` for a density, with
``__call__`` running it (so that `init` runs a forward pass for
data-dependent initialisation); ``forward(x, cond)`` and ``inverse(z,
cond)`` for a bijection.

Every public method validates its inputs (shapes always, finiteness when the
values are concrete) and then calls a jitted function, so it is fast called
eagerly and can also be wrapped in `jax.jit` by the user.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nbflows import shape_buckets
from nbflows import units
from nbflows.bijectors import base as bijector_base
from nbflows.objectives import likelihood

Array = jax.Array
Params = Any
CONDITION_KINDS = ("none", "neighbours", "label")


class TrainableModel:
  """What every model shares: its event, condition, validation and sampling.

  Subclasses add the loss, the eval metrics, `selection_metric` and
  `default_metrics` (`protocols.Trainable`).

  Attributes:
    module: the Flax module.
    event_shape: shape of one example, e.g. (8, 8, 1) or (2,).
    condition_kind: "none" (cond must be None), "neighbours" (cond is
      [B, k, *event_shape]; `ncl.NeighbourhoodModel` may fix k) or "label"
      (cond is [B] integers).
    name: the config's model name.
    num_classes: for condition_kind="label".
    num_levels: the number of discrete levels L of the data, or None for
      continuous data; when set, inputs must lie in data units [0, L).
    num_neighbours: for condition_kind="neighbours", the k the model takes
      (`ncl.NeighbourhoodModel` with concatenated neighbours), or None for
      any k.
  """
  num_neighbours: Optional[int] = None

  def __init__(self, module: nn.Module, event_shape: Sequence[int],
               condition_kind: str = "none", name: str = "",
               num_classes: Optional[int] = None,
               num_levels: Optional[int] = None):
    if condition_kind not in CONDITION_KINDS:
      raise ValueError(f"condition_kind={condition_kind!r}; expected one of "
                       f"{CONDITION_KINDS}")
    self.module = module
    self.event_shape = tuple(event_shape)
    self.condition_kind = condition_kind
    self.name = name
    self.num_classes = num_classes
    self.num_levels = num_levels
    self.num_dims = math.prod(self.event_shape)

  # ----------------------------------------------------------- validation
  def check_x(self, x: Array, name: str = "x") -> None:
    """Raises ValueError unless `x` is [B, *event_shape], finite, in range.

    The value checks (finite, within [0, num_levels)) run only on concrete
    arrays; under `jax.jit` only the shape is checked.
    """
    bijector_base.check_event(x, self.event_shape, name)
    bijector_base.check_finite(x, name)
    if self.num_levels is not None and not isinstance(x, jax.core.Tracer):
      values = np.asarray(x)
      outside = np.count_nonzero((values < 0) | (values >= self.num_levels))
      if outside:
        raise ValueError(
            f"{name} holds {outside} values outside [0, {self.num_levels}) "
            f"(min {values.min()}, max {values.max()}); expected data units "
            f"(integer level + uniform noise) of a {self.num_levels}-level "
            "dataset")

  def check_cond(self, cond: Optional[Array], batch: Optional[int]) -> None:
    """Raises ValueError unless `cond` fits `condition_kind`."""
    if self.condition_kind == "none":
      if cond is not None:
        raise ValueError(f"model {self.name!r} is unconditional; cond must be "
                         "None")
      return
    if cond is None:
      raise ValueError(f"model {self.name!r} needs cond: "
                       f"{self._cond_description(batch)}")
    if self.condition_kind == "neighbours":
      ok = (cond.ndim == len(self.event_shape) + 2 and
            tuple(cond.shape[2:]) == self.event_shape and cond.shape[1] >= 1)
    else:
      ok = cond.ndim == 1 and jnp.issubdtype(cond.dtype, jnp.integer)
    if ok and batch is not None:
      ok = cond.shape[0] == batch
    if not ok:
      raise ValueError(f"cond has shape {tuple(cond.shape)} and dtype "
                       f"{cond.dtype}; expected {self._cond_description(batch)}")
    bijector_base.check_finite(cond, "cond")

  def _cond_description(self, batch: Optional[int]) -> str:
    b = "batch" if batch is None else str(batch)
    if self.condition_kind == "neighbours":
      dims = ", ".join(str(d) for d in self.event_shape)
      return f"neighbours of shape [{b}, k, {dims}] (any k >= 1)"
    return f"integer labels of shape [{b}]"

  def condition(self, batch: Mapping[str, Array]) -> Optional[Array]:
    """The batch field this model conditions on (None if unconditional)."""
    if self.condition_kind == "none":
      return None
    key = "neighbours" if self.condition_kind == "neighbours" else "label"
    if key not in batch:
      raise ValueError(f"model {self.name!r} conditions on batch[{key!r}], "
                       f"but the batch has only {sorted(batch)}")
    return batch[key]

  # ------------------------------------------------------------ functions
  def init(self, key: Array, batch: Mapping[str, Array]) -> Params:
    """Initialises parameters from a batch (data-dependent where needed)."""
    x = batch["x"]
    self.check_x(x)
    cond = self.condition(batch)
    self.check_cond(cond, x.shape[0])
    return self._init(key, x, cond)

  def sample(self, params: Params, key: Array, n_or_cond: Union[int, Array],
             temperature: float = 1.0) -> Array:
    """Draws samples (Alg. 2 of paper 1).

    Args:
      params: model parameters.
      key: a PRNG key.
      n_or_cond: the number of samples for an unconditional model, or the
        condition array (one sample per row) for a conditional one.
      temperature: scales the standard deviation of the latent Gaussian.

    Returns:
      [n, *event_shape] samples in data units. For discrete data they are
      clipped to [0, num_levels): the logit preprocessing's inverse reaches
      alpha L / (1 - 2 alpha) beyond either end, and a sample should be a
      valid input to `log_prob`. n is rounded up to its bucket
      (`nbflows.shape_buckets`: counts 9 to 16 share one compiled sampler)
      and the extra samples dropped; the first n are those an n-sample
      draw gives.
    """
    if isinstance(n_or_cond, int):
      if self.condition_kind != "none":
        raise ValueError(f"model {self.name!r} samples from a condition: pass "
                         f"{self._cond_description(None)} instead of a count")
      if n_or_cond < 1:
        raise ValueError(f"number of samples is {n_or_cond}; expected >= 1")
      num, cond = n_or_cond, None
    else:
      cond = n_or_cond
      self.check_cond(cond, None)
      num = cond.shape[0]
    if not temperature >= 0:
      raise ValueError(f"temperature={temperature}; expected >= 0")
    # One program per bucket of counts (`nbflows.shape_buckets`).
    size = shape_buckets.bucket_size(num)
    samples = self._sample(
        params, key, None if cond is None else shape_buckets.pad_rows(
            cond, size), size, float(temperature))[:num]
    if self.num_levels is None:
      return samples
    upper = jnp.nextafter(jnp.asarray(self.num_levels, samples.dtype), 0)
    return jnp.clip(samples, 0, upper)

  # ----------------------------------------------------- jitted internals
  @functools.cached_property
  def _init(self):
    # Jitted: an eager Flax init dispatches every operation on its own,
    # which for a multi-scale flow takes far longer than compiling it.
    return jax.jit(self.module.init)

  @functools.cached_property
  def _sample(self):
    return jax.jit(
        lambda p, k, c, n, t: self.module.apply(p, k, c, n, t, method="sample"),
        static_argnums=(3,))


class DensityModel(TrainableModel):
  """A model with log p(x | cond) in closed form (`protocols.Density`).

  Trained on the exact likelihood: the loss and the eval metric are bits per
  dimension, which also picks the best checkpoint.

  Attributes:
    selection_metric: "bpd".
  """
  selection_metric = "bpd"

  def default_metrics(self, images: bool) -> Tuple[str, ...]:
    """bpd, with marginal_bpd, fd and prd on images and log_likelihood on
    vectors (`train.evaluation.requested_metrics`)."""
    if images:
      return ("bpd", "marginal_bpd", "fd", "prd")
    return ("bpd", "log_likelihood")

  def log_prob(self, params: Params, x: Array,
               cond: Optional[Array] = None) -> Array:
    """log p(x | cond) in nats, shape [B] (Alg. 1 of paper 1)."""
    self.check_x(x)
    self.check_cond(cond, x.shape[0])
    return self._log_prob(params, x, cond)

  def loss(self, params: Params, batch: Mapping[str, Array],
           key: Array) -> Tuple[Array, Dict[str, Array]]:
    """Mean -log p(x) in bits/dim (`nbflows.objectives.likelihood`, eq. 9)."""
    del key  # exact likelihood: no randomness
    return likelihood.bits_per_dim_loss(
        self.bits_per_dim(params, batch["x"], self.condition(batch)))

  def eval_metrics(self, params: Params, batch: Mapping[str, Array],
                   key: Array) -> Dict[str, Array]:
    """Per-example evaluation metrics, each of shape [B]."""
    del key
    return {"bpd": self.bits_per_dim(params, batch["x"], self.condition(batch))}

  def bits_per_dim(self, params: Params, x: Array,
                   cond: Optional[Array] = None) -> Array:
    """-log p(x | cond) / (D ln 2), shape [B] (traceable, no validation)."""
    log_prob = self.module.apply(params, x, cond, method="log_prob")
    return units.bits_per_dim(log_prob, self.num_dims)

  @functools.cached_property
  def _log_prob(self):
    return jax.jit(lambda p, x, c: self.module.apply(p, x, c, method="log_prob"))


class BijectiveModel(DensityModel):
  """A flow: a bijection x <-> z with its log-det (`protocols.Bijective`)."""

  def forward(self, params: Params, x: Array,
              cond: Optional[Array] = None) -> Tuple[Array, Array]:
    """Data -> latent: (z, log|det dz/dx|)."""
    self.check_x(x)
    self.check_cond(cond, x.shape[0])
    return self._forward(params, x, cond)

  def inverse(self, params: Params, z: Array,
              cond: Optional[Array] = None) -> Tuple[Array, Array]:
    """Latent -> data: (x, log|det dx/dz|)."""
    bijector_base.check_finite(z, "z")
    self.check_cond(cond, z.shape[0])
    return self._inverse(params, z, cond)

  @functools.cached_property
  def _forward(self):
    return jax.jit(lambda p, x, c: self.module.apply(p, x, c, method="forward"))

  @functools.cached_property
  def _inverse(self):
    return jax.jit(lambda p, z, c: self.module.apply(p, z, c, method="inverse"))


def count_params(params: Params) -> int:
  """The number of scalar parameters in a pytree of arrays.

  The leaves may also be `jax.ShapeDtypeStruct`s, so a model's size can be
  counted from ``jax.eval_shape(model.init, key, batch)`` without
  initialising it.

  Example:
    >>> import jax.numpy as jnp
    >>> count_params({"params": {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}})
    16
  """
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
