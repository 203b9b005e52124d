"""Contrastive training of neighbourhood-conditioned flows (paper 1, eq. 10).

For x_i with its neighbourhood N(x_i) (a positive) and x' from a different
neighbourhood (a negative), eq. 10 adds to the likelihood term a hinge that
wants the negative to be less likely than the positive under N(x_i) by a
margin m:

  L = E[ -log p(x | N_i) + max(0, m + log p(x' | N_i) - log p(x | N_i)) ]

with N_i = N(x_i) (the paper writes the first term as the likelihood to be
maximised; here it is the negative log-likelihood, minimised). With both
terms in bits per dimension, bpd = -log p / (D ln 2), and m in bits per
dimension (0.5 in the paper, Sec. 3.2) the hinge reads

  max(0, m + bpd(x | N) - bpd(x' | N))

which is zero once bpd(x' | N) >= bpd(x | N) + m, i.e. once
log p(x' | N) <= log p(x | N) - m D ln 2. The loss is

  mean_i bpd(x_i | N_i) + weight * mean_i hinge_i.

Negatives are the batch's own examples, rolled by a random shift in
[1, B - 1] (`roll_negatives`): every example is scored under the neighbourhood
of another example of the batch. A shuffled batch rarely pairs two members of
one neighbourhood, and the paper's sampling of x' from p(. | N(x_j)) is
approximated by the data themselves, as in its experiments.

Example:
  >>> import jax.numpy as jnp
  >>> loss, metrics = contrastive_loss(jnp.array([1.0, 2.0]),
  ...                                  jnp.array([1.2, 3.0]), margin_bpd=0.5)
  >>> round(float(loss), 4)  # mean(1, 2) + mean(max(0, .5 + 1 - 1.2), 0)
  1.65
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp

Array = jax.Array


class ContrastiveSettings(NamedTuple):
  """The two numbers of eq. 10 (config.contrastive.{margin_bpd, weight}).

  Attributes:
    margin_bpd: the margin m, in bits per dimension (paper 1: 0.5).
    weight: the hinge's weight relative to the likelihood term.
  """
  margin_bpd: float = 0.5
  weight: float = 1.0

  def validate(self) -> "ContrastiveSettings":
    """Returns self; raises ValueError for a negative margin or weight."""
    if not self.margin_bpd >= 0:
      raise ValueError(f"margin_bpd={self.margin_bpd}; expected >= 0 (bits "
                       "per dimension)")
    if not self.weight >= 0:
      raise ValueError(f"weight={self.weight}; expected >= 0")
    return self


def roll_negatives(key: Array, x: Array) -> Array:
  """x' = the batch rolled by a random shift s in [1, B - 1] along axis 0.

  Row i of the result is x[(i - s) mod B], never x[i] itself, so scoring
  row i under the neighbourhood of x[i] scores an example of another
  neighbourhood (eq. 10's x').

  Args:
    key: a PRNG key (chooses s).
    x: [B, ...] with B >= 2.

  Returns:
    The rolled batch, of the shape of `x`.

  Raises:
    ValueError: if B < 2 (no other example to contrast with).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.arange(4)
    >>> bool(jnp.all(roll_negatives(jax.random.key(0), x) != x))
    True
  """
  batch = x.shape[0]
  if batch < 2:
    raise ValueError(f"the batch has {batch} example; contrastive training "
                     "(eq. 10) needs a batch of at least 2 to draw negatives")
  shift = jax.random.randint(key, (), 1, batch)
  return jnp.roll(x, shift, axis=0)


def hinge(positive_bpd: Array, negative_bpd: Array,
          margin_bpd: float) -> Array:
  """max(0, m + bpd(x | N) - bpd(x' | N)), elementwise (eq. 10 in bits/dim).

  Example:
    >>> import jax.numpy as jnp
    >>> [round(h, 4) for h in hinge(jnp.array([1.0, 1.0]),
    ...                             jnp.array([1.2, 2.0]), 0.5).tolist()]
    [0.3, 0.0]
  """
  return jax.nn.relu(margin_bpd + positive_bpd - negative_bpd)


def contrastive_loss(positive_bpd: Array, negative_bpd: Array,
                     margin_bpd: float = 0.5, weight: float = 1.0
                     ) -> Tuple[Array, Dict[str, Array]]:
  """Eq. 10: mean bpd(x | N) + weight * mean hinge.

  Args:
    positive_bpd: [B] bits/dim of each example under its own neighbourhood.
    negative_bpd: [B] bits/dim of a negative under the same neighbourhoods.
    margin_bpd: the margin m in bits per dimension.
    weight: the hinge's weight.

  Returns:
    (loss, metrics) with metrics {"loss", "bpd" (the positive mean),
    "negative_bpd", "hinge" (its mean), "margin_met" (the fraction of
    examples whose hinge is zero)}.
  """
  if positive_bpd.shape != negative_bpd.shape or positive_bpd.ndim != 1:
    raise ValueError(f"positive_bpd has shape {tuple(positive_bpd.shape)} and "
                     f"negative_bpd {tuple(negative_bpd.shape)}; expected two "
                     "[B] arrays")
  hinges = hinge(positive_bpd, negative_bpd, margin_bpd)
  bpd = jnp.mean(positive_bpd)
  mean_hinge = jnp.mean(hinges)
  loss = bpd + weight * mean_hinge
  return loss, {"loss": loss, "bpd": bpd,
                "negative_bpd": jnp.mean(negative_bpd), "hinge": mean_hinge,
                "margin_met": jnp.mean((hinges == 0).astype(jnp.float32))}
