"""The rational-quadratic spline transformer (Durkan et al. 2019, Sec. 3.1).

"Neural Spline Flows" (Durkan, Bekasov, Murray and Papamakarios, 2019) make
the elementwise map of a coupling or autoregressive layer a monotonic
rational-quadratic spline on [-B, B] with K bins. The knots
(x^(k), y^(k)), k = 0..K, run from (-B, -B) to (B, B); the bin widths and
heights are a softmax of K unconstrained values each, scaled to 2B, and the
K + 1 knot derivatives delta^(k) are positive. In bin k, with
s_k = (y^(k+1) - y^(k)) / (x^(k+1) - x^(k)) and
xi = (x - x^(k)) / (x^(k+1) - x^(k)),

  g(x) = y^(k) + (y^(k+1) - y^(k)) [s_k xi^2 + delta^(k) xi (1 - xi)]
                 / [s_k + (delta^(k+1) + delta^(k) - 2 s_k) xi (1 - xi)]

whose derivative (the log-det) and inverse (the root of a quadratic in xi)
are in closed form (their Sec. 3.1 gives all three). Built on
`distrax.RationalQuadraticSpline` with ``3 * num_bins + 1`` unconstrained parameters per dimension (K widths,
K heights, K + 1 derivatives; `num_params`).

Choices, and why:
  * Zero parameters are the identity: distrax's widths and heights are a
    softmax (zeros: equal bins, so x^(k) = y^(k)) and its derivatives are
    ``softplus(raw + log(exp(1 - m) - 1)) + m`` (m the minimum slope), which
    is exactly 1 at raw = 0, so every bin is the line y = x. A layer whose
    network's last layer is zero-initialised is therefore the identity.
  * ``boundary_slopes="identity"``: delta^(0) = delta^(K) = 1, so outside
    [-B, B] the map is the identity (distrax's linear tails with slope 1;
    Durkan et al.'s "linear tails", Sec. 3.1) and the derivative is 1 on
    both sides of -B and of B, i.e. continuous everywhere. The first and
    last of the K + 1 derivative parameters are unused (they receive no
    gradient). A point outside [-B, B] passes through with log-det 0.
  * Bins at least 1e-3 wide and high and knot slopes at least 1e-3 (the
    defaults of Durkan et al.'s code; distrax's are 1e-4): in a bin of
    height h, float32 rounding of y moves the inverse by about
    eps * |y| * width / h, so the smallest bins bound the round-trip error.
"""
from __future__ import annotations

import distrax
import jax

Array = jax.Array
BOUNDARY_SLOPES = "identity"
MIN_BIN_SIZE = 1e-3
MIN_KNOT_SLOPE = 1e-3


def num_params(num_bins: int) -> int:
  """Unconstrained parameters per dimension: K widths, K heights, K + 1 slopes.

  Example:
    >>> num_params(8)
    25
  """
  check_settings(num_bins, 1.0)
  return 3 * num_bins + 1


def check_settings(num_bins: int, bound: float) -> None:
  """Raises ValueError unless num_bins >= 1 and bound > 0."""
  if not isinstance(num_bins, int) or num_bins < 1:
    raise ValueError(f"num_bins={num_bins!r}; expected an integer >= 1")
  if not bound > 0:
    raise ValueError(f"spline bound={bound!r}; expected > 0 (the spline acts "
                     "on [-bound, bound])")


def rational_quadratic(params: Array, bound: float) -> distrax.Bijector:
  """The elementwise spline on [-bound, bound], identity outside.

  Args:
    params: [..., 3 * num_bins + 1] unconstrained parameters, one row per
      transformed element (broadcast against the input as distrax does).
    bound: B > 0.

  Returns:
    A `distrax.RationalQuadraticSpline` (event_ndims 0).

  Example:
    >>> import jax.numpy as jnp
    >>> spline = rational_quadratic(jnp.zeros((3, num_params(4))), 2.0)
    >>> x = jnp.array([-5.0, 0.3, 1.9])       # one point outside [-2, 2]
    >>> y, logdet = spline.forward_and_log_det(x)
    >>> bool(jnp.allclose(y, x)), bool(jnp.allclose(logdet, 0.0, atol=1e-6))
    (True, True)
  """
  num_bins = (params.shape[-1] - 1) // 3
  check_settings(num_bins, bound)
  if params.shape[-1] != num_params(num_bins):
    raise ValueError(f"spline parameters have {params.shape[-1]} entries per "
                     "dimension; expected 3 * num_bins + 1")
  return distrax.RationalQuadraticSpline(
      params, range_min=-bound, range_max=bound,
      boundary_slopes=BOUNDARY_SLOPES, min_bin_size=MIN_BIN_SIZE,
      min_knot_slope=MIN_KNOT_SLOPE)
