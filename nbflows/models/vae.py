"""VAEs on dynamically binarised images: Gaussian prior and VampPrior.

The encoder/decoder family shared by the Exemplar VAE (paper 3) and GLF
(paper 5): the "VAE" architecture of paper 3, App. D.1 (after Tomczak &
Welling's VampPrior code),

  Encoder(x)     = MLP[D - 300 - 300] with gated units (Dauphin et al.)
  mu(x)          = Dense[300 - d_z]
  log Lambda(x)  = hardtanh(Dense[300 - d_z], -6, 2)   (variance="hardtanh")
  decoder logits = MLP[d_z - 300 - 300 - D] (gated hidden units)

with q(z | x) = N(mu(x), diag Lambda(x)) (eq. 11) and a Bernoulli decoder
p(x | z). Training images are binarised afresh at every step (dynamic
binarisation, paper 3, Sec. 5 and App. D.2): pixel k of a uint8 image is on
with probability k / (L - 1), its grey level in [0, 1].

The objective is the single-sample ELBO (paper 3, eq. 9 and 13)

  ELBO(x) = log p(x | z) + log p(z) - log q(z | x),   z ~ q(z | x),

so that the KL term is estimated the same way for every prior (paper 3,
Table 9). With `beta` != 1 the training loss is the beta-VAE objective
(Higgins et al., 2017), -(log p(x | z) - beta (log q(z | x) - log p(z))),
used for paper 1's CelebA neighbourhoods (App. B.2, beta = 1.5); the
evaluation metrics stay the ELBO (beta = 1) and the IWAE bound. The test
log-likelihood is the IWAE bound (Burda et al., 2015) over S importance
samples, as in paper 3, Sec. 5. Paper 3 (Sec. 5) also anneals the KL
weight linearly over its first 100 epochs (`kl_warmup_steps`: the weight
at step s is beta `elbo.kl_weight(s, warm-up)`); the trainer calls
`loss_at_step` with its step (`protocols.StepScheduledLoss`), while `loss`
is the objective after the warm-up.

The hardtanh floors the posterior variance at e^-6 ~ 2.5e-3, where its
gradient vanishes. Paper 5's VAE with a flow prior (eq. 3) has no floor:
its posterior variance falls to ~1e-4 as beta grows (Fig. 3b). There
`GaussianEncoder(variance="softplus")` gives Lambda(x) = softplus(Dense) +
`MIN_VARIANCE` (1e-8, far below any variance the models reach), unbounded
above, with a gradient that stays ~1 in log Lambda as Lambda -> 0.

With `architecture="conv"` (`config.vae.architecture`) the encoder and
decoder are paper 5's convolutional ones instead (App. A,
`nbflows.models.conv_autoencoder`): the same heads, so the same posterior
and Bernoulli decoder.

Priors here (`nbflows.distributions.priors`, built from the parameters by
`VAEModel.prior`): the standard Gaussian, and the VampPrior (Tomczak &
Welling, 2018), p(z) = 1/K sum_k q(z | u_k) with K learned pseudo-inputs u_k
in [0, 1]^D. The exemplar prior is `nbflows.models.exemplar_vae`; the latent
flow prior of paper 5 (eq. 3) is `nbflows.models.glf`. The ELBO and IWAE
arithmetic is `nbflows.objectives.elbo`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> model = VAEModel(VAE(event_shape=(4, 4, 1), latent_dim=2, hidden=(8,)),
  ...                  num_levels=17, iwae_samples=4)
  >>> batch = {"x": jnp.full((3, 4, 4, 1), 8.5), "index": jnp.arange(3)}
  >>> params = model.init(jax.random.key(0), batch)
  >>> loss, metrics = model.loss(params, batch, jax.random.key(1))
  >>> sorted(metrics)
  ['elbo', 'kl', 'kl_weight', 'loss', 'reconstruction_nll']
"""
from __future__ import annotations

import functools
import math
from typing import (Any, Callable, Dict, Mapping, Optional, Sequence, Tuple,
                    Union)

import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.data import sources
from nbflows.distributions import priors
from nbflows.models import base
from nbflows.models import conv_autoencoder
from nbflows.objectives import elbo
from nbflows.objectives import iwae

