"""Localised generative flows (LGF, paper 2): the model facade and builders.

`LGFModel` puts an `lgf_layers.LGFFlow` behind `base.BijectiveModel`: training
on the single-sample ELBO of Alg. 1, validation and test on the
importance-sampled log-likelihood (Rezende et al. 2014, App. E)

  log p_hat(x) = log (1/S) sum_s exp(w_s),  w_s = log p(x, u^s) - log q(u^s | x),

below log p(x) in expectation and rising to it as S grows (paper 2: S = 5-10
at validation, 1000 at test). The builders assemble the models of Sec. 5:
"lgf_maf" (vectors: a MAF with a u_l after each autoregressive layer,
Sec. 5.1) and "lgf_rnvp" (images: RealNVP's multi-scale architecture with a
u_l after each affine coupling, u_l one channel of z_l, Sec. 5.2).
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

from nbflows import units
from nbflows.bijectors import coupling
from nbflows.bijectors import couplers
from nbflows.bijectors import lgf as lgf_bijectors
from nbflows.bijectors import made
from nbflows.bijectors import multiscale
from nbflows.data import sources
from nbflows.models import base
from nbflows.models.lgf_layers import (LGFChain, LGFFlow, LGFMultiScale,
                                       LGFStep, tile_samples)
from nbflows.objectives import iwae

Array = jax.Array
Params = base.Params

# ------------------------------------------------------------------ facade
class LGFModel(base.BijectiveModel):
  """An LGF: ELBO training, importance-sampled test.

  `loss` is the negative single-sample ELBO (Alg. 1), in bits per dimension
  for discrete data (images) and nats per example otherwise; `eval_metrics`
  adds the importance-sampled log-likelihood with `eval_samples` samples
  (paper 2: 5-10 at validation) and `test_metrics` with `test_samples`
  (paper 2: 1000) (`protocols.TestMetrics`, `ImportanceLikelihood`).
  `log_prob` (the density's likelihood, used by
  `train.compare` and the density plots) is the `test_samples` estimate with
  the fixed key 0, and `test_log_likelihood` adds its standard error over a
  split.

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

  def default_metrics(self, images: bool) -> Tuple[str, ...]:
    """log_likelihood, with fd and prd on images.

    The names are `train.evaluation.requested_metrics`'.
    """
    return ("log_likelihood", "fd", "prd") if images else ("log_likelihood",)

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
      return self.elbo(params, tile_samples(x, num), key).reshape(
          num, x.shape[0])

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
  def _log_prob(self):
    # S = `test_samples`, drawn `sample_chunk` at a time (bounded memory).
    return jax.jit(lambda p, x, c: self.importance_estimate(
        p, x, jax.random.key(0), self.test_samples).log_likelihood)

  @functools.cached_property
  def _importance(self):
    return jax.jit(
        lambda p, x, k, s: self.importance_estimate(p, x, k, s).log_likelihood,
        static_argnums=(3,))

  def _to_bpd(self, log_likelihood: Array) -> Array:
    return units.bits_per_dim(log_likelihood, self.num_dims)

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
    num_scales: 1 to `max_num_scales(H, W, multiscale.REALNVP_SCALES)`.
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
  limit = multiscale.max_num_scales(h, w, multiscale.REALNVP_SCALES)
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
