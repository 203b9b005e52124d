"""Localised generative flows (LGF, paper 2): LGF-MAF and LGF-RealNVP.

Generative process with L layers (eq. 3 and 5):

  z_0 ~ N(0, I),   u_l ~ p(u_l | z_{l-1}),   z_l = G_l^-1(z_{l-1}; u_l),   x = z_L

with G_l(z; u) = exp(s_l(u)) * g_l(z) + t_l(u) (eq. 6, `LocalisedAffine`)
and p(u | z), q(u | z) mean-field Gaussians from networks (App. D.1). The
posterior factorises as prod_l q(u_l | z_l) (eq. 7), so the ELBO is computed
recursively from the data end (Alg. 1):

  L_l(z_l) = E_q(u_l | z_l)[ L_{l-1}(G_l(z_l; u_l)) + log p(u_l | z_{l-1})
                             + log|det DG_l(z_l; u_l)| - log q(u_l | z_l) ],
  L_0(z_0) = log N(z_0; 0, I),

one reparametrised sample u_l = mu_q + sigma_q * eps per layer. The test
log-likelihood is the importance-sampled estimate (Rezende et al. 2014,
App. E) log (1/S) sum_s exp(w_s), w_s the single-sample ELBO terms above;
it is below log p(x) in expectation and rises to it as S grows.

Layers that carry no mixing variable (preprocessing, squeezes) sit in the
same chain and contribute their log-dets. In the data -> latent order the
forward pass uses here, "step l" of the paper is visited from L down to 1.

Models: "lgf_maf" (vectors: a MAF with a u_l after each autoregressive
layer, Sec. 5.1) and "lgf_rnvp" (images: RealNVP's multi-scale
architecture with a u_l after each affine coupling, u_l one channel of z_l,
Sec. 5.2).
"""
from __future__ import annotations

import functools
import math
from typing import Dict, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nbflows.bijectors import base as bijector_base
from nbflows.bijectors import coupling
from nbflows.bijectors import couplers
from nbflows.bijectors import lgf as lgf_bijectors
from nbflows.bijectors import made
from nbflows.bijectors import preprocessing
from nbflows.bijectors.squeeze import squeeze, unsqueeze
from nbflows.data import sources
from nbflows.distributions import gaussian
from nbflows.models import base
from nbflows.models import realnvp
from nbflows.objectives import iwae

Array = jax.Array
Params = base.Params