Array = jax.Array
Params = Any
ACTIVATIONS = ("gated", "relu")
PRIORS = ("gaussian", "vampprior", "exemplar")
Prior = Union[priors.StandardNormalPrior, priors.VampPrior,
              priors.ExemplarPrior]
# How the encoder's last layer gives log Lambda(x): "hardtanh", clipped to
# LOG_VARIANCE_RANGE (the VampPrior code, paper 3's VAEs); "softplus",
# log(softplus(.) + MIN_VARIANCE) (paper 5's VAE with a flow prior, eq. 3).
POSTERIOR_VARIANCES = ("hardtanh", "softplus")
LOG_VARIANCE_RANGE = (-6.0, 2.0)
MIN_VARIANCE = 1e-8
# Fixed key for binarising evaluation images: every model scores the same
# binary test set (folded with each example's index, so batching is irrelevant).
EVAL_BINARISATION_SEED = 20200101


# ----------------------------------------------------------------- data units
def grey_levels(x: Array, num_levels: int) -> Array:
  """Data units -> grey levels in [0, 1]: ``floor(x) / (L - 1)``.

  `x` = k + u with k the integer pixel value (see `nbflows.models.base`),
  so ``floor`` recovers k exactly whatever the dequantisation noise.
  """
  return jnp.floor(x) / (num_levels - 1)


def binarise(key: Array, x: Array, num_levels: int) -> Array:
  """Dynamic binarisation: each pixel is on with probability k / (L - 1).

  Args:
    key: a PRNG key.
    x: [B, ...] images in data units.
    num_levels: L, the number of pixel values.

  Returns:
    float32 array of 0s and 1s, the shape of `x`.
  """
  return jax.random.bernoulli(key, grey_levels(x, num_levels)).astype(
      jnp.float32)


def binarise_for_evaluation(x: Array, index: Array, num_levels: int) -> Array:
  """Binarises evaluation images with a key fixed by each example's index.

  The same test image is binarised the same way for every model and every
  batching, so models' test log-likelihoods are computed on identical data.
  """
  base_key = jax.random.key(EVAL_BINARISATION_SEED)
  keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(index)
  return jax.vmap(lambda k, xi: binarise(k, xi, num_levels))(keys, x)


def to_data_units(probabilities: Array, num_levels: int) -> Array:
  """Decoder means in [0, 1] -> data units: the centre of grey level p (L - 1).

  The inverse of `grey_levels` up to rounding, so samples and data share
  units (``floor`` of the result is the nearest pixel value).
  """
  return probabilities * (num_levels - 1) + 0.5


# ------------------------------------------------------------------ networks
class GatedDense(nn.Module):
  """h = Dense(x) * sigmoid(Dense_gate(x)) (Dauphin et al., 2017; App. D.1)."""
  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return nn.Dense(self.features, name="value")(x) * nn.sigmoid(
        nn.Dense(self.features, name="gate")(x))


def _hidden_layer(features: int, activation: str, name: str) -> Callable:
  if activation == "gated":
    return GatedDense(features, name=name)
  if activation == "relu":
    dense = nn.Dense(features, name=name)
    return lambda x: nn.relu(dense(x))
  raise ValueError(f"activation={activation!r}; expected one of {ACTIVATIONS}")


class GaussianEncoder(nn.Module):
  """x [B, *event] in [0, 1] -> (mu [B, d], log Lambda [B, d]) (eq. 11).

  Attributes:
    latent_dim: d_z.
    hidden: widths of the hidden layers.
    activation: "gated" (paper 3) or "relu".
    variance: "hardtanh" (log Lambda clipped to LOG_VARIANCE_RANGE, paper
      3) or "softplus" (Lambda = softplus(.) + MIN_VARIANCE, no floor in
      effect: paper 5, eq. 3).
    architecture: "mlp" (the hidden layers see the flattened image) or
      "conv" (they see `conv_autoencoder.ConvFeatures`: paper 5, App. A).
    conv_features: the convolutions' channels, for "conv".
  """
  latent_dim: int
  hidden: Sequence[int] = (300, 300)
  activation: str = "gated"
  variance: str = "hardtanh"
  architecture: str = "mlp"
  conv_features: Sequence[int] = (64, 128)

  @nn.compact
  def __call__(self, x: Array) -> Tuple[Array, Array]:
    conv_autoencoder.check_architecture(self.architecture, x.shape[1:],
                                        self.conv_features)
    if self.architecture == "conv":
      h = conv_autoencoder.ConvFeatures(self.conv_features, name="conv")(x)
    else:
      h = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      h = _hidden_layer(width, self.activation, f"hidden{i}")(h)
    mean = nn.Dense(self.latent_dim, name="mean")(h)
    raw = nn.Dense(self.latent_dim, name="log_variance")(h)
    return mean, posterior_log_variance(raw, self.variance)


