"""The convolutional encoder and decoder of paper 5 (App. A, Table 2).

Paper 5 takes InfoGAN's generator as GLF's decoder and makes the encoder
its mirror image, for GLF and its VAEs alike:

  encoder: 4x4 Conv64 /2, ReLU; 4x4 Conv128 /2, BN, ReLU; flatten;
           FC 128 M M -> 1024, BN, ReLU; FC 1024 -> d_z (2 d_z for a VAE)
  decoder: FC d_z -> 1024, BN, ReLU; FC 1024 -> 128 M M, BN, ReLU;
           4x4 Deconv64 x2, BN, ReLU; 4x4 Deconv x2 to the image's channels

with every (de)convolution of stride 2 and padding 1, so M = H / 4 (7 for
MNIST, 8 for CIFAR-10). Here the convolutional parts are two modules that
`nbflows.models.vae.GaussianEncoder` and `vae.Decoder` put in place of the
flatten and of the last dense layer (`architecture="conv"`):

  `ConvFeatures`         x [B, H, W, C] -> the stride-2 4x4 convolutions
                         `conv_features` (paper: (64, 128)), ReLU, flattened
  `TransposedConvLogits` h [..., n] -> Dense to M x M x conv_features[-1],
                         ReLU, then stride-2 4x4 transposed convolutions
                         back through conv_features[-2::-1] to C channels

The dense layers in between are the encoder's and decoder's own `hidden`
widths (the paper's single 1024-wide layer is ``hidden=(1024,)``), and so
are the heads: the encoder still ends in the mean and the log variance of
its `variance` rule (paper 3's hardtanh or paper 5's softplus; the paper's
"doubled output size" of the VAE's last FC layer is these two heads), and
the decoder's output stays its per-pixel logits, whose sigmoid is GLF's
mean and the VAEs' Bernoulli parameter. Every loss is unchanged.

What changes for small images, and why:

* M = H / 2^n for n = len(conv_features) stride-2 layers: 8x8 digits give
  M = 2 and 28x28 mnist5k M = 7 with the paper's two layers; 32x32x3
  images M = 8. H and W must be divisible by 2^n (`check_architecture`).
* No batch normalisation. Batch statistics would make q(z | x) of one image
  depend on the images batched with it, and the models here encode images
  in batches of every size: the IWAE bound per test image, the VampPrior's
  pseudo-inputs, the Exemplar VAE's exemplars (and its kNN cache, encoded
  on the host) all rest on an encoder that is a function of one image. The
  train state is parameters only, with no running averages to carry. With
  two convolutions and one dense layer the nets train without it.
* The convolutions use ReLU (InfoGAN's); `activation` ("gated" in paper 3's
  VAEs) stays the dense layers' choice.
* The widths are config fields (`config.vae.conv_features`,
  `config.glf.conv_features`; the dense ones `hidden`), so the small data
  sets take narrower nets than the paper's.

Example (shapes only, traced with `jax.eval_shape`):
  >>> import jax, jax.numpy as jnp
  >>> features = ConvFeatures(conv_features=(4, 8))
  >>> x = jnp.zeros((3, 8, 8, 1))
  >>> jax.eval_shape(features.init_with_output, jax.random.key(0), x)[0].shape
  (3, 32)
  >>> logits = TransposedConvLogits(event_shape=(8, 8, 1), conv_features=(4, 8))
  >>> z = jnp.zeros((5, 3, 6))                       # [S, B, n]
  >>> jax.eval_shape(logits.init_with_output, jax.random.key(0), z)[0].shape
  (5, 3, 8, 8, 1)
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import flax.linen as nn
import jax

Array = jax.Array
# "mlp": paper 3's (App. D.1) dense encoder and decoder on the flattened
# image; "conv": paper 5's (App. A) convolutional ones, this module.
ARCHITECTURES = ("mlp", "conv")
KERNEL = (4, 4)
STRIDES = (2, 2)
# Padding 1 on each side (paper 5, App. A): a 4x4 kernel of stride 2 maps an
# even size H to H / 2.
PADDING = ((1, 1), (1, 1))


def check_architecture(architecture: str, event_shape: Sequence[int],
                       conv_features: Sequence[int],
                       field: str = "architecture") -> None:
  """Raises ValueError unless `architecture` can be built for `event_shape`.

  Args:
    architecture: one of `ARCHITECTURES`.
    event_shape: the data's event shape, [H, W, C] for images.
    conv_features: the channels of the stride-2 convolutions ("conv").
    field: how the error names the setting, e.g. "config.glf.architecture".

  Raises:
    ValueError: for an unknown architecture; for "conv" on data that are not
      images [H, W, C], with no convolutions or a width < 1, or with H or W
      not divisible by 2^len(conv_features).
  """
  if architecture not in ARCHITECTURES:
    raise ValueError(f"{field}={architecture!r}; expected one of "
                     f"{ARCHITECTURES}")
  if architecture != "conv":
    return
  shape = tuple(event_shape)
  if len(shape) != 3:
    raise ValueError(f"{field}='conv' needs images [H, W, C]; the data have "
                     f"event shape {shape}. Use 'mlp' for vector data")
  features = tuple(conv_features)
  if not features or min(features) < 1:
    raise ValueError(f"conv_features={features}; expected one or more "
                     f"channel counts >= 1 for {field}='conv'")
  factor = 2 ** len(features)
  if shape[0] % factor or shape[1] % factor:
    raise ValueError(
        f"{field}='conv' with conv_features={features} halves the image "
        f"{len(features)} times, so H and W must be divisible by {factor}; "
        f"the images are {shape[0]}x{shape[1]}. Use fewer conv_features")


def bottleneck_shape(event_shape: Sequence[int],
                     conv_features: Sequence[int]) -> Tuple[int, int, int]:
  """(M_h, M_w, F): the feature map after the last stride-2 convolution."""
  factor = 2 ** len(conv_features)
  return (event_shape[0] // factor, event_shape[1] // factor,
          conv_features[-1])


class ConvFeatures(nn.Module):
  """x [B, H, W, C] -> [B, M_h * M_w * F]: strided convolutions, flattened.

  Attributes:
    conv_features: channels of the 4x4, stride-2 convolutions, each followed
      by a ReLU (paper 5: (64, 128)).
  """
  conv_features: Sequence[int] = (64, 128)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    h = x
    for i, features in enumerate(self.conv_features):
      h = nn.relu(nn.Conv(features, KERNEL, strides=STRIDES,
                          padding=PADDING, name=f"conv{i}")(h))
    return h.reshape(h.shape[0], -1)   # [B, M_h * M_w * F]


class TransposedConvLogits(nn.Module):
  """h [..., n] -> per-pixel logits [..., H, W, C]: the mirror of ConvFeatures.

  A dense layer to the M_h x M_w x conv_features[-1] bottleneck (ReLU), then
  4x4, stride-2 transposed convolutions through conv_features[-2::-1]
  (ReLU) and a last one to C channels with no activation: logits, like the
  MLP decoder's last dense layer.

  Attributes:
    event_shape: the image shape (H, W, C).
    conv_features: the encoder's convolution channels, mirrored.
  """
  event_shape: Tuple[int, ...]
  conv_features: Sequence[int] = (64, 128)

  @nn.compact
  def __call__(self, h: Array) -> Array:
    leading = h.shape[:-1]                       # e.g. [B] or [S, B]
    rows, cols, channels = bottleneck_shape(self.event_shape,
                                            self.conv_features)
    g = nn.relu(nn.Dense(rows * cols * channels, name="bottleneck")(
        h.reshape(math.prod(leading), h.shape[-1])))
    g = g.reshape(-1, rows, cols, channels)      # [prod(leading), M_h, M_w, F]
    widths = (*reversed(tuple(self.conv_features)[:-1]), self.event_shape[-1])
    for i, features in enumerate(widths):
      # "SAME" with stride 2 doubles the size, as padding 1 does in the paper.
      g = nn.ConvTranspose(features, KERNEL, strides=STRIDES, padding="SAME",
                           name=f"deconv{i}")(g)
      if i < len(widths) - 1:
        g = nn.relu(g)
    return g.reshape(*leading, *self.event_shape)
