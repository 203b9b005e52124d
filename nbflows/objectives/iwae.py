"""Importance-sampled log-likelihood for latent-variable models (IWAE bound).

For a model p(x, z) and a proposal q(z | x), the log weights
l_s = log p(x, z_s) - log q(z_s | x), z_s ~ q, give

  log p_hat(x) = log (1/S) sum_s exp(l_s)                   (IWAE, S samples)

a lower bound in expectation that tightens to log p(x) as S grows (Burda et
al., 2016; paper 2's test-time likelihood, paper 3's evaluation with all
training exemplars); S = 1 is the ELBO, whose unbiased estimate is
mean_s l_s. The same log-mean-exp also gives the sampled marginal of paper 1,
eq. 4 (App. B.3), with q uniform over training neighbourhoods.

Standard error, by the delta method: with w_s = exp(l_s), p_hat = mean(w) and
Var(p_hat) = Var(w) / S, so

  SE(log p_hat) ~= sqrt(Var(w) / S) / mean(w)
               = sqrt( (S / ESS - 1) / (S - 1) ),   ESS = (sum w)^2 / sum w^2,

using the unbiased sample variance of the normalised weights w_s / mean(w)
(ESS is Kish's effective sample size). It is 0 when all weights are equal
(q the exact posterior) and undefined (NaN) for S = 1. It measures the
estimator's noise, not its bias, and it is itself unreliable when the weights
are heavy-tailed (small ESS / S).

Memory is bounded by drawing the S samples in chunks of `chunk_size` under
`jax.lax.scan`, merging running sums in log space; chunk c uses the key
`jax.random.fold_in(key, c)`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> x = jnp.array([0.5, -1.0])
  >>> def log_weights(key, num):     # z ~ N(0, 1) = q; x | z ~ N(z, 1)
  ...   z = jax.random.normal(key, (num, 1))
  ...   return jax.scipy.stats.norm.logpdf(x, loc=z)            # [num, B]
  >>> estimate = importance_log_likelihood(log_weights, jax.random.key(0),
  ...                                      num_samples=4096, chunk_size=1024)
  >>> exact = jax.scipy.stats.norm.logpdf(x, scale=jnp.sqrt(2.0))
  >>> bool(jnp.all(jnp.abs(estimate.log_likelihood - exact) < 0.05))
  True
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
LogWeightsFn = Callable[[Array, int], Array]


class ImportanceEstimate(NamedTuple):
  """Per-example results of importance sampling, each of shape [B].

  Attributes:
    log_likelihood: log (1/S) sum_s w_s, the IWAE estimate of log p(x).
    standard_error: delta-method standard error of `log_likelihood`.
    elbo: mean_s log w_s, an unbiased estimate of the ELBO (S = 1 bound).
    effective_sample_size: (sum w)^2 / sum w^2, in [1, S].
  """
  log_likelihood: Array
  standard_error: Array
  elbo: Array
  effective_sample_size: Array


class _LogSums(NamedTuple):
  """Running sums over samples: max m, sum exp(l - m), sum exp(2(l - m))."""
  max: Array
  sum_w: Array
  sum_w2: Array
  sum_log_w: Array


def _chunk_sums(log_weights: Array, valid: Optional[Array] = None) -> _LogSums:
  """Running sums over axis 0 of [S, B] log weights.

  Rows where `valid` [S] is False (padding) are left out.
  """
  if valid is None:
    valid = jnp.ones(log_weights.shape[:1], bool)
  log_w = jnp.where(valid[:, None], log_weights, -jnp.inf)
  m = jnp.max(log_w, axis=0)
  m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
  scaled = jnp.exp(log_w - m_safe)
  return _LogSums(m, scaled.sum(0), (scaled ** 2).sum(0),
                  jnp.where(valid[:, None], log_weights, 0.0).sum(0))


def _merge(a: _LogSums, b: _LogSums) -> _LogSums:
  m = jnp.maximum(a.max, b.max)
  m_safe = jnp.where(jnp.isfinite(m), m, 0.0)

  def rescale(sums: _LogSums, power: int) -> Array:
    old = jnp.where(jnp.isfinite(sums.max), sums.max, 0.0)
    return jnp.exp(power * (old - m_safe))

  return _LogSums(
      m, a.sum_w * rescale(a, 1) + b.sum_w * rescale(b, 1),
      a.sum_w2 * rescale(a, 2) + b.sum_w2 * rescale(b, 2),
      a.sum_log_w + b.sum_log_w)


def _estimate(sums: _LogSums, num_samples: int) -> ImportanceEstimate:
  m_safe = jnp.where(jnp.isfinite(sums.max), sums.max, 0.0)
  log_likelihood = jnp.log(sums.sum_w) + m_safe - jnp.log(num_samples)
  ess = sums.sum_w ** 2 / sums.sum_w2
  if num_samples > 1:
    variance = jnp.maximum(num_samples / ess - 1.0, 0.0) / (num_samples - 1)
    standard_error = jnp.sqrt(variance)
  else:
    standard_error = jnp.full_like(log_likelihood, jnp.nan)
  return ImportanceEstimate(log_likelihood, standard_error,
                            sums.sum_log_w / num_samples, ess)


def importance_statistics(log_weights: Array) -> ImportanceEstimate:
  """The estimate from log weights already in memory.

  Args:
    log_weights: [S, B] log p(x, z_s) - log q(z_s | x) (-inf allowed).

  Returns:
    `ImportanceEstimate` over the S samples, each field [B].

  Example:
    >>> import jax.numpy as jnp
    >>> est = importance_statistics(jnp.log(jnp.array([[1.0], [3.0]])))
    >>> float(est.log_likelihood[0]) == float(jnp.log(2.0))
    True
  """
  if log_weights.ndim != 2:
    raise ValueError(f"log_weights has shape {tuple(log_weights.shape)}; "
                     "expected [num_samples, batch]")
  return _estimate(_chunk_sums(log_weights), log_weights.shape[0])


def importance_log_likelihood(log_weights_fn: LogWeightsFn, key: Array,
                              num_samples: int,
                              chunk_size: Optional[int] = None
                              ) -> ImportanceEstimate:
  """IWAE estimate of log p(x) with samples drawn in chunks.

  Args:
    log_weights_fn: `(key, n) -> [n, B]` log weights
      log p(x, z_s) - log q(z_s | x) for n fresh samples z_s ~ q(z | x) of
      every example of the batch (n is a Python int).
    key: PRNG key; chunk c uses `jax.random.fold_in(key, c)`.
    num_samples: S >= 1.
    chunk_size: samples per call of `log_weights_fn` (default: all S at
      once). The last chunk is padded and its padding masked out, so S need
      not be a multiple of it.

  Returns:
    `ImportanceEstimate`, each field [B].

  Raises:
    ValueError: for num_samples < 1, chunk_size < 1, or log weights that are
      not [chunk_size, B].
  """
  if num_samples < 1:
    raise ValueError(f"num_samples={num_samples}; expected >= 1")
  chunk_size = num_samples if chunk_size is None else min(chunk_size,
                                                          num_samples)
  if chunk_size < 1:
    raise ValueError(f"chunk_size={chunk_size}; expected >= 1")
  num_chunks = -(-num_samples // chunk_size)

  def chunk(c: Array) -> _LogSums:
    log_weights = log_weights_fn(jax.random.fold_in(key, c), chunk_size)
    if log_weights.ndim != 2 or log_weights.shape[0] != chunk_size:
      raise ValueError(f"log_weights_fn returned shape "
                       f"{tuple(log_weights.shape)}; expected "
                       f"[{chunk_size}, batch]")
    valid = c * chunk_size + jnp.arange(chunk_size) < num_samples  # [n]
    return _chunk_sums(log_weights, valid)

  def body(sums: _LogSums, c: Array):
    return _merge(sums, chunk(c)), None

  first = chunk(jnp.asarray(0))
  sums, _ = jax.lax.scan(body, first, jnp.arange(1, num_chunks))
  return _estimate(sums, num_samples)