def posterior_log_variance(raw: Array, variance: str) -> Array:
  """log Lambda from the encoder's last layer, per `variance`.

  "hardtanh": clip(raw, -6, 2), paper 3's (after the VampPrior code).
  "softplus": log(softplus(raw) + MIN_VARIANCE): smooth, ~raw as raw -> -inf
  (so the gradient does not vanish until Lambda nears 1e-8) and finite for
  every raw, since softplus >= 0.

  Example:
    >>> import jax.numpy as jnp
    >>> raw = jnp.array([-30.0, 0.0, 30.0])
    >>> [round(float(v), 2) for v in posterior_log_variance(raw, "hardtanh")]
    [-6.0, 0.0, 2.0]
    >>> [round(float(v), 2) for v in posterior_log_variance(raw, "softplus")]
    [-18.42, -0.37, 3.4]
  """
  if variance == "hardtanh":
    return jnp.clip(raw, *LOG_VARIANCE_RANGE)
  if variance == "softplus":
    return jnp.log(jax.nn.softplus(raw) + MIN_VARIANCE)
  raise ValueError(f"variance={variance!r}; expected one of "
                   f"{POSTERIOR_VARIANCES}")


class Decoder(nn.Module):
  """z [..., d] -> per-pixel logits [..., *event_shape].

  Attributes:
    event_shape: the image shape, e.g. (28, 28, 1).
    hidden: widths of the hidden layers.
    activation: "gated" (paper 3) or "relu".
    architecture: "mlp" (a dense layer gives the logits) or "conv"
      (`conv_autoencoder.TransposedConvLogits` does: paper 5, App. A).
    conv_features: the encoder's convolution channels, for "conv".
  """
  event_shape: Tuple[int, ...]
  hidden: Sequence[int] = (300, 300)
  activation: str = "gated"
  architecture: str = "mlp"
  conv_features: Sequence[int] = (64, 128)

  @nn.compact
  def __call__(self, z: Array) -> Array:
    conv_autoencoder.check_architecture(self.architecture, self.event_shape,
                                        self.conv_features)
    h = z
    for i, width in enumerate(self.hidden):
      h = _hidden_layer(width, self.activation, f"hidden{i}")(h)
    if self.architecture == "conv":
      return conv_autoencoder.TransposedConvLogits(
          tuple(self.event_shape), tuple(self.conv_features), name="conv")(h)
    logits = nn.Dense(math.prod(self.event_shape), name="logits")(h)
    return logits.reshape(*z.shape[:-1], *self.event_shape)


