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
    model.log_prob(params, x, cond=None, *, key=None, validate=False)
                                               -> [B] nats, x in data units
    model.bits_per_dim(params, x, cond=None)   -> [B]
    model.sample_and_log_prob(params, key, n_or_cond, temperature=1.0)
                                               -> ([n, *event], [n])
    model.as_distribution(params, cond=None)   -> a distrax.Distribution
    and the exact-likelihood loss and eval metrics (bits/dim)
  `BijectiveModel(DensityModel)` (`protocols.Bijective`: the flows, LGF)
    model.forward(params, x, cond=None)        -> (z, logdet [B])
    model.inverse(params, z, cond=None)        -> (x, logdet [B])

"Data units" are those of the discrete data plus uniform dequantisation noise
(x = uint8 + u, u ~ U[0, 1)), so ``-log_prob / (D ln 2)`` is bits per
dimension in the discrete data space with no further correction. Every
public method takes x and neighbours by one rule, `nbflows.data_units`
(`inputs`): integer images are dequantised (bin centres, or noise from
`key=`), floats must be in [0, num_levels), and wrong units are a
ValueError naming the argument; ``validate=True`` also checks traced
values, through `jax.experimental.checkify`. With ``jax_enable_x64`` on,
float64 inputs are computed in float64 (`params_like`).

The wrapped module provides what its level calls: ``sample(key, cond,
num_samples, temperature)``; ``log_prob(x, cond)`` for a density, with
``__call__`` running it (so that `init` runs a forward pass for
data-dependent initialisation); ``forward(x, cond)`` and ``inverse(z,
cond)`` for a bijection.

Every public method validates its inputs (shapes always, values when they
are concrete) and then calls a jitted function, so it is fast called
eagerly and can also be wrapped in `jax.jit` by the user (`temperature`
may then be traced).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows import data_units
from nbflows import shape_buckets
from nbflows import units
from nbflows.bijectors import base as bijector_base
from nbflows.bijectors import context as bijector_context
from nbflows.models import model_distribution
from nbflows.objectives import likelihood

Array = jax.Array
Params = Any
CONDITION_KINDS = ("none", "neighbours", "label", "context")


