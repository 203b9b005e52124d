"""GLF's latent flow f: codes z [B, d] -> noise e [B, d] (paper 5, Fig. 1b).

Each of its blocks is two affine couplings on complementary halves (an
`AffineCoupling` with mask="half" and an `MLPCoupler`) and a fixed random
`Permutation`; e = f(z) is scored under N(0, I) (eq. 1).
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax

from nbflows.bijectors import base
from nbflows.bijectors import combinators
from nbflows.bijectors.coupling import AffineCoupling
from nbflows.bijectors.couplers import MLPCoupler
from nbflows.bijectors.permutation import Permutation
from nbflows.distributions import gaussian

Array = jax.Array


class LatentFlow(base.Bijector):
  """f: codes z [B, d] -> noise e [B, d], 4 blocks of Fig. 1b by default.

  Attributes:
    num_blocks: coupling blocks (paper 5: 4).
    hidden: hidden widths of each coupler; with its output layer the coupler
      has len(hidden) + 1 dense layers (paper 5: 3 layers of k = 64 units for
      MNIST, so hidden=(64, 64)).
    seed: seeds the blocks' permutations (block b uses seed + b).
  """
  num_blocks: int = 4
  hidden: Sequence[int] = (64, 64)
  seed: int = 0

  def setup(self):
    if self.num_blocks < 1:
      raise ValueError(f"num_blocks={self.num_blocks}; expected >= 1")
    layers = []
    for b in range(self.num_blocks):
      for parity in (0, 1):
        layers.append(AffineCoupling(
            mask="half", parity=parity,
            coupler=MLPCoupler(hidden=tuple(self.hidden))))
      layers.append(Permutation(seed=self.seed + b))
    self.chain = combinators.Chain(tuple(layers))

  def forward(self, z: Array, cond: Optional[Array] = None):
    del cond  # the latent flow is unconditional
    return self.chain.forward(z)

  def inverse(self, e: Array, cond: Optional[Array] = None):
    del cond  # the latent flow is unconditional
    return self.chain.inverse(e)

  def log_prob(self, z: Array) -> Array:
    """log p_f(z) = log N(f(z); 0, I) + log|det df/dz| (eq. 1), shape [B]."""
    e, logdet = self.forward(z)
    return gaussian.standard_normal_log_prob(e, event_ndims=1) + logdet