class VAE(nn.Module):
  """Encoder, decoder and the parameters of the prior.

  Attributes:
    event_shape: the image shape.
    latent_dim: d_z (paper 3: 40).
    hidden: encoder and decoder hidden widths (paper 3: (300, 300)).
    activation: "gated" or "relu".
    prior: which prior's parameters the module holds: "gaussian" (none),
      "vampprior" (K pseudo-inputs) or "exemplar" (the shared log sigma^2 of
      eq. 12; the exemplars themselves live in
      `nbflows.models.exemplar_vae.ExemplarVAEModel`). The densities are
      `nbflows.distributions.priors`.
    num_pseudo_inputs: K, for the VampPrior.
    architecture: "mlp" (paper 3, App. D.1) or "conv" (paper 5, App. A;
      `nbflows.models.conv_autoencoder`) for the encoder and decoder.
    conv_features: the convolutions' channels, for "conv".
  """
  event_shape: Tuple[int, ...]
  latent_dim: int = 40
  hidden: Sequence[int] = (300, 300)
  activation: str = "gated"
  prior: str = "gaussian"
  num_pseudo_inputs: int = 500
  architecture: str = "mlp"
  conv_features: Sequence[int] = (64, 128)

  def setup(self):
    if self.prior not in PRIORS:
      raise ValueError(f"prior={self.prior!r}; expected one of {PRIORS}")
    self.encoder = GaussianEncoder(
        self.latent_dim, self.hidden, self.activation,
        architecture=self.architecture, conv_features=self.conv_features)
    self.decoder = Decoder(tuple(self.event_shape), self.hidden,
                           self.activation, self.architecture,
                           self.conv_features)
    if self.prior == "vampprior":
      if self.num_pseudo_inputs < 1:
        raise ValueError(f"num_pseudo_inputs={self.num_pseudo_inputs}; "
                         "expected >= 1")
      # Tomczak & Welling's initialisation: N(0.05, 0.01), hardtanh to [0, 1].
      self.raw_pseudo_inputs = self.param(
          "pseudo_inputs",
          lambda key, shape: 0.05 + 0.01 * jax.random.normal(key, shape),
          (self.num_pseudo_inputs, *self.event_shape))
    if self.prior == "exemplar":
      self.exemplar_log_variance = self.param(
          "exemplar_log_variance", nn.initializers.zeros, ())

  def __call__(self, x: Array) -> Array:
    """Encodes and decodes `x` in [0, 1]; `init` makes every parameter here."""
    mean, _ = self.encoder(x)
    if self.prior == "vampprior":
      self.pseudo_inputs()
    if self.prior == "exemplar":
      self.log_variance()
    return self.decoder(mean)

  def encode(self, x: Array) -> Tuple[Array, Array]:
    """(mu(x), log Lambda(x)), each [B, d]."""
    return self.encoder(x)

  def decode(self, z: Array) -> Array:
    """Bernoulli logits [..., *event_shape] of p(x | z)."""
    return self.decoder(z)

  def pseudo_inputs(self) -> Array:
    """The VampPrior's K pseudo-inputs, [K, *event_shape] in [0, 1]."""
    return jnp.clip(self.raw_pseudo_inputs, 0.0, 1.0)

  def log_variance(self) -> Array:
    """The exemplar prior's shared scalar log sigma^2 (eq. 12)."""
    return self.exemplar_log_variance


