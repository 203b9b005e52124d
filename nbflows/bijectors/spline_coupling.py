"""Rational-quadratic spline coupling (Durkan et al. 2019, Sec. 3.2).

  y_A = x_A
  y_B = g(x_B; theta(x_A, cond))          elementwise, g as in `spline`
  log|det dy/dx| = sum over B of log g'(x_B)

The coupling of `coupling.AffineCoupling` (paper 1, eq. 6; eq. 8 when
conditioned) with the affine map replaced by a monotonic rational-quadratic
spline on [-bound, bound] with `num_bins` bins (`spline.rational_quadratic`,
on `distrax.RationalQuadraticSpline`), the identity outside. The same masks
("checkerboard" and "channel" for [B, H, W, C] images, "half" for [B, D]
vectors, split with `distrax.SplitCoupling` for an even D), the same coupler
contract and the same `cond`. The coupler returns ``3 * num_bins + 1``
values per transformed channel (`couplers.ConvCoupler` / `MLPCoupler` with
``outputs_per_channel=spline.num_params(num_bins)``); their last layer is
zero-initialised, and zero parameters are the identity spline, so a fresh
layer is the identity.
"""
from __future__ import annotations

import jax

from nbflows.bijectors import coupling
from nbflows.bijectors import spline

Array = jax.Array


class RationalQuadraticSplineCoupling(coupling.Coupling):
  """Masked rational-quadratic spline coupling, optionally conditioned.

  Attributes: those of `coupling.Coupling` (mask, parity, coupler,
  conditional), and
    num_bins: K, the spline's bins.
    bound: B, the spline acts on [-B, B] and is the identity outside
      (`spline`: derivative 1 at both ends, so continuous).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> layer = RationalQuadraticSplineCoupling(mask="half", num_bins=4,
    ...                                         bound=3.0)
    >>> x = jnp.ones((2, 4))
    >>> params = layer.init(jax.random.key(0), x)
    >>> y, logdet = layer.apply(params, x, method="forward")
    >>> bool(jnp.allclose(y, x)), logdet.shape    # identity at init
    (True, (2,))
  """
  num_bins: int = 8
  bound: float = 3.0

  def outputs_per_channel(self) -> int:
    return spline.num_params(self.num_bins)

  def transformer(self, channels: int):
    spline.check_settings(self.num_bins, self.bound)
    per_channel = self.outputs_per_channel()

    def to_params(raw: Array) -> Array:
      if raw.shape[-1] != per_channel * channels:
        raise ValueError(
            f"the coupler returned {raw.shape[-1]} channels; expected "
            f"{per_channel * channels} (3 * num_bins + 1 = {per_channel} per "
            f"transformed channel, {channels} channels): build it with "
            f"outputs_per_channel={per_channel}")
      return raw.reshape(*raw.shape[:-1], channels, per_channel)

    def inner(params: Array):
      return spline.rational_quadratic(params, self.bound)

    return to_params, inner
