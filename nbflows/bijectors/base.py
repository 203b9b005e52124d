"""The bijector contract shared by every layer in nbflows.

A bijector is a Flax module with two methods,

  forward(x, cond=None) -> (y, logdet)     logdet = log|det dy/dx|, shape [B]
  inverse(y, cond=None) -> (x, logdet)     logdet = log|det dx/dy| = -forward's

so that ``functools.partial(layer.apply, method="forward")`` is the pure
function ``(params, x, cond) -> (y, logdet)`` users jit. ``__call__`` is
``forward`` so that ``layer.init(key, x, cond)`` runs a forward pass (the
pass that data-dependent initialisation such as ActNorm's needs).

Each concrete layer builds a distrax bijector inside the method (distrax has no
conditioning argument, so the conditioner closes over ``cond``) and returns its
``forward_and_log_det`` / ``inverse_and_log_det``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Params = Any
BijectorFn = Callable[[Params, Array, Optional[Array]], Tuple[Array, Array]]


class Bijector(nn.Module):
  """Base class: subclasses implement `forward` and `inverse`."""

  def __call__(self, x: Array, cond: Optional[Array] = None):
    return self.forward(x, cond)

  def forward(self, x: Array, cond: Optional[Array] = None):
    raise NotImplementedError

  def inverse(self, y: Array, cond: Optional[Array] = None):
    raise NotImplementedError


def as_functions(layer: nn.Module) -> Tuple[BijectorFn, BijectorFn]:
  """Returns the pure `(params, x, cond) -> (y, logdet)` pair of a layer.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from nbflows.bijectors import AffineCoupling, MLPCoupler, as_functions
    >>> layer = AffineCoupling(mask="half", coupler=MLPCoupler((16,)))
    >>> x = jnp.ones((2, 4))
    >>> params = layer.init(jax.random.key(0), x)
    >>> forward, inverse = as_functions(layer)
    >>> y, logdet = jax.jit(forward)(params, x, None)
    >>> logdet.shape
    (2,)
  """

  def forward(params, x, cond=None):
    return layer.apply(params, x, cond, method="forward")

  def inverse(params, y, cond=None):
    return layer.apply(params, y, cond, method="inverse")

  return forward, inverse


def check_event(x: Array, event_shape: Sequence[int], name: str = "x") -> None:
  """Raises ValueError unless `x` has shape [batch, *event_shape].

  Shapes are static, so this check also runs under `jax.jit`.
  """
  event_shape = tuple(event_shape)
  if x.ndim != len(event_shape) + 1 or tuple(x.shape[1:]) != event_shape:
    raise ValueError(
        f"{name} has shape {tuple(x.shape)}; expected [batch, "
        f"{', '.join(str(d) for d in event_shape)}]")


def check_finite(x: Array, name: str = "x") -> None:
  """Raises ValueError if a concrete `x` holds NaN or infinite values.

  Under `jax.jit` the values are unknown, so the check is skipped there; the
  model facades run it before entering their jitted functions.
  """
  if isinstance(x, jax.core.Tracer):
    return
  values = np.asarray(x)
  if not np.all(np.isfinite(values)):
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    raise ValueError(f"{name} holds {bad} NaN or infinite values; expected "
                     "finite inputs")


def check_cond(cond: Optional[Array], expected_shape: Optional[Sequence[int]],
               batch: int, name: str = "cond") -> None:
  """Checks that `cond` is given exactly when a layer is conditional.

  Args:
    cond: the conditioning array or None.
    expected_shape: the event shape of `cond`, or None for an unconditional
      layer.
    batch: the batch size of the input it conditions.
    name: what to call `cond` in the error.

  Raises:
    ValueError: if `cond` is missing, unexpected, or of the wrong shape.
  """
  if expected_shape is None:
    if cond is not None:
      raise ValueError(f"{name} was given, but this layer is unconditional "
                       "(built with cond_shape=None)")
    return
  expected = (batch, *tuple(expected_shape))
  if cond is None:
    raise ValueError(f"{name} is missing; expected an array of shape "
                     f"{list(expected)}")
  if tuple(cond.shape) != expected:
    raise ValueError(f"{name} has shape {tuple(cond.shape)}; expected "
                     f"{list(expected)}")


def check_channels(layer: nn.Module, x: Array, param: str) -> None:
  """Checks `x` is [batch, ..., channels] with the channels `layer` was built for.

  The channel count is read from the leading axis of the per-channel
  parameter `param` once the layer is initialised.

  Raises:
    ValueError: if `x` has rank < 2 or another channel count.
  """
  if x.ndim < 2:
    raise ValueError(f"x has shape {tuple(x.shape)}; expected [batch, ..., "
                     "channels]")
  if layer.has_variable("params", param):
    expected = layer.get_variable("params", param).shape[0]
    if x.shape[-1] != expected:
      raise ValueError(f"x has {x.shape[-1]} channels (shape "
                       f"{tuple(x.shape)}); this {type(layer).__name__} was "
                       f"initialised with {expected}")


def is_conditional(layer: nn.Module) -> bool:
  """Whether a layer takes `cond` (its `conditional` attribute, else False)."""
  return bool(getattr(layer, "conditional", False))


def zeros_logdet(x: Array) -> Array:
  """The log-det of a volume-preserving map of `x`: zeros of shape [B]."""
  return jnp.zeros(x.shape[:1], x.dtype)


def sum_except_batch(x: Array) -> Array:
  """Sums all axes but the first: [B, ...] -> [B]."""
  return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)