# ------------------------------------------------------------------- facade
class VAEModel(base.TrainableModel):
  """A VAE: ELBO training, IWAE evaluation.

  It offers `protocols.Trainable`, `IWAEBound` and `GaussianEncoder`; it has
  no exact log p(x) (`iwae_log_likelihood` bounds it) and is no bijection
  (`encode`, `decode`).

  Subclasses change the prior by overriding `prior` (evaluation and
  sampling) and `training_log_prior` (the exemplar prior needs the batch at
  training time and all exemplars at evaluation time).

  Args:
    module: a `VAE`.
    num_levels: L, the number of pixel values of the data.
    iwae_samples: S, importance samples for the test log-likelihood.
    iwae_chunk: samples evaluated at once (bounds memory: [chunk, B, D]).
    name: the config's model name.
    beta: weight of the KL term in the training loss (1: the ELBO).
    kl_warmup_steps: steps over which the KL weight rises linearly to beta
      (paper 3, Sec. 5: 100 epochs); 0: no annealing.

  Attributes:
    selection_metric: the per-example eval metric (lower is better) that
      picks the best checkpoint: "loss", the negative ELBO in nats (paper 3
      early-stops on the validation ELBO). A VAE has no bits/dim of the
      dequantised data.
  """
  selection_metric = "loss"

  def __init__(self, module: VAE, num_levels: int, iwae_samples: int = 1000,
               iwae_chunk: int = 100, name: str = "vae", beta: float = 1.0,
               kl_warmup_steps: int = 0):
    super().__init__(module, module.event_shape, "none", name,
                     num_levels=num_levels)
    if num_levels < 2:
      raise ValueError(f"num_levels={num_levels}; expected >= 2 pixel values")
    if iwae_samples < 1 or iwae_chunk < 1:
      raise ValueError(f"iwae_samples={iwae_samples}, iwae_chunk={iwae_chunk};"
                       " expected both >= 1")
    if not beta > 0:
      raise ValueError(f"beta={beta}; expected > 0 (config.vae.beta)")
    if not isinstance(kl_warmup_steps, int) or kl_warmup_steps < 0:
      raise ValueError(f"kl_warmup_steps={kl_warmup_steps!r}; expected an "
                       "integer >= 0 (config.vae.kl_warmup_steps)")
    self.iwae_samples = iwae_samples
    self.beta = float(beta)
    self.kl_warmup_steps = kl_warmup_steps
    self.iwae_chunk = min(iwae_chunk, iwae_samples)

  @property
  def latent_dim(self) -> int:
    """d_z, the size of the Gaussian posterior's mean."""
    return self.module.latent_dim

  @property
  def eval_settings(self) -> Dict[str, int]:
    """Settings behind the eval metrics, for eval.json: {"iwae_samples": S}."""
    return {"iwae_samples": self.iwae_samples}

  def default_metrics(self, images: bool) -> Tuple[str, ...]:
    """iwae, with fd on images (`train.evaluation.requested_metrics`)."""
    return ("iwae", "fd") if images else ("iwae",)

  # ------------------------------------------------------------ functions
  def init(self, key: Array, batch: Mapping[str, Array]) -> Params:
    """Initialises the networks from a batch of images in data units."""
    x = batch["x"]
    self.check_x(x)
    return self.module.init(key, grey_levels(x, self.num_levels))

  def encode(self, params: Params, x: Array) -> Tuple[Array, Array]:
    """(mu, log Lambda) [B, d] of images in data units (grey levels in)."""
    return self.module.apply(params, grey_levels(x, self.num_levels),
                             method="encode")

  def decode(self, params: Params, z: Array) -> Array:
    """Decoder means in data units, [..., *event_shape]."""
    logits = self.module.apply(params, z, method="decode")
    return to_data_units(jax.nn.sigmoid(logits), self.num_levels)

  # ----------------------------------------------------------------- priors
  def prior(self, params: Params) -> Prior:
    """The prior p(z) of evaluation and sampling, built from `params`."""
    if self.module.prior == "vampprior":
      return priors.VampPrior(
          self.module.apply(params, method="pseudo_inputs"),
          functools.partial(self.module.apply, params, method="encode"))
    return priors.StandardNormalPrior(self.module.latent_dim)

  def training_log_prior(self, params: Params, z: Array,
                         batch: Mapping[str, Array], key: Array) -> Array:
    """log p(z) [..., B] used in the training ELBO."""
    del batch, key  # the Gaussian and VampPrior do not depend on the batch
    return self.prior(params).log_prob(z)

  def evaluation_log_prior(self, params: Params) -> Callable[[Array], Array]:
    """Returns z [..., B, d] -> log p(z) [..., B] for evaluation."""
    return self.prior(params).log_prob

  # --------------------------------------------------------------- bounds
  def elbo_terms(self, params: Params, x_binary: Array, key: Array,
                 log_prior: Callable[[Array], Array]) -> Tuple[Array, Array]:
    """Single-sample reconstruction and KL terms of the ELBO (eq. 9).

    Args:
      params: model parameters.
      x_binary: [B, *event] binary images.
      key: PRNG key for z ~ q(z | x).
      log_prior: z [B, d] -> log p(z) [B].

    Returns:
      (log p(x | z), log q(z | x) - log p(z)), each [B] in nats.
    """
    mean, log_variance = self.module.apply(params, x_binary, method="encode")
    return elbo.elbo_terms(x_binary, mean, log_variance,
                           self._decoder_logits(params), log_prior, key)

  def importance_estimate(self, params: Params, x_binary: Array, key: Array,
                          log_prior: Callable[[Array], Array],
                          num_samples: Optional[int] = None
                          ) -> iwae.ImportanceEstimate:
    """IWAE estimate of log p(x) with q(z | x) as the proposal.

    The log-weights are log p(x | z_s) + log p(z_s) - log q(z_s | x),
    z_s ~ q(z | x), drawn `iwae_chunk` at a time.

    Args:
      params: model parameters.
      x_binary: [B, *event] binary images.
      key: PRNG key for the samples.
      log_prior: z [n, B, d] -> log p(z) [n, B].
      num_samples: S (default `iwae_samples`).

    Returns:
      `nbflows.objectives.iwae.ImportanceEstimate`, each field [B] in nats.
    """
    mean, log_variance = self.module.apply(params, x_binary, method="encode")
    log_weights = elbo.importance_log_weights(
        x_binary, mean, log_variance, self._decoder_logits(params), log_prior)
    return iwae.importance_log_likelihood(
        log_weights, key, num_samples or self.iwae_samples, self.iwae_chunk)

  def _decoder_logits(self, params: Params) -> elbo.Decode:
    return functools.partial(self.module.apply, params, method="decode")

  # ------------------------------------------------------------ objectives
  def loss(self, params: Params, batch: Mapping[str, Array],
           key: Array) -> Tuple[Array, Dict[str, Array]]:
    """`loss_at_step` after the KL warm-up: -(log p(x | z) - beta KL)."""
    return self.loss_at_step(params, batch, key, self.kl_warmup_steps)

  def loss_at_step(self, params: Params, batch: Mapping[str, Array],
                   key: Array, step: Array
                   ) -> Tuple[Array, Dict[str, Array]]:
    """-(log p(x | z) - w(step) beta KL), nats per example, freshly binarised.

    w is the linear KL warm-up of paper 3, Sec. 5 (`elbo.kl_weight`). After
    the warm-up and with beta = 1 the loss is the negative single-sample
    ELBO; "elbo" in the metrics is always the unweighted bound, and
    "kl_weight" is w(step) beta.
    """
    binarise_key, sample_key, prior_key = jax.random.split(key, 3)
    x_binary = binarise(binarise_key, batch["x"], self.num_levels)
    reconstruction, kl = self.elbo_terms(
        params, x_binary, sample_key,
        lambda z: self.training_log_prior(params, z, batch, prior_key))
    weight = self.beta * elbo.kl_weight(step, self.kl_warmup_steps)
    loss, metrics = elbo.training_loss(reconstruction, kl, weight)
    return loss, dict(metrics, kl_weight=weight)

  def eval_metrics(self, params: Params, batch: Mapping[str, Array],
                   key: Array) -> Dict[str, Array]:
    """Per-example ELBO split and IWAE bound, each [B] in nats.

    Returns:
      {"elbo", "reconstruction_nll", "kl", "loss" (= -elbo), "iwae" (the
      S-sample IWAE lower bound on log p(x)), "iwae_stderr" (its
      importance-sampling standard error)}, computed on the evaluation
      binarisation (`binarise_for_evaluation`).
    """
    x_binary = binarise_for_evaluation(batch["x"], batch["index"],
                                       self.num_levels)
    log_prior = self.evaluation_log_prior(params)
    elbo_key, iwae_key = jax.random.split(key)
    reconstruction, kl = self.elbo_terms(params, x_binary, elbo_key, log_prior)
    estimate = self.importance_estimate(params, x_binary, iwae_key,
                                        log_prior)
    return {"elbo": reconstruction - kl, "loss": kl - reconstruction,
            "reconstruction_nll": -reconstruction, "kl": kl,
            "iwae": estimate.log_likelihood,
            "iwae_stderr": estimate.standard_error}

  def iwae_log_likelihood(self, params: Params, x: Array, key: Array,
                          num_samples: Optional[int] = None,
                          index: Optional[Array] = None) -> Array:
    """The IWAE lower bound on log p(x) [B] of images in data units.

    Args:
      params: model parameters.
      x: [B, *event] images in data units.
      key: PRNG key of the importance samples.
      num_samples: S (default `iwae_samples`).
      index: positions of `x` in its split, which fix the binarisation
        (default 0..B-1).
    """
    self.check_x(x)
    index = jnp.arange(x.shape[0]) if index is None else index
    x_binary = binarise_for_evaluation(x, index, self.num_levels)
    return self.importance_estimate(params, x_binary, key,
                                    self.evaluation_log_prior(params),
                                    num_samples).log_likelihood

  # --------------------------------------------------------------- sampling
  def sample(self, params: Params, key: Array, n_or_cond: Any,
             temperature: Union[float, Array] = 1.0) -> Array:
    """Decoder means, in data units, of z drawn from the prior.

    Args:
      params: model parameters.
      key: a PRNG key.
      n_or_cond: the number of samples.
      temperature: T >= 0, scales the prior's standard deviation (Gaussian
        prior; for a mixture prior, each component's): T = 0 decodes the
        prior's mean (a mixture's component means); a float or an array,
        also a traced one (`base.checked_temperature`).

    Returns:
      [n, *event_shape] images in data units.
    """
    return self._sample_jit(params, key,
                            base.checked_sample_count(n_or_cond, self.name),
                            base.checked_temperature(temperature))

  @functools.cached_property
  def _sample_jit(self):
    return jax.jit(lambda params, key, num, temperature: self.decode(
        params, self.sample_latents(params, key, num, temperature)),
                   static_argnums=(2,))

  def sample_latents(self, params: Params, key: Array, num: int,
                     temperature: float) -> Array:
    """z [num, d] from the prior."""
    return self.prior(params).sample(key, num, temperature)


