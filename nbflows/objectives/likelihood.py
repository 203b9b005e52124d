"""The exact-likelihood objective of the flows (paper 1, eq. 9 and 10).

A flow knows log p(x) exactly, so it trains by maximum likelihood: the loss
is the batch mean of -log p(x) in bits per dimension of the dequantised data
(paper 1, eq. 9, with NCL/NCT's conditional p(x | N(x)); eq. 10 evaluates
the same quantity per test point),

  loss = 1/B sum_b bpd(x_b),     bpd(x) = -log p(x) / (D ln 2),

and the per-example metric is bpd(x_b) itself (`nbflows.units.bits_per_dim`).

Example:
  >>> import jax.numpy as jnp, math
  >>> loss, metrics = likelihood_loss(jnp.array([-64 * math.log(2.0)] * 2), 64)
  >>> round(float(loss), 6), sorted(metrics)
  (1.0, ['bpd', 'loss'])
"""
from __future__ import annotations

from typing import Dict, Tuple

import jax
import jax.numpy as jnp

from nbflows import units

Array = jax.Array


def bits_per_dim_loss(bits_per_dim: Array) -> Tuple[Array, Dict[str, Array]]:
  """Mean bits/dim of a batch as the loss, with its training metrics.

  Args:
    bits_per_dim: [B] per-example -log p(x) / (D ln 2).

  Returns:
    (loss, {"loss": loss, "bpd": loss}), loss the scalar batch mean.
  """
  loss = jnp.mean(bits_per_dim)
  return loss, {"loss": loss, "bpd": loss}


def likelihood_loss(log_prob: Array,
                    num_dims: int) -> Tuple[Array, Dict[str, Array]]:
  """The maximum-likelihood loss from log-densities (paper 1, eq. 9).

  Args:
    log_prob: [B] log p(x) in nats.
    num_dims: D, the dimensions of one example.

  Returns:
    `bits_per_dim_loss` of ``units.bits_per_dim(log_prob, num_dims)``.
  """
  return bits_per_dim_loss(units.bits_per_dim(log_prob, num_dims))
