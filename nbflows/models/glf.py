"""Generative latent flow (GLF, paper 5) and the VAE with a flow prior.

An auto-encoder maps images to codes z = E(x), and a normalizing flow f maps
the codes to a standard Gaussian, e = f(z). Sampling is e ~ N(0, I),
z = f^-1(e), x = G(z). The flow is 4 coupling blocks (Fig. 1b), each two
affine couplings on complementary halves (an `AffineCoupling` with
mask="half" and an `MLPCoupler` of 3 dense layers) and a fixed random
permutation (`nbflows.bijectors.latent_flow`).

Objectives (`nbflows.objectives.latent_flow`; L_recon = 0.5 ||x - G(z)||^2
summed over pixels, -log of a unit Gaussian decoder up to a constant;
L_NLL = -log p_f(z), eq. 1):

  GLF (eq. 5):              L_recon(x, G(E(x))) + L_NLL(f(sg[E(x)]))
  regularised GLF (eq. 4):  beta * L_recon(x, G(E(x))) + L_NLL(f(E(x)))
  VAE + flow prior (eq. 3): -(beta log p(x | z) + log p_f(z) - log q(z | x)),
                            z ~ q(z | x)

The stop-gradient sg[.] of eq. 5 keeps the flow's likelihood from shrinking
the codes: without it (eq. 4), the log-det of f grows without bound as the
codes' scale falls, and the encoder obliges (Sec. 3.3.1). Images are the grey
levels in [0, 1] (App. B: no dequantisation); the decoder's sigmoid output is
its mean, mapped back to data units for sampling. The encoder's variance
Lambda(x) has no floor (`vae.GaussianEncoder(variance="softplus")`): under
eq. 3 it falls as beta grows (Fig. 3b, `train.experiments.beta_sweep`).
The auto-encoder is the VAE family's MLP or, with `architecture="conv"`
(`config.glf.architecture`), paper 5's convolutional one (App. A,
`nbflows.models.conv_autoencoder`).

Example:
  >>> import jax, jax.numpy as jnp
  >>> model = GLFModel(LatentFlowAutoEncoder(
  ...     event_shape=(4, 4, 1), latent_dim=4, hidden=(8,), flow_hidden=(8, 8)),
  ...     num_levels=17)
  >>> batch = {"x": jnp.full((3, 4, 4, 1), 8.5)}
  >>> params = model.init(jax.random.key(0), batch)
  >>> model.sample(params, jax.random.key(1), 2).shape
  (2, 4, 4, 1)
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.bijectors.latent_flow import LatentFlow
from nbflows.data import sources
from nbflows.distributions import gaussian
from nbflows.models import base
from nbflows.models import vae
from nbflows.objectives import elbo
from nbflows.objectives import latent_flow

Array = jax.Array
Params = Any


class LatentFlowAutoEncoder(nn.Module):
  """Encoder, decoder (the `vae` family) and a latent flow.

  Attributes:
    event_shape: the image shape.
    latent_dim: d_z (paper 5: 20 for MNIST).
    hidden: encoder/decoder hidden widths.
    activation: "relu" or "gated".
    flow_blocks: coupling blocks of the latent flow.
    flow_hidden: hidden widths of each coupler.
    flow_seed: seeds the permutations.
    architecture: "mlp", or "conv" for paper 5's convolutional encoder and
      decoder (App. A; `nbflows.models.conv_autoencoder`).
    conv_features: the convolutions' channels, for "conv".
    encoder_variance: the encoder's variance head (`vae.GaussianEncoder`):
      "softplus", no floor (eq. 3), or "hardtanh", paper 3's clip, which
      runs before commit 484a464 were trained with (`config.glf.
      encoder_variance`, recorded by `nbflows.parametrisations`).
  """
  event_shape: Tuple[int, ...]
  latent_dim: int = 20
  hidden: Sequence[int] = (300, 300)
  activation: str = "relu"
  flow_blocks: int = 4
  flow_hidden: Sequence[int] = (64, 64)
  flow_seed: int = 0
  architecture: str = "mlp"
  conv_features: Sequence[int] = (64, 128)
  encoder_variance: str = "softplus"

  def setup(self):
    if self.latent_dim < 2:
      raise ValueError(f"latent_dim={self.latent_dim}; the coupling flow "
                       "needs at least 2 latent dimensions")
    self.encoder = vae.GaussianEncoder(
        self.latent_dim, self.hidden, self.activation,
        variance=self.encoder_variance, architecture=self.architecture,
        conv_features=self.conv_features)
    self.decoder = vae.Decoder(tuple(self.event_shape), self.hidden,
                               self.activation, self.architecture,
                               self.conv_features)
    self.flow = LatentFlow(self.flow_blocks, self.flow_hidden, self.flow_seed)

  def __call__(self, x: Array) -> Array:
    """Encodes, scores and decodes `x` in [0, 1]; `init` makes all params."""
    mean, _ = self.encoder(x)
    self.flow.log_prob(mean)
    return self.decoder(mean)

  def encode(self, x: Array) -> Tuple[Array, Array]:
    """(mean, log variance) [B, d]; GLF uses the mean as its code."""
    return self.encoder(x)

  def decode(self, z: Array) -> Array:
    """Decoder means in [0, 1], [..., *event_shape]."""
    return jax.nn.sigmoid(self.decoder(z))

  def flow_log_prob(self, z: Array) -> Array:
    """log p_f(z) [B]."""
    return self.flow.log_prob(z)

  def to_noise(self, z: Array) -> Tuple[Array, Array]:
    """e = f(z) and log|det df/dz|."""
    return self.flow.forward(z)

  def from_noise(self, e: Array) -> Tuple[Array, Array]:
    """z = f^-1(e) and log|det df^-1/de|."""
    return self.flow.inverse(e)


class GLFModel(base.TrainableModel):
  """GLF, regularised GLF or VAE + flow prior.

  It offers `protocols.Trainable` only: no density on images (the decoder
  is deterministic; the latent flow's -log p(z) is `eval_metrics(...)["nll"]`)
  and no bijection on images (`encode`, `decode_noise`).

  Args:
    module: a `LatentFlowAutoEncoder`.
    num_levels: L, the number of pixel values.
    objective: "stop_gradient" (GLF, eq. 5), "regularised" (eq. 4) or "vae"
      (VAE + flow prior, eq. 3).
    beta: the reconstruction weight of eq. 3 and 4 (unused by eq. 5).
    name: the config's model name.

  Attributes:
    selection_metric: the per-example eval metric (lower is better) that
      picks the best checkpoint. For the auto-encoders it is
      "reconstruction": the latent NLL is no yardstick across training,
      since the codes' scale, and with it their entropy, drifts as the
      auto-encoder trains (and under eq. 4 collapses). For the VAE + flow
      prior it is "loss", the negative ELBO of eq. 3.
  """

  def __init__(self, module: LatentFlowAutoEncoder, num_levels: int,
               objective: str = "stop_gradient", beta: float = 1.0,
               name: str = "glf"):
    super().__init__(module, module.event_shape, "none", name,
                     num_levels=num_levels)
    latent_flow.check_objective(objective)
    if not beta > 0:
      raise ValueError(f"beta={beta}; expected > 0")
    if num_levels < 2:
      raise ValueError(f"num_levels={num_levels}; expected >= 2 pixel values")
    self.objective = objective
    self.beta = beta
    self.selection_metric = "loss" if objective == "vae" else "reconstruction"

  def default_metrics(self, images: bool) -> Tuple[str, ...]:
    """fd on images, none on vectors (`train.evaluation.requested_metrics`)."""
    return ("fd",) if images else ()

  def init(self, key: Array, batch: Mapping[str, Array]) -> Params:
    """Initialises the networks from a batch of images in data units."""
    x = batch["x"]
    self.check_x(x)
    return self.module.init(key, vae.grey_levels(x, self.num_levels))

  def encode(self, params: Params, x: Array) -> Array:
    """The codes z = E(x) [B, d] (the posterior mean for the VAE objective)."""
    return self.posterior(params, x)[0]

  def posterior(self, params: Params, x: Array) -> Tuple[Array, Array]:
    """(mu(x), log Lambda(x)) [B, d] of q(z | x), the VAE objective's."""
    return self.module.apply(params, vae.grey_levels(x, self.num_levels),
                             method="encode")

  def decode(self, params: Params, z: Array) -> Array:
    """G(z) in data units, [B, *event_shape]."""
    return vae.to_data_units(self.module.apply(params, z, method="decode"),
                             self.num_levels)

  def terms(self, params: Params, x: Array, key: Array) -> Dict[str, Array]:
    """Per-example reconstruction, NLL and (VAE) entropy terms, each [B].

    Returns:
      {"reconstruction": L_recon, "nll": -log p_f(z) with the objective's
      stop-gradient, "log_q": log q(z | x) (zero for the auto-encoders),
      "codes": z [B, d], "log_variance": log Lambda(x) [B, d] of q(z | x)
      (the VAE's; unused by the auto-encoders)}.
    """
    grey = vae.grey_levels(x, self.num_levels)
    mean, log_variance = self.module.apply(params, grey, method="encode")
    if self.objective == "vae":
      z = elbo.reparameterised_sample(key, mean, log_variance)
      log_q = gaussian.diagonal_gaussian_log_prob(z, mean, log_variance)
    else:
      z, log_q = mean, jnp.zeros(mean.shape[0], mean.dtype)
    nll = -self.module.apply(params, latent_flow.flow_input(z, self.objective),
                             method="flow_log_prob")
    reconstruction = latent_flow.reconstruction_loss(
        grey, self.module.apply(params, z, method="decode"))
    return {"reconstruction": reconstruction, "nll": nll, "log_q": log_q,
            "codes": z, "log_variance": log_variance}

  def loss(self, params: Params, batch: Mapping[str, Array],
           key: Array) -> Tuple[Array, Dict[str, Array]]:
    """Eq. 5, 4 or 3 (per `objective`), mean over the batch.

    Metrics: loss, reconstruction (L_recon), nll (L_NLL), latent_scale (the
    codes' standard deviation over the batch, averaged over dimensions: the
    quantity that collapses under eq. 4), latent_norm (the batch mean of
    ||z||_2, the codes' size, Sec. 3.3.1) and, for the VAE, log_q and
    posterior_variance (the mean of Lambda(x) over the batch and the latent
    dimensions, which falls as beta grows: Fig. 3b).
    """
    t = self.terms(params, batch["x"], key)
    loss = jnp.mean(self._per_example_loss(t))
    metrics = {"loss": loss, "reconstruction": jnp.mean(t["reconstruction"]),
               "nll": jnp.mean(t["nll"]),
               "latent_scale": jnp.mean(jnp.std(t["codes"], axis=0)),
               "latent_norm": jnp.mean(jnp.linalg.norm(t["codes"], axis=-1))}
    if self.objective == "vae":
      metrics["log_q"] = jnp.mean(t["log_q"])
      metrics["posterior_variance"] = jnp.mean(jnp.exp(t["log_variance"]))
    return loss, metrics

  def eval_metrics(self, params: Params, batch: Mapping[str, Array],
                   key: Array) -> Dict[str, Array]:
    """Per-example {"loss", "reconstruction", "nll"} ([B] each)."""
    t = self.terms(params, batch["x"], key)
    return {"loss": self._per_example_loss(t),
            "reconstruction": t["reconstruction"], "nll": t["nll"]}

  def _per_example_loss(self, terms: Mapping[str, Array]) -> Array:
    return latent_flow.per_example_loss(terms["reconstruction"], terms["nll"],
                                        terms["log_q"], self.objective,
                                        self.beta)

  # --------------------------------------------------------------- sampling
  def sample(self, params: Params, key: Array, n_or_cond: Any,
             temperature: Union[float, Array] = 1.0) -> Array:
    """x = G(f^-1(e)), e ~ N(0, T^2 I); [n, *event] in data units.

    T = 0 decodes f^-1(0), the image of the flow prior's mode; T may be
    traced under the caller's jit (`base.checked_temperature`).
    """
    return self._sample_jit(params, key,
                            base.checked_sample_count(n_or_cond, self.name),
                            base.checked_temperature(temperature))

  @functools.cached_property
  def _sample_jit(self):

    def sample(params, key, num, temperature):
      e = temperature * jax.random.normal(key, (num, self.module.latent_dim))
      return self._decode_noise_jit(params, e)

    return jax.jit(sample, static_argnums=(2,))

  def decode_noise(self, params: Params, e: Array) -> Array:
    """x = G(f^-1(e)) [B, *event] in data units for noise e [B, d]."""
    return self._decode_noise_jit(params, e)

  @functools.cached_property
  def _decode_noise_jit(self):

    def decode_noise(params, e):
      z, _ = self.module.apply(params, e, method="from_noise")
      return self.decode(params, z)

    return jax.jit(decode_noise)

  def interpolate(self, params: Params, e_start: Array, e_end: Array,
                  num_steps: int) -> Array:
    """Images along the straight line between two noise vectors (Fig. 2f).

    Args:
      params: model parameters.
      e_start: [d] noise at t = 0.
      e_end: [d] noise at t = 1.
      num_steps: points on the line, ends included (>= 2).

    Returns:
      [num_steps, *event] images in data units.
    """
    if num_steps < 2:
      raise ValueError(f"num_steps={num_steps}; expected >= 2")
    t = jnp.linspace(0.0, 1.0, num_steps)[:, None]
    return self.decode_noise(params, (1 - t) * e_start + t * e_end)


def _build(config: Any, objective: str) -> GLFModel:
  if config.glf.encoder_variance not in vae.POSTERIOR_VARIANCES:
    raise ValueError(f"config.glf.encoder_variance="
                     f"{config.glf.encoder_variance!r}; expected one of "
                     f"{vae.POSTERIOR_VARIANCES}")
  info = sources.dataset_info(config.dataset)
  architecture, conv_features = vae.network_architecture(
      config.glf, info.event_shape, "config.glf")
  module = LatentFlowAutoEncoder(
      event_shape=tuple(info.event_shape), latent_dim=config.glf.latent_dim,
      hidden=tuple(config.glf.hidden), activation=config.glf.activation,
      flow_blocks=config.glf.flow_blocks,
      flow_hidden=tuple(config.glf.flow_hidden), flow_seed=config.seed,
      architecture=architecture, conv_features=conv_features,
      encoder_variance=config.glf.encoder_variance)
  return GLFModel(module, info.num_levels, objective, config.glf.beta,
                  name=config.model)


def build_glf(config: Any) -> GLFModel:
  """GLF; `config.glf.objective` picks eq. 5 ("stop_gradient") or eq. 4."""
  if config.glf.objective not in ("stop_gradient", "regularised"):
    raise ValueError(f"config.glf.objective={config.glf.objective!r}; "
                     "expected 'stop_gradient' or 'regularised' for model glf")
  return _build(config, config.glf.objective)


def build_vae_flowprior(config: Any) -> GLFModel:
  """The VAE with a latent-flow prior and reconstruction weight beta (eq. 3)."""
  return _build(config, "vae")