def active_units(means: Array, threshold: float = 0.01) -> int:
  """Latent dimensions whose posterior mean varies over the data (App. A).

  Args:
    means: [N, d] posterior means mu(x) over a dataset.
    threshold: variance above which a dimension counts as active (0.01,
      after Bauer & Mnih, 2018).

  Returns:
    The number of active dimensions.
  """
  return int(jnp.sum(jnp.var(means, axis=0) > threshold))


def make_network(config: Any, dataset_event_shape: Sequence[int],
                   prior: str) -> VAE:
  """Builds the `VAE` module from `config.vae` (see configs/vae_digits.py).

  Raises:
    ValueError: for a `config.vae.architecture` the data cannot take
      (`conv_autoencoder.check_architecture`).
  """
  architecture, conv_features = network_architecture(
      config.vae, dataset_event_shape, "config.vae")
  return VAE(event_shape=tuple(dataset_event_shape),
             latent_dim=config.vae.latent_dim,
             hidden=tuple(config.vae.hidden),
             activation=config.vae.activation,
             prior=prior,
             num_pseudo_inputs=config.vae.num_pseudo_inputs,
             architecture=architecture, conv_features=conv_features)


def network_architecture(block: Any, event_shape: Sequence[int],
                         field: str) -> Tuple[str, Tuple[int, ...]]:
  """(architecture, conv_features) of a config block, checked for the data.

  Runs saved before the fields existed are "mlp" (their networks).
  """
  architecture = block.get("architecture", "mlp")
  conv_features = tuple(block.get("conv_features", (64, 128)))
  conv_autoencoder.check_architecture(architecture, event_shape,
                                      conv_features, f"{field}.architecture")
  return architecture, conv_features


