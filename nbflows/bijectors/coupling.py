"""Affine coupling layer (paper 1, eq. 6; eq. 8 when conditioned on N).

  y_A = x_A
  y_B = x_B * exp(log_scale(x_A, cond)) + shift(x_A, cond)
  log|det dy/dx| = sum over B of log_scale

The log-scale is bounded, ``log_scale = tanh(raw)`` times a learned
per-channel factor (RealNVP's parametrisation), and the log-det is summed from
``log_scale`` itself, never from ``log(exp(.))``. Built on
`distrax.MaskedCoupling` with a `distrax.ScalarAffine` inner bijector; the
conditioner closes over ``cond``.

A "half" mask over an even number of dimensions uses `distrax.SplitCoupling`
instead: the coupler sees only x_A (D/2 inputs) and returns the shift and
log-scale of x_B only (D outputs), where the masked form multiplies D/2 zero
inputs and discards D outputs. The two compute the same family of
functions (a masked coupler's weights on the zeroed inputs and discarded
outputs never receive a gradient), with about 21% fewer FLOPs for the
benchmark's 64 -> 256 -> 256 coupler (PERFORMANCE.md).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.bijectors import base
from nbflows.bijectors import couplers

Array = jax.Array
MASKS = ("checkerboard", "channel", "half")


def make_mask(kind: str, event_shape: Sequence[int], parity: int) -> Array:
  """Boolean mask over the event, True where the input is kept (x_A).

  Args:
    kind: "checkerboard" ([H, W, C]: (i + j) % 2 spatial pattern), "channel"
      ([H, W, C]: first half of the channels) or "half" ([D]: first half).
    event_shape: the event shape of one example.
    parity: 0 or 1; 1 swaps the kept and transformed parts.

  Returns:
    A boolean array of shape `event_shape`.
  """
  event_shape = tuple(event_shape)
  if parity not in (0, 1):
    raise ValueError(f"parity={parity}; expected 0 or 1")
  if kind == "checkerboard":
    if len(event_shape) != 3:
      raise ValueError(f"checkerboard mask needs an [H, W, C] event; got "
                       f"{event_shape}")
    h, w, _ = event_shape
    grid = (jnp.arange(h)[:, None] + jnp.arange(w)[None, :]) % 2 == parity
    return jnp.broadcast_to(grid[:, :, None], event_shape)
  if kind == "channel":
    if len(event_shape) != 3 or event_shape[-1] < 2:
      raise ValueError(f"channel mask needs an [H, W, C>=2] event; got "
                       f"{event_shape}")
    c = event_shape[-1]
    keep = (jnp.arange(c) < c // 2) != bool(parity)
    return jnp.broadcast_to(keep, event_shape)
  if kind == "half":
    if len(event_shape) != 1 or event_shape[0] < 2:
      raise ValueError(f"half mask needs a [D>=2] event; got {event_shape}")
    d = event_shape[0]
    return (jnp.arange(d) < d // 2) != bool(parity)
  raise ValueError(f"mask={kind!r}; expected one of {MASKS}")


class _PerChannelFactor(nn.Module):
  """A learned per-channel factor, initialised to one."""

  @nn.compact
  def __call__(self, channels: int) -> Array:
    return self.param("value", nn.initializers.ones, (channels,))


class Coupling(base.Bijector):
  """A masked coupling, y_A = x_A and y_B = tau(x_B; theta(x_A, cond)).

  What the affine and spline couplings share: the masks, the coupler (and
  its default), the checks of x and cond, and distrax's `MaskedCoupling`
  (or `SplitCoupling` for an even "half" split). A subclass says how many
  coupler outputs each transformed channel takes (`outputs_per_channel`)
  and builds the elementwise transformer tau from them (`transformer`).

  Attributes:
    mask: "checkerboard" or "channel" for images [B, H, W, C]; "half" for
      vectors [B, D].
    parity: 0 or 1, which half is kept.
    coupler: the conditioner network (`ConvCoupler`, `MLPCoupler` or any
      module mapping `(x_kept, cond)` to `outputs_per_channel()` times as
      many channels as x_kept has: x_A with zeros at B, or x_A alone for an
      even "half" split); defaults to a `ConvCoupler` for images and an
      `MLPCoupler` for vectors.
    conditional: whether the layer takes `cond` (then it is required).
  """
  mask: str = "checkerboard"
  parity: int = 0
  coupler: Optional[nn.Module] = None
  conditional: bool = False

  def outputs_per_channel(self) -> int:
    """Coupler outputs per transformed channel."""
    raise NotImplementedError

  def transformer(self, channels: int) -> Tuple[
      Callable[[Array], Any], Callable[[Any], distrax.Bijector]]:
    """(coupler output [..., P * channels] -> tau's parameters, parameters
    -> tau as an elementwise distrax bijector)."""
    raise NotImplementedError

  def setup(self):
    if self.mask not in MASKS:
      raise ValueError(f"mask={self.mask!r}; expected one of {MASKS}")
    if self.coupler is not None:
      if self.conditional and getattr(self.coupler, "cond_mode", "") is None:
        raise ValueError("conditional=True, but the coupler was built with "
                         "cond_mode=None and would ignore cond; give it "
                         "cond_mode='concat' or 'project'")
      self.net = self.coupler
    else:
      default = (couplers.MLPCoupler if self.mask == "half"
                 else couplers.ConvCoupler)
      self.net = default(cond_mode="concat" if self.conditional else None,
                         outputs_per_channel=self.outputs_per_channel())

  def _bijector(self, x: Array, cond: Optional[Array]) -> distrax.Bijector:
    if x.ndim not in (2, 4):
      raise ValueError(f"x has shape {tuple(x.shape)}; expected [B, H, W, C] "
                       "or [B, D]")
    if self.conditional and cond is None:
      raise ValueError("cond is missing; this coupling was built with "
                       "conditional=True and needs a [B, ...] condition")
    if not self.conditional and cond is not None:
      raise ValueError("cond was given, but this coupling was built with "
                       "conditional=False")
    if cond is not None and cond.shape[0] != x.shape[0]:
      raise ValueError(f"cond has batch size {cond.shape[0]}; expected "
                       f"{x.shape[0]} to match x")
    # An image given to a "half" coupling is left to make_mask to reject.
    split = self.mask == "half" and x.ndim == 2 and x.shape[-1] % 2 == 0
    to_params, inner = self.transformer(
        x.shape[-1] // 2 if split else x.shape[-1])

    def conditioner(x_kept: Array):
      return to_params(self.net(x_kept, cond))

    if split:
      return distrax.SplitCoupling(
          split_index=x.shape[-1] // 2, event_ndims=1, conditioner=conditioner,
          bijector=inner, swap=bool(self.parity))
    mask = make_mask(self.mask, x.shape[1:], self.parity)
    return distrax.MaskedCoupling(mask=mask, conditioner=conditioner,
                                  bijector=inner, event_ndims=x.ndim - 1)

  def forward(self, x: Array, cond: Optional[Array] = None):
    return self._bijector(x, cond).forward_and_log_det(x)

  def inverse(self, y: Array, cond: Optional[Array] = None):
    return self._bijector(y, cond).inverse_and_log_det(y)


class AffineCoupling(Coupling):
  """Masked affine coupling, optionally conditioned (eq. 6 / eq. 8).

  Attributes: those of `Coupling`; the coupler returns twice as many
  channels as x_kept has (shift and raw log-scale).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> layer = AffineCoupling(mask="checkerboard")
    >>> x = jnp.ones((2, 4, 4, 1))
    >>> params = layer.init(jax.random.key(0), x)
    >>> y, logdet = layer.apply(params, x, method="forward")
    >>> bool(jnp.allclose(y, x)), logdet.shape    # identity at init
    (True, (2,))
  """

  def setup(self):
    super().setup()
    self.log_scale_factor = _PerChannelFactor()

  def outputs_per_channel(self) -> int:
    return 2

  def transformer(self, channels: int):
    log_scale_factor = self.log_scale_factor(channels)

    def to_params(raw: Array) -> Tuple[Array, Array]:
      shift, raw_log_scale = jnp.split(raw, 2, axis=-1)
      return shift, log_scale_factor * jnp.tanh(raw_log_scale)

    def inner(params: Tuple[Array, Array]) -> distrax.Bijector:
      shift, log_scale = params
      return distrax.ScalarAffine(shift=shift, log_scale=log_scale)

    return to_params, inner
