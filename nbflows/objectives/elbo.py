"""The ELBO of a Gaussian-encoder, Bernoulli-decoder VAE (paper 3, eq. 9, 13).

With q(z | x) = N(mu(x), diag Lambda(x)) (paper 3, eq. 11), a Bernoulli
decoder p(x | z) and any prior p(z), the single-sample ELBO is

  ELBO(x) = log p(x | z) - [log q(z | x) - log p(z)],   z ~ q(z | x),

the reconstruction term minus a one-sample estimate of the KL term, so that
every prior (Gaussian, VampPrior, exemplar, paper 3, Table 9; a latent flow,
paper 5, eq. 3) is estimated the same way. With beta != 1 the loss weighs the
KL term: -(log p(x | z) - beta (log q(z | x) - log p(z))) (Higgins et al.,
2017). Paper 3 (Sec. 5) also anneals the KL weight linearly from near 0 to
1 at the start of training (`kl_weight`). The IWAE bound (Burda et al., 2016) averages S such weights,
log w_s = log p(x | z_s) + log p(z_s) - log q(z_s | x), in log space
(`nbflows.objectives.iwae`).

Here the model enters as two callables, `decode` (z [..., d] -> logits
[..., B, *event]) and `log_prior` (z [..., B, d] -> [..., B]), and the
encoder's outputs (mean, log variance), so the same arithmetic serves every
member of the family.

Example:
  >>> import jax, jax.numpy as jnp
  >>> x = jnp.ones((2, 3))
  >>> mean, log_var = jnp.zeros((2, 1)), jnp.zeros((2, 1))
  >>> decode = lambda z: jnp.broadcast_to(z, z.shape[:-1] + (3,))
  >>> prior = lambda z: jnp.zeros(z.shape[:-1])
  >>> rec, kl = elbo_terms(x, mean, log_var, decode, prior, jax.random.key(0))
  >>> rec.shape, kl.shape
  ((2,), (2,))
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import jax
import jax.numpy as jnp

from nbflows.distributions import gaussian
from nbflows.objectives import iwae

Array = jax.Array
Decode = Callable[[Array], Array]
LogPrior = Callable[[Array], Array]


def bernoulli_log_prob(x: Array, logits: Array) -> Array:
  """log p(x | z) = sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i).

  Args:
    x: [B, *event] binary images.
    logits: [..., B, *event] decoder logits (leading sample axes broadcast).

  Returns:
    [..., B] log-probabilities in nats, summed over the event.

  Example:
    >>> import jax.numpy as jnp, math
    >>> got = bernoulli_log_prob(jnp.array([[1.0, 0.0]]), jnp.zeros((1, 2)))
    >>> bool(jnp.allclose(got, 2 * math.log(0.5)))
    True
  """
  per_pixel = x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(
      -logits)
  event_axes = tuple(range(-(x.ndim - 1), 0))
  return jnp.sum(per_pixel, axis=event_axes)


def reparameterised_sample(key: Array, mean: Array, log_variance: Array,
                           sample_shape: Sequence[int] = ()) -> Array:
  """z = mu + exp(log Lambda / 2) eps, eps ~ N(0, I): [*sample_shape, B, d]."""
  noise = jax.random.normal(key, (*sample_shape, *mean.shape))
  return mean + jnp.exp(0.5 * log_variance) * noise


def kl_estimate(z: Array, mean: Array, log_variance: Array,
                log_prior_z: Array) -> Array:
  """log q(z | x) - log p(z) at a sample z ~ q: [..., B] (paper 3, eq. 13)."""
  return gaussian.diagonal_gaussian_log_prob(z, mean,
                                             log_variance) - log_prior_z


def elbo_terms(x: Array, mean: Array, log_variance: Array, decode: Decode,
               log_prior: LogPrior, key: Array) -> Tuple[Array, Array]:
  """Single-sample reconstruction and KL terms of the ELBO (paper 3, eq. 9).

  Args:
    x: [B, *event] binary images.
    mean: [B, d] mu(x) of q(z | x).
    log_variance: [B, d] log Lambda(x) of q(z | x).
    decode: z [B, d] -> Bernoulli logits [B, *event].
    log_prior: z [B, d] -> log p(z) [B].
    key: PRNG key of z ~ q(z | x).

  Returns:
    (log p(x | z), log q(z | x) - log p(z)), each [B] in nats.
  """
  z = reparameterised_sample(key, mean, log_variance)
  reconstruction = bernoulli_log_prob(x, decode(z))
  return reconstruction, kl_estimate(z, mean, log_variance, log_prior(z))


def training_loss(reconstruction: Array, kl: Array, beta: float = 1.0
                  ) -> Tuple[Array, Dict[str, Array]]:
  """-(log p(x | z) - beta KL) averaged over the batch, with its metrics.

  Args:
    reconstruction: [B] log p(x | z).
    kl: [B] log q(z | x) - log p(z).
    beta: the KL weight (1: the negative ELBO).

  Returns:
    (loss, {"loss", "elbo" (the beta = 1 bound), "reconstruction_nll",
    "kl"}), each a scalar batch mean in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> loss, m = training_loss(jnp.array([-3.0]), jnp.array([1.0]), beta=2.0)
    >>> float(loss), float(m["elbo"])
    (5.0, -4.0)
  """
  elbo = jnp.mean(reconstruction - kl)
  loss = -jnp.mean(reconstruction - beta * kl)
  return loss, {"loss": loss, "elbo": elbo,
                "reconstruction_nll": -jnp.mean(reconstruction),
                "kl": jnp.mean(kl)}


def kl_weight(step: Array, warmup_steps: int) -> Array:
  """Linear KL annealing: min(1, (step + 1) / warmup_steps) (paper 3, Sec. 5).

  Paper 3 uses "linear KL annealing for 100 epochs", after the VampPrior
  code (Tomczak & Welling), whose weight at epoch e = 1, 2, ... is
  min(1, e / warmup); here the unit is the step, counted from 0, so step 0
  has weight 1 / warmup_steps and step warmup_steps - 1 has weight 1.

  Args:
    step: the training step (0 for the first), an int scalar, traceable.
    warmup_steps: the length of the warm-up; 0 gives weight 1 throughout.

  Returns:
    A float32 scalar in (0, 1].

  Example:
    >>> [float(kl_weight(s, 4)) for s in (0, 1, 3, 10)]
    [0.25, 0.5, 1.0, 1.0]
  """
  if warmup_steps == 0:
    return jnp.ones((), jnp.float32)
  return jnp.minimum(1.0, (jnp.asarray(step, jnp.float32) + 1) / warmup_steps)


def importance_log_weights(x: Array, mean: Array, log_variance: Array,
                           decode: Decode, log_prior: LogPrior
                           ) -> iwae.LogWeightsFn:
  """(key, n) -> [n, B] IWAE log weights with q(z | x) as the proposal.

  log w_s = log p(x | z_s) + log p(z_s) - log q(z_s | x), z_s ~ q(z | x),
  the `log_weights_fn` of `iwae.importance_log_likelihood`.

  Args:
    x: [B, *event] binary images.
    mean: [B, d] mu(x).
    log_variance: [B, d] log Lambda(x).
    decode: z [n, B, d] -> logits [n, B, *event].
    log_prior: z [n, B, d] -> log p(z) [n, B].
  """
  def log_weights(key: Array, num: int) -> Array:
    z = reparameterised_sample(key, mean, log_variance, (num,))
    return (bernoulli_log_prob(x, decode(z)) + log_prior(z)
            - gaussian.diagonal_gaussian_log_prob(z, mean, log_variance))

  return log_weights