class TrainableModel:
  """What every model shares: its event, condition, validation and sampling.

  Subclasses add the loss, the eval metrics, `selection_metric` and
  `default_metrics` (`protocols.Trainable`).

  Attributes:
    module: the Flax module.
    event_shape: shape of one example, e.g. (8, 8, 1) or (2,).
    condition_kind: "none" (cond must be None), "neighbours" (cond is
      [B, k, *event_shape]; `ncl.NeighbourhoodModel` may fix k), "label"
      (cond is [B] integers) or "context" (cond is a float context vector
      [B, context_dim], `nbflows.bijectors.context`).
    name: the config's model name.
    num_classes: for condition_kind="label".
    num_levels: the number of discrete levels L of the data, or None for
      continuous data; when set, inputs must lie in data units [0, L).
    num_neighbours: for condition_kind="neighbours", the k the model takes
      (`ncl.NeighbourhoodModel` with concatenated neighbours), or None for
      any k.
    context_dim: for condition_kind="context", the width C of the context;
      for "neighbours", the C of a context given with the neighbours
      (NCL / NCT: cond {"neighbours": N, "context": c}), or None.
  """
  num_neighbours: Optional[int] = None
  context_dim: Optional[int] = None

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
    """Raises ValueError unless `x` is [B, *event_shape] in valid units.

    The value checks (`nbflows.data_units.check`: finite, within
    [0, num_levels), not rescaled to [0, 1]) run only on concrete arrays;
    under `jax.jit` only the shape is checked.
    """
    bijector_base.check_event(x, self.event_shape, name)
    if not isinstance(x, jax.core.Tracer):
      data_units.check(x, self.num_levels, name)

  def inputs(self, x: Array, cond: Optional[Array] = None, *,
             key: Optional[Array] = None, validate: bool = False
             ) -> Tuple[Array, Optional[Array]]:
    """(x, cond) checked and in data units, by the rule of `nbflows.data_units`.

    Integer x and neighbours are dequantised (bin centres, or uniform noise
    from `key`); floats must be in data units. Shapes are always checked;
    values when concrete, and under jit with ``validate=True``
    (`checkify`).

    Raises:
      ValueError: naming "x" or "neighbours", for the wrong shape or units.
    """
    bijector_base.check_event(x, self.event_shape, "x")
    x_key, cond_key = (None, None) if key is None else jax.random.split(key)
    x = data_units.to_data_units(x, self.num_levels, "x", key=x_key,
                                 validate=validate)
    return x, self.condition_units(cond, x.shape[0], key=cond_key,
                                   validate=validate)

  def condition_units(self, cond: Optional[Array], batch: Optional[int], *,
                      key: Optional[Array] = None, validate: bool = False
                      ) -> Optional[Array]:
    """`cond` checked (`check_cond`); neighbours in data units like x (a
    context given with them, {"neighbours": N, "context": c}, is not)."""
    self.check_cond(cond, batch)
    if self.condition_kind != "neighbours":
      return cond
    if isinstance(cond, Mapping):
      return {**cond, "neighbours": data_units.to_data_units(
          cond["neighbours"], self.num_levels, "neighbours", key=key,
          validate=validate)}
    return data_units.to_data_units(cond, self.num_levels, "neighbours",
                                    key=key, validate=validate)

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
    if self.condition_kind == "context":
      bijector_context.check_context(cond, self.context_dim, batch)
      return
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

  def _cond_description(self, batch: Optional[int]) -> str:
    b = "batch" if batch is None else str(batch)
    if self.condition_kind == "neighbours":
      dims = ", ".join(str(d) for d in self.event_shape)
      return f"neighbours of shape [{b}, k, {dims}] (any k >= 1)"
    if self.condition_kind == "context":
      return bijector_context.context_description(b, self.context_dim)
    return f"integer labels of shape [{b}]"

  def condition(self, batch: Mapping[str, Array]) -> Optional[Array]:
    """The batch field this model conditions on (None if unconditional)."""
    if self.condition_kind == "none":
      return None
    key = self.condition_kind      # "neighbours", "label" or "context"
    # NCL / NCT given a context: {"neighbours": N, "context": c}.
    fields = ((key, "context") if key == "neighbours" and self.context_dim
              else (key,))
    for field in fields:
      if field not in batch:
        raise ValueError(f"model {self.name!r} conditions on "
                         f"batch[{field!r}], but the batch has only "
                         f"{sorted(batch)}")
    if len(fields) == 1:
      return batch[key]
    return {field: batch[field] for field in fields}

  # ------------------------------------------------------------ functions
  def init(self, key: Array, batch: Mapping[str, Array]) -> Params:
    """Initialises parameters from a batch (data-dependent where needed).

    batch["x"] and the condition follow the units rule (`inputs`).
    """
    return self._init(key, *self.inputs(batch["x"], self.condition(batch)))

  def sample(self, params: Params, key: Array, n_or_cond: Union[int, Array],
             temperature: Union[float, Array] = 1.0, *,
             validate: bool = False) -> Array:
    """Draws samples (Alg. 2 of paper 1).

    Args:
      params: model parameters.
      key: a PRNG key.
      n_or_cond: the number of samples for an unconditional model, or the
        condition array (one sample per row: repeat a row for several
        samples of one condition) for a conditional one;
        neighbours follow the units rule (`inputs`; integers at their bin
        centres).
      temperature: T >= 0, scales the standard deviation of the latent
        Gaussian; a Python float or an array, also a traced one
        (``jax.jit(lambda t: model.sample(params, key, n, t))``).
      validate: check traced neighbours with `checkify` (`nbflows.data_units`).

    Returns:
      [n, *event_shape] samples in data units. For discrete data they are
      clipped to [0, num_levels): the logit preprocessing's inverse reaches
      alpha L / (1 - 2 alpha) beyond either end, and a sample should be a
      valid input to `log_prob`. n is rounded up to its bucket
      (`nbflows.shape_buckets`: counts 9 to 16 share one compiled sampler)
      and the extra samples dropped; the first n are those an n-sample
      draw gives.
    """
    num, cond = self._sample_condition(n_or_cond, validate)
    return self._draw(params, key, num, cond, checked_temperature(temperature))

  def _sample_condition(self, n_or_cond: Union[int, Array], validate: bool
                        ) -> Tuple[int, Optional[Array]]:
    """(number of samples, cond in data units or None) for `sample`."""
    if isinstance(n_or_cond, int):
      if self.condition_kind != "none":
        raise ValueError(f"model {self.name!r} samples from a condition: pass "
                         f"{self._cond_description(None)} instead of a count")
      if n_or_cond < 1:
        raise ValueError(f"number of samples is {n_or_cond}; expected >= 1")
      return n_or_cond, None
    cond = self.condition_units(n_or_cond, None, validate=validate)
    return jax.tree.leaves(cond)[0].shape[0], cond

  def _draw(self, params: Params, key: Array, num: int,
            cond: Optional[Array], temperature: Array) -> Array:
    """`num` samples, clipped to the data range (inputs already checked)."""
    # One program per bucket of counts (`nbflows.shape_buckets`).
    size = shape_buckets.bucket_size(num)
    samples = self._sample(
        params, key, jax.tree.map(
            lambda part: shape_buckets.pad_rows(part, size), cond),
        size, temperature)[:num]
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

  def log_prob(self, params: Params, x: Array, cond: Optional[Array] = None,
               *, key: Optional[Array] = None,
               validate: bool = False) -> Array:
    """log p(x | cond) in nats, shape [B] (Alg. 1 of paper 1).

    Args:
      params: model parameters.
      x: [B, *event]: integer levels (uint8), dequantised at their bin
        centres (or with uniform noise from `key`), or floats in data units
        [0, num_levels) (`nbflows.data_units`).
      cond: the condition; neighbours follow the same rule as x.
      key: dequantises integer x and neighbours with U[0, 1) noise.
      validate: also check traced values under the caller's jit, with
        `checkify` (wrap the caller in `checkify.checkify`); concrete
        values are always checked.

    Raises:
      ValueError: naming x or neighbours, for the wrong shape or units
        (values outside [0, num_levels), a float batch that looks rescaled
        to [0, 1]).
    """
    x, cond = self.inputs(x, cond, key=key, validate=validate)
    return self._log_prob(params_like(params, x), x, cond)

  def sample_and_log_prob(self, params: Params, key: Array,
                          n_or_cond: Union[int, Array],
                          temperature: Union[float, Array] = 1.0, *,
                          validate: bool = False) -> Tuple[Array, Array]:
    """`sample`, then `log_prob` of its samples under the same condition.

    Args and units as in `sample`. One check of the condition, no second
    pass through the units rule. The log-density is computed as `log_prob`
    computes it (`params_like`: in float64 when ``jax_enable_x64`` makes
    the samples float64), so it equals ``log_prob(params, samples, cond)``.

    Returns:
      (samples [n, *event] in data units (clipped as `sample`'s), their
      log p(x | cond) [n] in nats).
    """
    num, cond = self._sample_condition(n_or_cond, validate)
    samples = self._draw(params, key, num, cond,
                         checked_temperature(temperature))
    return samples, self._log_prob(params_like(params, samples), samples,
                                   cond)

  def as_distribution(self, params: Params, cond: Optional[Array] = None
                      ) -> "model_distribution.ModelDistribution":
    """This model with `params` (and `cond`) as a `distrax.Distribution`.

    Its `log_prob` is `self.log_prob` and `sample(seed=key)` is
    `self.sample(params, key, ...)`; with a condition [B, ...] the batch
    shape is (B,) (`nbflows.models.model_distribution`).
    """
    return model_distribution.ModelDistribution(self, params, cond)

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
    """-log p(x | cond) / (D ln 2), shape [B].

    Traceable (the loss of the jitted train step calls it): x and cond
    follow the units rule (`inputs`), their values checked only when
    concrete.
    """
    log_prob = self.module.apply(params, *self.inputs(x, cond),
                                 method="log_prob")
    return units.bits_per_dim(log_prob, self.num_dims)

  @functools.cached_property
  def _log_prob(self):
    return jax.jit(lambda p, x, c: self.module.apply(p, x, c, method="log_prob"))


