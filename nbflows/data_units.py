"""Data units: the one rule for the images every model entry point accepts.

A model of L-level data scores x in data units, x = k + u with k in
{0, ..., L - 1} the integer level and u in [0, 1) (paper 1, Sec. 4; see
`nbflows.bijectors.preprocessing`), so x lies in [0, L). Every public entry
(a model's `init`, `log_prob`, `forward`, the neighbours `sample` conditions
on, `nbflows.sampling.sample_like`, `nbflows.marginal`) applies the same
rule through `to_data_units`, to x and to neighbours alike:

  * integer arrays (uint8, int32) are the levels k and are dequantised
    explicitly: to the centres of their bins, k + 0.5, or, when the caller
    passes a key, to k + u with u ~ U[0, 1) (`uniform_dequantise`, as the
    training pipeline does); levels outside {0, ..., L - 1} are an error;
  * float arrays must already be in data units: values outside [0, L) are
    an error, and so is a float batch of L > 2 level data whose maximum is
    <= 1, which is what images rescaled to [0, 1] look like (every value
    of a genuine batch would have to be at level 0: pass such images as
    integers); the error names the argument (x, neighbours, images), the
    range seen and the units expected;
  * continuous data (L None) is only checked to be finite (integers are
    cast to float32, not shifted).

The dequantised training batches of `nbflows.data.pipeline` lie in [0, L)
and pass; the jitted train step calls the traceable losses, which check
nothing.

Value checks read the values, so they run on the host when the input is
concrete (a NumPy or committed JAX array). Under the caller's `jax.jit` the
values are unknown: the conversion still happens (it is traceable), and
with ``validate=True`` the checks are staged with `jax.experimental.
checkify`, so that

  checked = checkify.checkify(jax.jit(lambda x: model.log_prob(
      params, x, validate=True)))
  error, log_p = checked(x)
  error.throw()        # a JaxRuntimeError with the message, if any

Without checkify around it, a ``validate=True`` call under jit fails to
trace, saying so. By default (``validate=False``) traced inputs get no value
checks, so a jitted caller pays nothing.

Floats keep their dtype: with ``jax_enable_x64`` on, float64 inputs are
computed in float64 (float32 parameters are promoted); with it off JAX has
no float64, and float64 NumPy input becomes float32 as everywhere in JAX.
Dequantised integers are float32 (k + 0.5 is exact there).

Example:
  >>> import numpy as np
  >>> to_data_units(np.array([[0, 16]], np.uint8), 17, "x").tolist()
  [[0.5, 16.5]]
  >>> to_data_units(np.array([[0.2, 0.9]]), 256, "x")
  Traceback (most recent call last):
  ...
  ValueError: x is a float batch in [0.2, 0.9], which looks like images \
rescaled to [0, 1]; expected data units of a 256-level dataset: floats in \
[0, 256) (level + dequantisation noise), or the integer levels (e.g. uint8), \
which are dequantised at their bin centres
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from nbflows.bijectors import preprocessing

Array = jax.Array


def expected_units(num_levels: int) -> str:
  """What a `num_levels`-level model accepts, for error messages."""
  return (f"expected data units of a {num_levels}-level dataset: floats in "
          f"[0, {num_levels}) (level + dequantisation noise), or the integer "
          "levels (e.g. uint8), which are dequantised at their bin centres")


def check(values, num_levels: Optional[int], name: str) -> None:
  """Raises ValueError unless concrete `values` are valid for the rule.

  Args:
    values: a concrete array (NumPy or JAX), integer levels or floats.
    num_levels: L, or None for continuous data (then only finiteness).
    name: the argument's name for the message ("x", "neighbours", ...).

  Raises:
    ValueError: for NaN or infinite values, integer levels outside
      {0, ..., L - 1}, floats outside [0, L) or a float batch that looks
      rescaled to [0, 1]; the message names `name`, the range seen and the
      units expected.
  """
  values = np.asarray(values)
  if values.size == 0:
    return
  if np.issubdtype(values.dtype, np.floating) and not np.all(
      np.isfinite(values)):
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    raise ValueError(f"{name} holds {bad} NaN or infinite values; expected "
                     "finite inputs")
  if num_levels is None:
    return
  low, high = values.min(), values.max()
  if np.issubdtype(values.dtype, np.integer):
    if low < 0 or high >= num_levels:
      raise ValueError(f"{name} holds integer levels in [{low}, {high}]; "
                       f"expected levels 0 to {num_levels - 1} of a "
                       f"{num_levels}-level dataset")
    return
  outside = np.count_nonzero((values < 0) | (values >= num_levels))
  if outside:
    raise ValueError(f"{name} holds {outside} values outside [0, "
                     f"{num_levels}) (min {low}, max {high}); "
                     f"{expected_units(num_levels)}")
  if num_levels > 2 and high <= 1:    # every value at level 0: rescaled
    raise ValueError(f"{name} is a float batch in [{low}, {high}], which "
                     "looks like images rescaled to [0, 1]; "
                     f"{expected_units(num_levels)}")


def _staged_check(values: Array, num_levels: Optional[int], name: str) -> None:
  """`check`'s conditions as `checkify.check`s on traced `values`."""
  if jnp.issubdtype(values.dtype, jnp.floating):
    checkify.check(jnp.all(jnp.isfinite(values)),
                   f"{name} holds NaN or infinite values; expected finite "
                   "inputs")
  if num_levels is None:
    return
  low, high = jnp.min(values), jnp.max(values)
  checkify.check((low >= 0) & (high < num_levels),
                 f"{name} holds values in [{{low}}, {{high}}], outside [0, "
                 f"{num_levels}); {expected_units(num_levels)}",
                 low=low, high=high)
  if jnp.issubdtype(values.dtype, jnp.floating) and num_levels > 2:
    checkify.check(high > 1,
                   f"{name} is a float batch in [{{low}}, {{high}}], which "
                   "looks like images rescaled to [0, 1]; "
                   f"{expected_units(num_levels)}", low=low, high=high)


