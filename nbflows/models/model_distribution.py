"""A density model with its parameters as a `distrax.Distribution`.

`DensityModel.as_distribution(params, cond)` wraps the model so that
distrax-based code (mixtures, `distrax.Transformed`, KL estimates) can use
it. Nothing is recomputed here: `log_prob` is the model's `log_prob` and
`sample(seed=key, sample_shape=n)` the model's `sample(params, key, ...)`.

Shapes follow distrax: with no condition the batch shape is () and
`sample(seed, (n,))` is [n, *event]; with a condition of B rows (B
neighbourhoods or labels) the batch shape is (B,), `sample(seed, (n,))` is
[n, B, *event] (row b of every draw conditioned on cond[b]) and
`log_prob(value)` takes [..., B, *event] and returns [..., B].

Example:
  >>> import jax, jax.numpy as jnp
  >>> from nbflows.bijectors import combinators
  >>> from nbflows.models import base, flow
  >>> module = flow.FlowModel(transform=combinators.Chain(()),
  ...                         event_shape=(2,))     # z = x ~ N(0, I)
  >>> model = base.BijectiveModel(module, (2,))
  >>> params = model.init(jax.random.key(0), {"x": jnp.zeros((1, 2))})
  >>> dist = model.as_distribution(params)
  >>> x = dist.sample(seed=jax.random.key(1), sample_shape=(3,))
  >>> bool(jnp.allclose(dist.log_prob(x), model.log_prob(params, x)))
  True
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import distrax
import jax
import jax.numpy as jnp

Array = jax.Array


class ModelDistribution(distrax.Distribution):
  """p(x | cond) of a `DensityModel` at fixed `params` and `cond`.

  Attributes:
    model: the density model.
    params: its parameters.
    cond: None, or the condition [B, ...] in data units (neighbours) or
      labels; checked by the model when the distribution is built.
  """

  def __init__(self, model: Any, params: Any, cond: Optional[Array] = None):
    super().__init__()
    self.model = model
    self.params = params
    self.cond = model.condition_units(cond, None)

  @property
  def event_shape(self) -> Tuple[int, ...]:
    return self.model.event_shape

  @property
  def batch_shape(self) -> Tuple[int, ...]:
    if self.cond is None:
      return ()
    return (jax.tree.leaves(self.cond)[0].shape[0],)   # also a dict cond

  def _tiled_cond(self, copies: int) -> Array:
    """cond repeated `copies` times along axis 0: row j B + b is cond[b]
    (each part of a dict cond, NCL / NCT with a context)."""
    return jax.tree.map(
        lambda part: jnp.tile(part, (copies,) + (1,) * (part.ndim - 1)),
        self.cond)

  def _sample_n(self, key: Array, n: int) -> Array:
    """[n, *batch_shape, *event] draws of `model.sample`."""
    if self.cond is None:
      return self.model.sample(self.params, key, n)
    samples = self.model.sample(self.params, key, self._tiled_cond(n))
    return samples.reshape(n, *self.batch_shape, *self.event_shape)

  def log_prob(self, value: Array) -> Array:
    """`model.log_prob` of value [..., *batch_shape, *event] -> [...,
    *batch_shape]."""
    trailing = self.batch_shape + self.event_shape
    if tuple(value.shape[value.ndim - len(trailing):]) != trailing:
      dims = ", ".join(str(d) for d in trailing)
      raise ValueError(f"value has shape {tuple(value.shape)}; expected "
                       f"[..., {dims}] (sample shape, batch shape "
                       f"{self.batch_shape}, event shape {self.event_shape})")
    lead = value.shape[:value.ndim - len(self.event_shape)]
    flat = value.reshape(math.prod(lead), *self.event_shape)
    cond = (None if self.cond is None else
            self._tiled_cond(flat.shape[0] // self.batch_shape[0]))
    return self.model.log_prob(self.params, flat, cond).reshape(lead)
