"""Conditioner networks for coupling layers (the s and t of eq. 6, paper 1).

A coupler maps the kept half of the input, and optionally a condition, to
``2 * C`` raw outputs (shift and unbounded log-scale for every channel), or
``outputs_per_channel * C`` (a spline coupling's ``3 * num_bins + 1`` per
channel, `spline_coupling`). Its last layer is zero-initialised, so a fresh
coupling layer is the identity.

Conditions enter in one of two ways (``cond_mode``):
  - ``"concat"``: an image condition ``[B, h, w, c]`` is resized to the input's
    spatial size and concatenated along channels (NCT, eq. 8: "we re-size the
    neighbours before concatenating them"); a vector condition ``[B, f]`` is
    broadcast over space and concatenated.
  - ``"project"``: the condition is flattened and projected by a dense layer
    to the hidden width, then added to the first hidden activation.

`ConvCoupler` computes its convolutions with XLA's convolution
(``conv_impl="xla"``, the default) or as one matrix product of the image
patches (``conv_impl="im2col"``, `Im2colConv`); both have the same
parameters and outputs. Which is faster depends on the backend: measured on
2 CPU cores (PERFORMANCE.md), XLA's convolution wins in an unrolled flow,
while inside `nn.scan` XLA:CPU runs convolutions (and their gradients) far
slower than the matrix products of the im2col form.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
COND_MODES = (None, "concat", "project")
CONV_IMPLS = ("xla", "im2col")


def _check_cond_mode(cond_mode):
  if cond_mode not in COND_MODES:
    raise ValueError(f"cond_mode={cond_mode!r}; expected one of {COND_MODES}")


def concat_condition(x: Array, cond: Array) -> Array:
  """Concatenates `cond` to `x` along the last axis, resizing images.

  Args:
    x: [B, H, W, C] image or [B, D] vector features.
    cond: [B, h, w, c] image (resized bilinearly to H x W) or [B, F] vector
      (broadcast over space for image `x`).

  Returns:
    [B, H, W, C + c'] or [B, D + F].
  """
  if x.ndim == 4:
    if cond.ndim == 4:
      if cond.shape[1:3] != x.shape[1:3]:
        cond = jax.image.resize(
            cond, (cond.shape[0], *x.shape[1:3], cond.shape[-1]), "linear")
    elif cond.ndim == 2:
      cond = jnp.broadcast_to(cond[:, None, None, :],
                              (*x.shape[:3], cond.shape[-1]))
    else:
      raise ValueError(f"cond has shape {cond.shape}; expected [B, h, w, c] "
                       "or [B, features] to condition an image coupler")
  else:
    cond = cond.reshape(cond.shape[0], -1)
  return jnp.concatenate([x, cond.astype(x.dtype)], axis=-1)


def im2col_conv(x: Array, kernel: Array) -> Array:
  """Stride-1 "SAME" cross-correlation as one matmul of the patches.

  y[b, h, w, f] = sum_{i, j, c} x_pad[b, h + i, w + j, c] kernel[i, j, c, f],
  computed as patches [B*H*W, kh*kw*C] @ kernel [kh*kw*C, F], the patches
  being the kh*kw shifted copies of the zero-padded x side by side (tap
  (i, j) then channel, the order of `kernel.reshape`).

  Args:
    x: [B, H, W, C].
    kernel: [kh, kw, C, F] with odd kh and kw (`nn.Conv`'s layout).

  Returns:
    [B, H, W, F], equal to `nn.Conv(F, (kh, kw), padding="SAME")` without
    its bias.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    >>> k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    >>> ref = jax.lax.conv_general_dilated(
    ...     x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    >>> bool(jnp.allclose(im2col_conv(x, k), ref, atol=1e-5))
    True
  """
  kh, kw, channels, features = kernel.shape
  if kh % 2 == 0 or kw % 2 == 0 or x.shape[-1] != channels:
    raise ValueError(f"kernel has shape {kernel.shape}; expected [odd, odd, "
                     f"{x.shape[-1]}, F] for x of shape {tuple(x.shape)}")
  b, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2),
                       (0, 0)))
  patches = jnp.concatenate([padded[:, i:i + h, j:j + w, :]
                             for i in range(kh) for j in range(kw)], axis=-1)
  y = jnp.dot(patches.reshape(b * h * w, kh * kw * channels),
              kernel.reshape(kh * kw * channels, features))
  return y.reshape(b, h, w, features)


class Im2colConv(nn.Module):
  """`nn.Conv(features, kernel_size, padding="SAME")` computed by `im2col_conv`.

  Same parameter names, shapes and initialisers as `nn.Conv` ("kernel"
  [kh, kw, C, F] with `kernel_init`, "bias" [F] zeros), so the two are
  interchangeable on the same parameters.
  """
  features: int
  kernel_size: Tuple[int, int] = (3, 3)
  kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return im2col_conv(x, kernel) + bias


class ConvCoupler(nn.Module):
  """conv3x3 -> residual blocks (relu, conv3x3, relu, conv3x3) -> relu -> conv3x3.

  The architecture of ``../shared/bench/torch_realnvp.py --arch conv``, with
  the output convolution zero-initialised. ``conv_impl`` picks how the
  convolutions are computed: "xla" (`nn.Conv`) or "im2col" (`Im2colConv`),
  with the same parameters and the same outputs.
  """
  hidden: int = 32
  num_blocks: int = 2
  cond_mode: Optional[str] = None
  conv_impl: str = "xla"
  outputs_per_channel: int = 2

  def _conv(self, features: int, name: str,
            kernel_init: nn.initializers.Initializer =
            nn.linear.default_kernel_init) -> nn.Module:
    if self.conv_impl == "im2col":
      return Im2colConv(features, (3, 3), kernel_init=kernel_init, name=name)
    return nn.Conv(features, (3, 3), padding="SAME", kernel_init=kernel_init,
                   name=name)

  @nn.compact
  def __call__(self, x: Array, cond: Optional[Array] = None) -> Array:
    _check_cond_mode(self.cond_mode)
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(f"conv_impl={self.conv_impl!r}; expected one of "
                       f"{CONV_IMPLS}")
    out_channels = self.outputs_per_channel * x.shape[-1]
    if self.cond_mode == "concat" and cond is not None:
      x = concat_condition(x, cond)
    h = self._conv(self.hidden, "input")(x)
    if self.cond_mode == "project" and cond is not None:
      h = h + nn.Dense(self.hidden, name="cond_projection")(
          cond.reshape(cond.shape[0], -1))[:, None, None, :]
    for i in range(self.num_blocks):
      r = nn.relu(h)
      r = self._conv(self.hidden, f"block{i}_a")(r)
      r = nn.relu(r)
      r = self._conv(self.hidden, f"block{i}_b")(r)
      h = h + r
    return self._conv(out_channels, "output",
                      kernel_init=nn.initializers.zeros)(nn.relu(h))


class MLPCoupler(nn.Module):
  """Dense layers with relu, last layer zero-initialised (bench ``--arch mlp``)."""
  hidden: Sequence[int] = (256, 256)
  cond_mode: Optional[str] = None
  outputs_per_channel: int = 2

  @nn.compact
  def __call__(self, x: Array, cond: Optional[Array] = None) -> Array:
    _check_cond_mode(self.cond_mode)
    out_features = self.outputs_per_channel * x.shape[-1]
    if self.cond_mode == "concat" and cond is not None:
      x = concat_condition(x, cond)
    h = x
    for i, width in enumerate(self.hidden):
      h = nn.Dense(width, name=f"dense{i}")(h)
      if i == 0 and self.cond_mode == "project" and cond is not None:
        h = h + nn.Dense(width, name="cond_projection")(
            cond.reshape(cond.shape[0], -1))
      h = nn.relu(h)
    return nn.Dense(out_features, kernel_init=nn.initializers.zeros,
                    name="output")(h)
