"""The indexed bijection of a localised generative flow (paper 2, eq. 6).

  G(x; u) = exp(s(u)) * g(x) + t(u)
  log|det DG(x; u)| = log|det Dg(x)| + sum_i s(u)_i

g is any bijector (the identity when none is given, paper 2, App. C), and
s, t are two outputs of one network of the mixing variable u (App. D.1). u
is this layer's `cond`: for every fixed u, G(.; u) is a bijection of x, so
the layer obeys the bijector contract with u as the condition. The affine
part is a `distrax.ScalarAffine` in a `distrax.Block`; the network's last
layer is zero-initialised, so a fresh layer is exactly g.

u is a vector [B, du] for vector data [B, D] (s, t from an MLP), and an
image [B, H, W, cu] of the same spatial size for images [B, H, W, C] (s, t
from a small convolutional net that adds channels at its output, paper 2,
Sec. 5.2). The log-scale is bounded, s = 3 tanh(raw / 3), and the log-det
is summed from s.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.bijectors import base

Array = jax.Array


class ShiftLogScaleNet(nn.Module):
  """(t(u), s(u)) for an event of `out_channels` channels (App. D.1).

  Vectors: Dense layers with relu on u [B, du], outputs [B, D] each.
  Images: 3x3 convolutions with relu on u [B, H, W, cu], outputs
  [B, H, W, C] each. The output layer is zero-initialised, and the
  log-scale is bounded with slope 1 at 0:
  s = max_log_scale * tanh(raw / max_log_scale). The LGF models use the same
  network for the mean and log standard deviation of p(u | z) and q(u | z).

  Attributes:
    hidden: widths (vectors) or channel counts (images) of the hidden layers.
    max_log_scale: the bound on |s|.
  """
  hidden: Sequence[int] = (10, 10)
  max_log_scale: float = 3.0

  @nn.compact
  def __call__(self, u: Array, out_channels: int) -> Tuple[Array, Array]:
    if u.ndim == 4:
      layer = lambda width, **kw: nn.Conv(width, (3, 3), padding="SAME", **kw)
    else:
      layer = lambda width, **kw: nn.Dense(width, **kw)
    h = u
    for i, width in enumerate(self.hidden):
      h = nn.relu(layer(width, name=f"hidden{i}")(h))
    out = layer(2 * out_channels, kernel_init=nn.initializers.zeros,
                name="output")(h)
    shift, raw_log_scale = jnp.split(out, 2, axis=-1)
    bound = self.max_log_scale
    return shift, bound * jnp.tanh(raw_log_scale / bound)


class LocalisedAffine(base.Bijector):
  """G(x; u) = exp(s(u)) * g(x) + t(u) with u as `cond` (paper 2, eq. 6).

  Forward: y = exp(s(u)) * g(x) + t(u); log|det| = log|det Dg(x)| + sum s(u).
  Inverse: x = g^-1((y - t(u)) * exp(-s(u))), the negated log-det.

  Attributes:
    u_shape: the event shape of u: (du,) for vector data, (H, W, cu) for
      images (H, W those of x).
    inner: the bijector g (a `Bijector` called without a condition); None
      for the identity.
    hidden: hidden sizes of the (s, t) network.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> layer = LocalisedAffine(u_shape=(1,))
    >>> x, u = jnp.ones((3, 2)), jnp.zeros((3, 1))
    >>> params = layer.init(jax.random.key(0), x, u)
    >>> y, logdet = layer.apply(params, x, u, method="forward")
    >>> bool(jnp.allclose(y, x)), logdet.tolist()    # identity at init
    (True, [0.0, 0.0, 0.0])
  """
  u_shape: Sequence[int]
  inner: Optional[nn.Module] = None
  hidden: Sequence[int] = (10, 10)

  def setup(self):
    self.net = ShiftLogScaleNet(hidden=tuple(self.hidden))

  def _affine(self, x: Array, u: Optional[Array]) -> distrax.Bijector:
    """The elementwise affine map x -> exp(s(u)) * x + t(u) as distrax."""
    if x.ndim not in (2, 4):
      raise ValueError(f"x has shape {tuple(x.shape)}; expected [B, D] or "
                       "[B, H, W, C]")
    base.check_cond(u, self.u_shape, x.shape[0])
    if x.ndim == 4 and tuple(self.u_shape[:2]) != tuple(x.shape[1:3]):
      raise ValueError(f"u_shape={tuple(self.u_shape)} has spatial size "
                       f"{tuple(self.u_shape[:2])}; expected {x.shape[1:3]} "
                       "to match x")
    if x.ndim == 2 and len(self.u_shape) != 1:
      raise ValueError(f"u_shape={tuple(self.u_shape)}; expected (du,) for "
                       "vector x")
    shift, log_scale = self.net(u.astype(x.dtype), x.shape[-1])
    return distrax.Block(distrax.ScalarAffine(shift=shift, log_scale=log_scale),
                         ndims=x.ndim - 1)

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    affine = self._affine(x, cond)
    if self.inner is None:
      y, logdet = x, jnp.zeros(x.shape[:1], x.dtype)
    else:
      y, logdet = self.inner.forward(x)
    y, affine_logdet = affine.forward_and_log_det(y)
    return y, logdet + affine_logdet

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    x, logdet = self._affine(y, cond).inverse_and_log_det(y)
    if self.inner is None:
      return x, logdet
    x, inner_logdet = self.inner.inverse(x)
    return x, logdet + inner_logdet
