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
    an error, and so is a float batch of L > 2 level data that looks
    rescaled to [0, 1] (`looks_rescaled`, below); the error names the
    argument (x, neighbours, images), the range seen and the units
    expected;
  * continuous data (L None) is only checked to be finite (integers are
    cast to float32, not shifted).

The dequantised training batches of `nbflows.data.pipeline` lie in [0, L)
and pass; the jitted train step calls the traceable losses, which check
nothing.

Rescaled or blank. A float batch whose maximum is <= 1 is either images
rescaled to [0, 1] or, in data units, a batch with every value at level 0:
blank (all-background) images. `looks_rescaled` tells them apart where the
values allow it. Such a batch (L > 2) is accepted as data units when

  * every value is 0.5: blank images at their bin centres; or
  * its values lie on no grid of rescaled levels and are not crowded at 0,
    as L-level data dequantised with u ~ U[0, 1) at level 0 are not;

and rejected as rescaled when

  * every value is k / s or (k + 1/2) / s for integers k, one s in
    {L - 1, L} (to 1e-3 of a grid step): levels divided by L - 1 (e.g.
    uint8 / 255, digits / 16) or by L (/ 256), at their bin centres or not,
    blank ones (all 0.0) included; or
  * for L >= 16, more than a quarter of its values lie below 1 / (L - 1):
    rescaled images dequantised first, (k + u) / L, whose background sits
    in [0, 1 / L); blank images in data units put a fraction 1 / (L - 1)
    <= 1/15 of their values there.

What remains ambiguous: a batch in data units at chosen points on such a
grid (every value 0.25 for L = 17) is read as rescaled, and a rescaled
uniform grey image at 0.5 as blank; dequantised blank images of fewer
than about 64 values can crowd below 1 / (L - 1) by chance (at L = 17:
2 % for 4 values, 0.2 % for 16, 3e-7 for 64), and rescaled, dequantised
images of L < 16 levels or with little background pass (images of
uniform noise levels, (k + u) / L, are uniform on [0, 1): exactly what
blank images in data units are). Integer levels
are never ambiguous: pass images as integers when in doubt. The check
costs a few passes over the batch only when its maximum is <= 1 (the
checkify version always runs them).

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
  >>> to_data_units(np.array([[0.0, 51.0, 255.0]]) / 255, 256, "x")
  Traceback (most recent call last):
  ...
  ValueError: x is a float batch in [0.0, 1.0], which looks like images \
rescaled to [0, 1]; expected data units of a 256-level dataset: floats in \
[0, 256) (level + dequantisation noise), or the integer levels (e.g. uint8), \
which are dequantised at their bin centres
  >>> to_data_units(np.array([[0.5, 0.5]]), 256, "x").tolist()   # blank
  [[0.5, 0.5]]
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from nbflows.bijectors import preprocessing

Array = jax.Array
# `looks_rescaled`: how near a grid of rescaled levels a value must be (in
# grid steps: float32 rounding of k / 256 is ~1e-5 of a step), and the
# fraction of values below 1 / (L - 1) that reads as rescaled background.
GRID_TOLERANCE = 1e-3
CROWDED_FRACTION = 0.25


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
  if high <= 1 and looks_rescaled(values, num_levels):
    raise ValueError(f"{name} is a float batch in [{low}, {high}], which "
                     "looks like images rescaled to [0, 1]; "
                     f"{expected_units(num_levels)}")


def looks_rescaled(values, num_levels: int, xp=np):
  """Whether a float batch in [0, 1] reads as images rescaled to [0, 1].

  The module doc's rule: False for L <= 2 and for blank images in data
  units (all 0.5, or dequantised at level 0); True for values on a grid
  k / s or (k + 1/2) / s, s in {L - 1, L}, and (L >= 16) for more than a
  quarter of the values below 1 / (L - 1). Only meaningful where max <= 1.

  Args:
    values: the float batch (NumPy, or JAX with ``xp=jnp`` under jit).
    num_levels: L.
    xp: `np` or `jnp`.

  Returns:
    A boolean (a traced one with ``xp=jnp``).

  Example:
    >>> bool(looks_rescaled(np.array([0.0, 3 / 16, 1.0]), 17))   # / 16
    True
    >>> bool(looks_rescaled(np.full(4, 0.5), 17))   # blank, bin centres
    False
  """
  if num_levels <= 2:
    return False
  on_grid = False
  for scale in (num_levels - 1, num_levels):
    for offset in (0.0, 0.5):
      steps = values * scale - offset
      on_grid = on_grid | xp.all(
          xp.abs(steps - xp.round(steps)) <= GRID_TOLERANCE)
  crowded = num_levels >= 16 and (
      xp.mean(values < 1 / (num_levels - 1)) > CROWDED_FRACTION)
  return ~xp.all(values == 0.5) & (on_grid | crowded)


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
    checkify.check((high > 1) | ~looks_rescaled(values, num_levels, jnp),
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