def kl_warmup_steps(config: Any) -> int:
  """`config.vae.kl_warmup_steps`, checked to end before the run does.

  Raises:
    ValueError: if the warm-up is not shorter than `config.num_train_steps`
      (the run would never train the ELBO it selects checkpoints on).
  """
  steps = config.vae.get("kl_warmup_steps", 0)  # absent from older runs
  if isinstance(steps, int) and steps >= config.num_train_steps:
    raise ValueError(
        f"config.vae.kl_warmup_steps={steps} is not smaller than "
        f"config.num_train_steps={config.num_train_steps}; the KL warm-up "
        "(paper 3, Sec. 5) must end before the run does")
  return steps


def _build(config: Any, prior: str) -> VAEModel:
  info = sources.dataset_info(config.dataset)
  return VAEModel(make_network(config, info.event_shape, prior),
                  num_levels=info.num_levels,
                  iwae_samples=config.vae.iwae_samples,
                  iwae_chunk=config.vae.iwae_chunk, name=config.model,
                  beta=config.vae.get("beta", 1.0),
                  kl_warmup_steps=kl_warmup_steps(config))


def build_vae(config: Any) -> VAEModel:
  """The VAE with a standard Gaussian prior (paper 3's baseline)."""
  return _build(config, "gaussian")


def build_vampprior(config: Any) -> VAEModel:
  """The VAE with a VampPrior of `config.vae.num_pseudo_inputs` components."""
  return _build(config, "vampprior")