class BijectiveModel(DensityModel):
  """A flow: a bijection x <-> z with its log-det (`protocols.Bijective`)."""

  def forward(self, params: Params, x: Array, cond: Optional[Array] = None,
              *, key: Optional[Array] = None,
              validate: bool = False) -> Tuple[Array, Array]:
    """Data -> latent: (z, log|det dz/dx|); x and cond as in `log_prob`."""
    x, cond = self.inputs(x, cond, key=key, validate=validate)
    return self._forward(params_like(params, x), x, cond)

  def inverse(self, params: Params, z: Array,
              cond: Optional[Array] = None) -> Tuple[Array, Array]:
    """Latent -> data: (x, log|det dx/dz|)."""
    bijector_base.check_finite(z, "z")
    self.check_cond(cond, z.shape[0])
    return self._inverse(params_like(params, z), z, cond)

  @functools.cached_property
  def _forward(self):
    return jax.jit(lambda p, x, c: self.module.apply(p, x, c, method="forward"))

  @functools.cached_property
  def _inverse(self):
    return jax.jit(lambda p, z, c: self.module.apply(p, z, c, method="inverse"))


def params_like(params: Params, x: Array) -> Params:
  """`params` in float64 when `x` is float64 with ``jax_enable_x64`` on.

  Then the whole computation is in float64 (a float32 parameter is exact
  in float64, but exp(log_scale) of it would be rounded to float32);
  otherwise `params` unchanged.
  """
  if jax.dtypes.canonicalize_dtype(x.dtype) != jnp.float64:
    return params
  return jax.tree.map(
      lambda leaf: leaf.astype(jnp.float64)
      if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf, params)


