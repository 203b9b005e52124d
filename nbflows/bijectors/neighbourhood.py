"""The neighbourhood condition of NCL and NCT (paper 1, Sec. 2.2).

A neighbourhood N is a [B, k, *event] array of k training images per target,
nearest first (the neighbour index sorts them by distance). It enters a
bijector in one of two forms (`FORMS`): "concat" (the paper's: the k
neighbours side by side, so k is fixed when the model is built) or "pool"
(the -pool variants: statistics over the neighbours, any k). This module
checks its shape and lays it out.

A model may also take a context vector c [B, C] with its neighbourhoods
(config.context.dim = C > 0): its condition is then the dict
{"neighbours": N, "context": c} (`split_condition` checks and separates it),
and c is broadcast over space and concatenated onto the features the
neighbourhood gives (`append_context`: NCT's per-scale conditions, NCL's
g_mu / g_sigma features). With C = 0 the condition is N itself.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from nbflows.bijectors import context as context_lib

Array = jax.Array
NEIGHBOURS, CONTEXT = "neighbours", "context"


# How the neighbourhood enters NCL's g_mu, g_sigma and NCT's couplings:
# "concat" (the paper's, k fixed) or "pool" (the -pool variants, any k).
FORMS = ("concat", "pool")


def fixed_num_neighbours(form: str, num_neighbours: Optional[int],
                         what: str) -> Optional[int]:
  """The k that `form` takes: `num_neighbours` for "concat", None (any k) for
  "pool".

  Args:
    form: one of `FORMS`.
    num_neighbours: k of the concatenating form.
    what: the attribute's name, for the messages.

  Raises:
    ValueError: for an unknown form, or "concat" without a k >= 1.
  """
  if form not in FORMS:
    raise ValueError(f"{what}={form!r}; expected one of {FORMS}")
  if form == "pool":
    return None
  if num_neighbours is None or num_neighbours < 1:
    raise ValueError(f"{what}='concat' with num_neighbours={num_neighbours}; "
                     "expected the k >= 1 of config.neighbours.k (the "
                     "neighbours are concatenated, so k is fixed)")
  return int(num_neighbours)


def neighbourhood_description(event_shape: Sequence[int], batch,
                              num_neighbours: Optional[int] = None) -> str:
  """What a neighbourhood argument must be, for error messages.

  Example:
    >>> neighbourhood_description((8, 8, 1), 3, num_neighbours=5)
    'neighbourhoods of shape [3, 5, 8, 8, 1] (k = 5 neighbours, nearest first)'
    >>> neighbourhood_description((8, 8, 1), "batch")
    'neighbourhoods of shape [batch, k, 8, 8, 1] (any k >= 1)'
  """
  dims = ", ".join(str(d) for d in event_shape)
  if num_neighbours is None:
    return f"neighbourhoods of shape [{batch}, k, {dims}] (any k >= 1)"
  return (f"neighbourhoods of shape [{batch}, {num_neighbours}, {dims}] "
          f"(k = {num_neighbours} neighbours, nearest first)")


def check_neighbourhood(cond: Optional[Array], event_shape: Sequence[int],
                        batch: int, name: str = "cond",
                        num_neighbours: Optional[int] = None) -> None:
  """Raises ValueError unless `cond` is a [batch, k, *event_shape] array.

  Args:
    cond: the neighbourhoods, or None.
    event_shape: the shape of one image.
    batch: the batch size of the targets they condition.
    name: what to call `cond` in the message.
    num_neighbours: the k a concatenating form was built for; None for any
      k >= 1.

  Raises:
    ValueError: naming the shape received and the one expected.
  """
  expected = neighbourhood_description(event_shape, batch, num_neighbours)
  if cond is None:
    raise ValueError(f"{name} is missing; expected {expected}")
  if (cond.ndim != len(event_shape) + 2 or cond.shape[0] != batch or
      cond.shape[1] < 1 or tuple(cond.shape[2:]) != tuple(event_shape)):
    raise ValueError(f"{name} has shape {tuple(cond.shape)}; expected "
                     f"{expected}")
  if num_neighbours is not None and cond.shape[1] != num_neighbours:
    raise ValueError(
        f"{name} has shape {tuple(cond.shape)}, k = {cond.shape[1]} "
        f"neighbours; expected {expected}: the model concatenates its "
        f"neighbours and was built for k = {num_neighbours} (the -pool "
        "variants take any k)")


def concat_neighbourhood(neighbours: Array) -> Array:
  """The neighbours side by side: [B, k, H, W, C] -> [B, H, W, kC].

  Channels j C to (j + 1) C - 1 hold neighbour j, so the nearest comes first.

  Example:
    >>> import jax.numpy as jnp
    >>> n = jnp.arange(6.0).reshape(1, 3, 1, 1, 2)    # k = 3, C = 2
    >>> concat_neighbourhood(n)[0, 0, 0].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
  """
  moved = jnp.moveaxis(neighbours, 1, -2)                  # [B, H, W, k, C]
  return moved.reshape(*moved.shape[:-2], -1)


def flatten_neighbours(cond: Array) -> Array:
  """[B, k, *event] -> [B * k, *event]."""
  return cond.reshape(-1, *cond.shape[2:])


def condition_description(event_shape: Sequence[int], batch,
                          num_neighbours: Optional[int] = None,
                          context_dim: int = 0) -> str:
  """What a neighbourhood model's cond must be: N, or N and a context.

  Example:
    >>> condition_description((8, 8, 1), 3, 5, context_dim=2)[:58]
    '{"neighbours": neighbourhoods of shape [3, 5, 8, 8, 1] (k '
  """
  neighbours = neighbourhood_description(event_shape, batch, num_neighbours)
  if not context_dim:
    return neighbours
  return (f'{{"{NEIGHBOURS}": {neighbours}, "{CONTEXT}": '
          f"{context_lib.context_description(batch, context_dim)}}}")


def split_condition(cond, event_shape: Sequence[int], batch: int,
                    num_neighbours: Optional[int] = None,
                    context_dim: int = 0
                    ) -> Tuple[Array, Optional[Array]]:
  """(neighbours [B, k, *event], context [B, C] or None) of a checked cond.

  With context_dim = 0 `cond` is the neighbourhood array and the context
  None; with C > 0 it is {"neighbours": N, "context": c}. Both parts are
  checked (`check_neighbourhood`, `context.check_context`).

  Args:
    cond: the condition, or None.
    event_shape: the shape of one image.
    batch: the batch size of the targets it conditions.
    num_neighbours: the k a concatenating form was built for, or None.
    context_dim: C, the width of the context (0: none).

  Raises:
    ValueError: for a missing condition, a dict where an array is expected
      or the reverse, a missing key, or a part of the wrong shape, naming
      what is expected.

  Example:
    >>> import jax.numpy as jnp
    >>> n, c = jnp.zeros((2, 3, 4, 4, 1)), jnp.ones((2, 5))
    >>> parts = split_condition({"neighbours": n, "context": c}, (4, 4, 1), 2,
    ...                         context_dim=5)
    >>> parts[0].shape, parts[1].shape
    ((2, 3, 4, 4, 1), (2, 5))
  """
  expected = condition_description(event_shape, batch, num_neighbours,
                                   context_dim)
  if not context_dim:
    if isinstance(cond, Mapping):
      raise ValueError(
          f"cond is a dict with keys {sorted(cond)}; expected {expected}: "
          "this model takes no context (config.context.dim = 0)")
    check_neighbourhood(cond, event_shape, batch,
                        num_neighbours=num_neighbours)
    return cond, None
  if cond is None:
    raise ValueError(f"cond is missing; expected {expected}")
  if not isinstance(cond, Mapping) or set(cond) != {NEIGHBOURS, CONTEXT}:
    got = (f"a dict with keys {sorted(cond)}" if isinstance(cond, Mapping)
           else f"of type {type(cond).__name__}")
    raise ValueError(f"cond is {got}; expected {expected}")
  check_neighbourhood(cond[NEIGHBOURS], event_shape, batch,
                      f"cond[{NEIGHBOURS!r}]", num_neighbours)
  context_lib.check_context(cond[CONTEXT], context_dim, batch,
                            f"cond[{CONTEXT!r}]")
  return cond[NEIGHBOURS], cond[CONTEXT]


def append_context(features: Array, context: Optional[Array]) -> Array:
  """c broadcast over space and concatenated: [B, H, W, F] -> [B, H, W, F + C].

  `features` unchanged when there is no context.

  Example:
    >>> import jax.numpy as jnp
    >>> append_context(jnp.zeros((1, 2, 2, 1)), jnp.array([[5.0, 6.0]]))[0, 1, 0]
    Array([0., 5., 6.], dtype=float32)
  """
  if context is None:
    return features
  spread = jnp.broadcast_to(context[:, None, None, :].astype(features.dtype),
                            (*features.shape[:-1], context.shape[-1]))
  return jnp.concatenate([features, spread], axis=-1)