# ------------------------------------------------------------------- steps
class LGFStep(nn.Module):
  """One layer of eq. 5: G(.; u) with p(u | z_{l-1}) and q(u | z_l).

  Attributes:
    layer: the `LocalisedAffine` G(z; u), its `u_shape` fixing u's shape.
    pq_hidden: hidden sizes of the p and q networks (MLPs for vectors,
      3x3 convolutions for images); both start as N(0, I).
  """
  layer: lgf_bijectors.LocalisedAffine
  pq_hidden: Sequence[int] = (50, 50)

  def setup(self):
    self.posterior_net = lgf_bijectors.ShiftLogScaleNet(tuple(self.pq_hidden))
    self.prior_net = lgf_bijectors.ShiftLogScaleNet(tuple(self.pq_hidden))

  def _u_channels(self) -> int:
    return tuple(self.layer.u_shape)[-1]

  def elbo(self, z: Array, key: Array) -> Tuple[Array, Array]:
    """One step of Alg. 1: (z_{l-1}, Delta_l [B]) with u_l ~ q(u_l | z_l)."""
    q_mean, q_log_std = self.posterior_net(z, self._u_channels())
    eps = jax.random.normal(key, q_mean.shape, q_mean.dtype)
    u = q_mean + jnp.exp(q_log_std) * eps
    z_prev, logdet = self.layer.forward(z, u)
    p_mean, p_log_std = self.prior_net(z_prev, self._u_channels())
    delta = (gaussian.diagonal_normal_log_prob(u, p_mean, p_log_std) + logdet -
             gaussian.diagonal_normal_log_prob(u, q_mean, q_log_std))
    return z_prev, delta

  def generate(self, z_prev: Array, key: Array) -> Array:
    """z_l = G^-1(z_{l-1}; u_l) with u_l ~ p(u_l | z_{l-1}) (eq. 5)."""
    p_mean, p_log_std = self.prior_net(z_prev, self._u_channels())
    u = gaussian.diagonal_normal_sample(key, p_mean, p_log_std)
    z, _ = self.layer.inverse(z_prev, u)
    return z

  def forward(self, z: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    """G(z; u) with u the mean of q(u | z): (z_{l-1}, log|det| [B])."""
    del cond
    q_mean, _ = self.posterior_net(z, self._u_channels())
    return self.layer.forward(z, q_mean)

  def inverse(self, z_prev: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    """G^-1(z_{l-1}; u) with u the mean of p(u | z_{l-1})."""
    del cond
    p_mean, _ = self.prior_net(z_prev, self._u_channels())
    return self.layer.inverse(z_prev, p_mean)


def _elbo(stage: nn.Module, h: Array, key: Array) -> Tuple[Array, Array]:
  """Alg. 1 through an LGF stage, or the log-det of a plain bijector."""
  if isinstance(stage, (LGFStep, LGFChain, LGFMultiScale)):
    return stage.elbo(h, key)
  return stage.forward(h)


def _generate(stage: nn.Module, h: Array, key: Array) -> Array:
  if isinstance(stage, (LGFStep, LGFChain, LGFMultiScale)):
    return stage.generate(h, key)
  return stage.inverse(h)[0]


def _zeros(x: Array) -> Array:
  return jnp.zeros(x.shape[:1], x.dtype)


def _tile(x: Array, num: int) -> Array:
  """[B, ...] -> [num * B, ...], `num` copies of the batch one after another."""
  return jnp.broadcast_to(x, (num, *x.shape)).reshape(num * x.shape[0],
                                                       *x.shape[1:])


class LGFChain(nn.Module):
  """Stages in data -> latent order: `LGFStep`s and plain bijectors.

  Attributes:
    stages: applied first to last by `elbo` and `forward`.
  """
  stages: Sequence[nn.Module] = ()

  def elbo(self, h: Array, key: Array) -> Tuple[Array, Array]:
    """(z, sum of the stages' Delta_l or log-dets [B])."""
    total = _zeros(h)
    for stage, stage_key in zip(self.stages,
                                jax.random.split(key, len(self.stages))):
      h, delta = _elbo(stage, h, stage_key)
      total = total + delta
    return h, total

  def generate(self, h: Array, key: Array) -> Array:
    for stage, stage_key in zip(reversed(self.stages),
                                jax.random.split(key, len(self.stages))):
      h = _generate(stage, h, stage_key)
    return h

  def forward(self, h: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    del cond
    total = _zeros(h)
    for stage in self.stages:
      h, logdet = stage.forward(h)
      total = total + logdet
    return h, total

  def inverse(self, h: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    del cond
    total = _zeros(h)
    for stage in reversed(self.stages):
      h, logdet = stage.inverse(h)
      total = total + logdet
    return h, total


class LGFMultiScale(nn.Module):
  """RealNVP's multi-scale structure (`flow.MultiScale`) for LGF stages.

    h = after(squeeze(before(x))); z_out, h = split(h); h = inner(h);
    z = unsqueeze(concat(z_out, h))
  so z has the shape of x and the factored-out half meets the N(0, I)
  prior of z_0 directly.

  Attributes:
    before, after: `LGFChain`s (or None) before and after the squeeze.
    squeeze: whether this scale squeezes [H, W, C] -> [H/2, W/2, 4C].
    inner: the next scale, or None for the last.
  """
  before: Optional[nn.Module] = None
  after: Optional[nn.Module] = None
  squeeze: bool = False
  inner: Optional["LGFMultiScale"] = None

  def _run(self, h: Array, step) -> Tuple[Array, Array]:
    """Threads h through before, squeeze, after, split/inner, unsqueeze.

    `step(block, h) -> (h, delta [B])` runs one block; the deltas add up.
    """
    total = _zeros(h)
    if self.before is not None:
      h, total = step(self.before, h)
    if self.squeeze:
      h = squeeze(h)
    if self.after is not None:
      h, delta = step(self.after, h)
      total = total + delta
    if self.inner is not None:
      z_out, h = jnp.split(h, 2, axis=-1)
      h, delta = step(self.inner, h)
      h, total = jnp.concatenate([z_out, h], axis=-1), total + delta
    return (unsqueeze(h) if self.squeeze else h), total

  def _run_back(self, z: Array, step) -> Array:
    h = squeeze(z) if self.squeeze else z
    if self.inner is not None:
      z_out, h = jnp.split(h, 2, axis=-1)
      h = jnp.concatenate([z_out, step(self.inner, h)], axis=-1)
    if self.after is not None:
      h = step(self.after, h)
    h = unsqueeze(h) if self.squeeze else h
    return h if self.before is None else step(self.before, h)

  def elbo(self, h: Array, key: Array) -> Tuple[Array, Array]:
    keys = iter(jax.random.split(key, 3))
    return self._run(h, lambda block, h: _elbo(block, h, next(keys)))

  def generate(self, z: Array, key: Array) -> Array:
    keys = iter(jax.random.split(key, 3))
    return self._run_back(z, lambda block, h: _generate(block, h, next(keys)))

  def forward(self, h: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    del cond
    return self._run(h, lambda block, h: block.forward(h))

  def inverse(self, z: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    del cond
    logdets = []

    def step(block, h):
      h, logdet = block.inverse(h)
      logdets.append(logdet)
      return h

    x = self._run_back(z, step)
    return x, sum(logdets, _zeros(z))


# ------------------------------------------------------------------ module
class LGFFlow(nn.Module):
  """An LGF in data units: preprocessing, LGF stages, N(0, I) prior on z_0.

  Attributes:
    transform: an `LGFChain` or `LGFMultiScale`; z_0 has the shape of x.
    event_shape: shape of one example.
    num_levels: discrete levels of the data (then Rescale and Logit come
      first, their log-dets counted, as in `flow.FlowModel`), or None.
    logit_alpha: RealNVP's alpha of the logit transform.
    num_importance_samples: S of `log_prob`'s importance-sampled estimate.
  """
  transform: nn.Module = None
  event_shape: Tuple[int, ...] = ()
  num_levels: Optional[int] = None
  logit_alpha: float = 0.05
  num_importance_samples: int = 10

  def setup(self):
    if self.num_levels is None:
      stages = ()
    else:
      stages = (preprocessing.Rescale(num_levels=self.num_levels),
                preprocessing.Logit(alpha=self.logit_alpha))
    self.preprocessing = LGFChain(stages)

  def __call__(self, x: Array, cond: Optional[Array] = None) -> Array:
    return self.log_prob(x, cond)

  def elbo(self, x: Array, key: Array) -> Array:
    """A single-sample estimate of the ELBO L_L(x) of Alg. 1, [B] nats.

    Its expectation is the ELBO; it is also the log importance weight
    log p(x, u_1:L) - log q(u_1:L | x) of one sample u_1:L ~ q.
    """
    bijector_base.check_event(x, self.event_shape)
    h, logdet = self.preprocessing.forward(x)
    z, delta = self.transform.elbo(h, key)
    return gaussian.standard_normal_log_prob(z) + logdet + delta

  def log_prob(self, x: Array, cond: Optional[Array] = None,
               key: Optional[Array] = None) -> Array:
    """Importance-sampled log p(x) with `num_importance_samples` samples, [B].

    log (1/S) sum_s exp(w_s), w_s = `elbo(x, key_s)`; a fixed key
    (`jax.random.key(0)`) when none is given, so repeated calls agree.
    """
    del cond
    key = jax.random.key(0) if key is None else key
    weights = self.elbo(_tile(x, self.num_importance_samples), key)
    return iwae.importance_statistics(
        weights.reshape(self.num_importance_samples, x.shape[0])).log_likelihood

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    """Data -> z_0 with every u_l at the mean of q(u_l | z_l): (z, log|det|)."""
    del cond
    bijector_base.check_event(x, self.event_shape)
    h, logdet = self.preprocessing.forward(x)
    z, transform_logdet = self.transform.forward(h)
    return z, logdet + transform_logdet

  def inverse(self, z: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    """z_0 -> data with every u_l at the mean of p(u_l | z_{l-1})."""
    del cond
    bijector_base.check_event(z, self.event_shape, "z")
    h, logdet = self.transform.inverse(z)
    x, preprocessing_logdet = self.preprocessing.inverse(h)
    return x, logdet + preprocessing_logdet

  def sample(self, key: Array, cond: Optional[Array], num_samples: int,
             temperature: float = 1.0) -> Array:
    """Ancestral sampling of eq. 5: z_0 ~ N(0, T^2 I), u_l ~ p(u_l | z_{l-1})."""
    del cond
    z_key, u_key = jax.random.split(key)
    z = gaussian.standard_normal_sample(
        z_key, (num_samples, *self.event_shape), temperature)
    return self.preprocessing.inverse(self.transform.generate(z, u_key))[0]


# ------------------------------------------------------------------ facade
class LGFModel(base.Model):
  """An LGF behind the `Model` facade: ELBO training, importance-sampled test.

  `loss` is the negative single-sample ELBO (Alg. 1), in bits per dimension
  for discrete data (images) and nats per example otherwise; `eval_metrics`
  adds the importance-sampled log-likelihood with `eval_samples` samples
  (paper 2: 5-10 at validation) and `test_metrics` with `test_samples`
  (paper 2: 1000).

  Args:
    module: an `LGFFlow`.
    name: the config's model name.
    num_classes: classes of the dataset (unused by the model).
    eval_samples: S at validation.
    test_samples: S at test.
    sample_chunk: importance samples evaluated at once (bounds memory).
  """

  def __init__(self, module: LGFFlow, name: str = "lgf",
               num_classes: Optional[int] = None, eval_samples: int = 10,
               test_samples: int = 1000, sample_chunk: int = 100):
    super().__init__(module, module.event_shape, "none", name,
                     num_classes=num_classes, num_levels=module.num_levels)
    for arg, value in (("eval_samples", eval_samples),
                       ("test_samples", test_samples),
                       ("sample_chunk", sample_chunk)):
      if value < 1:
        raise ValueError(f"{arg}={value}; expected >= 1")
    self.eval_samples = eval_samples
    self.test_samples = test_samples
    self.sample_chunk = sample_chunk

  def elbo(self, params: Params, x: Array, key: Array) -> Array:
    """Single-sample ELBO estimates [B] in nats (traceable, no validation)."""
    return self.module.apply(params, x, key, method="elbo")

  def importance_estimate(self, params: Params, x: Array, key: Array,
                          num_samples: int) -> iwae.ImportanceEstimate:
    """Importance-sampled log p(x) with S = `num_samples` (traceable).

    log (1/S) sum_s exp(w_s), w_s single-sample ELBO terms (Rezende et al.
    2014, App. E), drawn `sample_chunk` at a time.

    Returns:
      `iwae.ImportanceEstimate`: per-example log-likelihood [B] nats, its
      Monte Carlo standard error, the mean-weight ELBO and the effective
      sample size.
    """
    def log_weights(key: Array, num: int) -> Array:
      return self.elbo(params, _tile(x, num), key).reshape(num, x.shape[0])

    return iwae.importance_log_likelihood(log_weights, key, num_samples,
                                          self.sample_chunk)

  def importance_log_likelihood(self, params: Params, x: Array, key: Array,
                                num_samples: Optional[int] = None) -> Array:
    """Validated, jitted `importance_estimate(...).log_likelihood`, [B] nats.

    Args:
      params: model parameters.
      x: [B, *event] data units.
      key: PRNG key of the importance samples.
      num_samples: S (default `test_samples`).
    """
    self.check_x(x)
    return self._importance(params, x, key, num_samples or self.test_samples)

  def test_log_likelihood(self, params: Params, x: Array, key: Array,
                          num_samples: Optional[int] = None,
                          batch_size: int = 256) -> Tuple[float, float]:
    """Mean importance-sampled log-likelihood of a split and its standard error.

    Args:
      params: model parameters.
      x: [N, *event] data units (e.g. the whole test split).
      key: PRNG key; the batch starting at example i uses `fold_in(key, i)`.
      num_samples: S per example (default `test_samples`).
      batch_size: examples per call.

    Returns:
      (mean over the N examples of log p_hat(x) in nats, its standard error
      std / sqrt(N) over the examples).
    """
    values = np.concatenate([
        np.asarray(self.importance_log_likelihood(
            params, x[i:i + batch_size], jax.random.fold_in(key, i),
            num_samples), np.float64)
        for i in range(0, len(x), batch_size)])
    return (float(values.mean()),
            float(values.std(ddof=1) / math.sqrt(len(values))))

  @functools.cached_property
  def _importance(self):
    return jax.jit(
        lambda p, x, k, s: self.importance_estimate(p, x, k, s).log_likelihood,
        static_argnums=(3,))

  def _to_bpd(self, log_likelihood: Array) -> Array:
    return -log_likelihood / (self.num_dims * math.log(2.0))

  def loss(self, params: Params, batch: Mapping[str, Array],
           key: Array) -> Tuple[Array, Dict[str, Array]]:
    """Negative single-sample ELBO (Alg. 1), averaged over the batch.

    The loss is in bits per dimension for discrete data (images) and in nats
    per example for continuous data; "bpd" is reported either way (for
    continuous data it is the differential -ELBO / (D ln 2)).
    """
    elbo = jnp.mean(self.elbo(params, batch["x"], key))
    bpd = self._to_bpd(elbo)
    loss = -elbo if self.num_levels is None else bpd
    return loss, {"loss": loss, "elbo": elbo, "bpd": bpd}

  def _metrics(self, params: Params, x: Array, key: Array,
               num_samples: int) -> Dict[str, Array]:
    estimate = self.importance_estimate(params, x, key, num_samples)
    return {"elbo": estimate.elbo,
            "log_likelihood": estimate.log_likelihood,
            "bpd": self._to_bpd(estimate.log_likelihood)}

  def eval_metrics(self, params: Params, batch: Mapping[str, Array],
                   key: Array) -> Dict[str, Array]:
    """Per-example metrics [B] with S = `eval_samples` importance samples.

    Returns:
      {"elbo" (the mean of the S log weights), "log_likelihood" (the
      importance-sampled estimate, nats) and "bpd" (-log_likelihood /
      (D ln 2); differential for continuous data)}.
    """
    return self._metrics(params, batch["x"], key, self.eval_samples)

  def test_metrics(self, params: Params, batch: Mapping[str, Array],
                   key: Array) -> Dict[str, Array]:
    """As `eval_metrics` with S = `test_samples` importance samples."""
    return self._metrics(params, batch["x"], key, self.test_samples)


# ---------------------------------------------------------------- builders
def _step(inner: nn.Module, u_shape: Sequence[int],
          lgf_config: ml_collections.ConfigDict) -> LGFStep:
  layer = lgf_bijectors.LocalisedAffine(
      u_shape=tuple(u_shape), inner=inner, hidden=tuple(lgf_config.st_hidden))
  return LGFStep(layer=layer, pq_hidden=tuple(lgf_config.pq_hidden))


def _facade(transform: nn.Module, info: sources.DatasetInfo,
            config: ml_collections.ConfigDict) -> LGFModel:
  module = LGFFlow(transform=transform, event_shape=info.event_shape,
                   num_levels=info.num_levels,
                   logit_alpha=config.flow.logit_alpha,
                   num_importance_samples=config.lgf.eval_samples)
  return LGFModel(module, name=config.model, num_classes=info.num_classes,
                  eval_samples=config.lgf.eval_samples,
                  test_samples=config.lgf.test_samples,
                  sample_chunk=config.lgf.sample_chunk)


def lgf_maf_transform(num_features: int, num_layers: int,
                      made_hidden: Sequence[int], u_dim: int,
                      lgf_config: ml_collections.ConfigDict) -> LGFChain:
  """`num_layers` MAF layers, each the g of an LGF step (paper 2, Sec. 5.1).

  The autoregressive order alternates between forward and reversed.

  Args:
    num_features: D.
    num_layers: L.
    made_hidden: hidden widths of each MADE.
    u_dim: du; 0 means max(1, round(D / 4)) (paper 2: "roughly a quarter").
    lgf_config: `config.lgf` (st_hidden, pq_hidden).

  Returns:
    An `LGFChain` of `LGFStep`s.
  """
  if num_layers < 1:
    raise ValueError(f"num_layers={num_layers}; expected >= 1")
  u_dim = u_dim or max(1, round(num_features / 4))
  return LGFChain(tuple(
      _step(made.MaskedAutoregressive(hidden=tuple(made_hidden),
                                      order=("forward", "reversed")[i % 2]),
            (u_dim,), lgf_config)
      for i in range(num_layers)))


def lgf_multiscale_transform(event_shape: Sequence[int], num_scales: int,
                             couplings_per_scale: int, hidden_channels: int,
                             num_res_blocks: int,
                             lgf_config: ml_collections.ConfigDict,
                             last_scale_couplings: int = 4) -> LGFMultiScale:
  """RealNVP's multi-scale transform with a u_l after every coupling.

  The layout of `realnvp.multiscale_transform` (checkerboard couplings,
  squeeze, channel couplings, factor out half; 4 checkerboard couplings at
  the last scale, by default); every coupling is the g of an LGF step whose u_l has the
  shape of one channel of z_l (paper 2, Sec. 5.2).

  Args:
    event_shape: (H, W, C).
    num_scales: 1 to `realnvp.max_num_scales(H, W)`.
    couplings_per_scale: checkerboard (and channel) couplings per scale.
    hidden_channels: width of the couplers' conv nets.
    num_res_blocks: residual blocks per coupler.
    lgf_config: `config.lgf` (st_hidden, pq_hidden).
    last_scale_couplings: checkerboard couplings of the last scale (4 in
      Dinh et al. 2016, Sec. 4.1).

  Returns:
    An `LGFMultiScale`.
  """
  h, w, c = tuple(event_shape)
  limit = realnvp.max_num_scales(h, w)
  if not 1 <= num_scales <= limit:
    raise ValueError(f"num_scales={num_scales}; {h}x{w} images allow 1 to "
                     f"{limit}")

  def chain(num: int, mask: str, size: Tuple[int, int]) -> LGFChain:
    return LGFChain(tuple(
        _step(coupling.AffineCoupling(
            mask=mask, parity=i % 2,
            coupler=couplers.ConvCoupler(hidden=hidden_channels,
                                         num_blocks=num_res_blocks)),
              (*size, 1), lgf_config)
        for i in range(num)))

  sizes = [(h >> i, w >> i) for i in range(num_scales)]
  scale = LGFMultiScale(before=chain(last_scale_couplings, "checkerboard",
                                     sizes[-1]))
  for size, small in zip(reversed(sizes[:-1]), reversed(sizes[1:])):
    scale = LGFMultiScale(before=chain(couplings_per_scale, "checkerboard",
                                       size),
                          squeeze=True,
                          after=chain(couplings_per_scale, "channel", small),
                          inner=scale)
  return scale


def build_lgf_maf(config: ml_collections.ConfigDict) -> LGFModel:
  """The "lgf_maf" model: LGF-MAF on vectors (paper 2, Sec. 5.1, App. D.2).

  Uses config.flow.{num_layers, mlp_hidden, logit_alpha} and
  config.lgf.{u_dim, st_hidden, pq_hidden, eval_samples, test_samples,
  sample_chunk}.
  """
  info = sources.dataset_info(config.dataset)
  if len(info.event_shape) != 1:
    raise ValueError(f"model 'lgf_maf' needs vectors [D]; dataset "
                     f"{config.dataset!r} has event shape {info.event_shape} "
                     "(use 'lgf_rnvp' for images)")
  transform = lgf_maf_transform(info.event_shape[0], config.flow.num_layers,
                                config.flow.mlp_hidden, config.lgf.u_dim,
                                config.lgf)
  return _facade(transform, info, config)


def build_lgf_rnvp(config: ml_collections.ConfigDict) -> LGFModel:
  """The "lgf_rnvp" model: LGF-RealNVP on images (paper 2, Sec. 5.2).

  Uses config.flow.{num_scales, couplings_per_scale, hidden_channels,
  num_res_blocks, logit_alpha} and config.lgf.{st_hidden, pq_hidden,
  eval_samples, test_samples, sample_chunk}.
  """
  info = sources.dataset_info(config.dataset)
  if len(info.event_shape) != 3:
    raise ValueError(f"model 'lgf_rnvp' needs images; dataset "
                     f"{config.dataset!r} has event shape {info.event_shape} "
                     "(use 'lgf_maf' for vectors)")
  transform = lgf_multiscale_transform(
      info.event_shape, config.flow.num_scales,
      config.flow.couplings_per_scale, config.flow.hidden_channels,
      config.flow.num_res_blocks, config.lgf)
  return _facade(transform, info, config)