def dequantise(values, key: Optional[Array] = None):
  """Integer levels -> data units (k + 0.5, or k + u with a key); floats kept.

  No checks (`to_data_units` checks first). NumPy in, NumPy out for the
  bin centres; JAX arrays and tracers stay JAX arrays.

  Example:
    >>> dequantise(np.array([3], np.int32)).tolist()
    [3.5]
  """
  if not jnp.issubdtype(values.dtype, jnp.integer):
    return values
  if key is not None:
    return preprocessing.uniform_dequantise(key, jnp.asarray(values))
  if isinstance(values, np.ndarray):
    return values.astype(np.float32) + np.float32(0.5)
  return values.astype(jnp.float32) + 0.5


def to_data_units(values, num_levels: Optional[int], name: str, *,
                  key: Optional[Array] = None, validate: bool = False):
  """The rule: checks `values` (when concrete) and returns them in data units.

  Args:
    values: [..., *event] integer levels or floats in data units; NumPy,
      JAX array or tracer.
    num_levels: L of the model's data, or None for continuous data.
    name: the argument's name for errors ("x", "neighbours", "images").
    key: a PRNG key to dequantise integer levels with uniform noise; None
      for bin centres. Unused for float input.
    validate: also check traced values, with `checkify.check` (the caller
      wraps its function in `checkify.checkify`).

  Returns:
    The values in data units: float32 for integer input, the input itself
    (its dtype kept) for float input.

  Raises:
    ValueError: as `check`, for concrete values.
  """
  if not hasattr(values, "dtype"):
    values = np.asarray(values)
  if isinstance(values, jax.core.Tracer):
    if validate:
      _staged_check(values, num_levels, name)
  else:
    check(values, num_levels, name)
  if num_levels is None and jnp.issubdtype(values.dtype, jnp.integer):
    return values.astype(np.float32)
  return dequantise(values, key)