def checked_sample_count(n_or_cond: Any, model_name: str) -> int:
  """The number of samples an unconditional model's `sample` was asked for.

  Raises:
    ValueError: unless `n_or_cond` is an int >= 1, naming the model.

  Example:
    >>> checked_sample_count(4, "vae")
    4
    >>> checked_sample_count(0, "vae")
    Traceback (most recent call last):
    ...
    ValueError: n_or_cond=0; model 'vae' is unconditional and expects a \
number of samples >= 1
  """
  if not isinstance(n_or_cond, int) or n_or_cond < 1:
    raise ValueError(f"n_or_cond={n_or_cond!r}; model {model_name!r} is "
                     "unconditional and expects a number of samples >= 1")
  return n_or_cond


def checked_temperature(temperature: Union[float, Array],
                        name: str = "temperature") -> Array:
  """T as a float32 array, checked >= 0 when concrete (traced T passes).

  Every sampler takes its temperature (and the NIF flow its noise scale s,
  `name`) through here, so each can be traced under the caller's `jax.jit`:
  a traced value meets no Python branch and goes into the jitted sampler as
  an array argument, as a concrete one does.

  Raises:
    ValueError: for a concrete negative or NaN value, naming `name`.
  """
  if not isinstance(temperature, jax.core.Tracer) and not temperature >= 0:
    raise ValueError(f"{name}={temperature}; expected >= 0")
  return jnp.asarray(temperature, jnp.float32)


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
