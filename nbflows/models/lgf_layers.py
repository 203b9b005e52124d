"""The layer stack of a localised generative flow (paper 2, eq. 5, Alg. 1).

Generative process with L layers (eq. 3 and 5):

  z_0 ~ N(0, I),   u_l ~ p(u_l | z_{l-1}),   z_l = G_l^-1(z_{l-1}; u_l),   x = z_L

with G_l(z; u) = exp(s_l(u)) * g_l(z) + t_l(u) (eq. 6, `LocalisedAffine`)
and p(u | z), q(u | z) mean-field Gaussians from networks (App. D.1): every
`LGFStep` holds its own G_l, p(u_l | z_{l-1}) and q(u_l | z_l). The
posterior factorises as prod_l q(u_l | z_l) (eq. 7), so the ELBO is computed
recursively from the data end (Alg. 1):

  L_l(z_l) = E_q(u_l | z_l)[ L_{l-1}(G_l(z_l; u_l)) + log p(u_l | z_{l-1})
                             + log|det DG_l(z_l; u_l)| - log q(u_l | z_l) ],
  L_0(z_0) = log N(z_0; 0, I),

one reparametrised sample u_l = mu_q + sigma_q * eps per layer; the sum of
the Delta_l is log p(x, u_1:L) - log q(u_1:L | x), one importance weight.

Layers that carry no mixing variable (preprocessing, squeezes) sit in the
same chain and contribute their log-dets. In the data -> latent order the
forward pass uses here, "step l" of the paper is visited from L down to 1.
`LGFChain` strings steps together (LGF-MAF), `LGFMultiScale` lays them out
like RealNVP's multi-scale flow (LGF-RealNVP), and `LGFFlow` adds the
preprocessing and the N(0, I) prior of z_0. The model (`LGFModel`), the
importance-sampled likelihood and the builders are in `nbflows.models.lgf`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.bijectors import base as bijector_base
from nbflows.bijectors import lgf as lgf_bijectors
from nbflows.bijectors import preprocessing
from nbflows.bijectors.squeeze import squeeze, unsqueeze
from nbflows.distributions import gaussian
from nbflows.objectives import iwae

Array = jax.Array

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


def tile_samples(x: Array, num: int) -> Array:
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
  """RealNVP's multi-scale structure (`multiscale.MultiScale`) for LGF stages.

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
    stages = preprocessing.image_stages(self.num_levels, self.logit_alpha)
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
    weights = self.elbo(tile_samples(x, self.num_importance_samples), key)
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
