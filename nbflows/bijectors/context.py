"""A flow conditioned on a context vector c [B, C] (`condition_kind="context"`).

The conditional flows of nflows, flowjax and zuko: every conditional layer of
a transform q_c also sees a float context vector c of a fixed width C,

  y_A = x_A,  y_B = x_B * exp(s(x_A, c)) + t(x_A, c)   (couplings, as eq. 8
                                                          of paper 1 with N
                                                          replaced by c)
  u_i = (x_i - mu_i(x_<i, c)) * exp(-alpha_i(x_<i, c))  (MAF, Papamakarios
                                                          et al. 2017, Sec. 3.4)

so log p(x | c) = log N(q_c(x); 0, I) + log|det dq_c/dx|. The couplers take
c by ``cond_mode`` "concat" (broadcast over space for images) or "project"
(`nbflows.bijectors.couplers`); a MADE connects it, unmasked, to its first
hidden layer (`nbflows.bijectors.made`). `ContextConditioned` checks c and
hands it to the transform: one copy per scale to a `MultiScale`, the array
itself to anything else.
"""
from __future__ import annotations

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nbflows.bijectors import base
from nbflows.bijectors import multiscale

Array = jax.Array


def context_description(batch, context_dim: int) -> str:
  """What a context argument must be, for error messages.

  Example:
    >>> context_description(4, 3)
    'a float context of shape [4, 3] (config.context.dim = 3)'
  """
  return (f"a float context of shape [{batch}, {context_dim}] "
          f"(config.context.dim = {context_dim})")


def check_context(cond: Optional[Array], context_dim: int,
                  batch: Optional[int], name: str = "cond") -> None:
  """Raises ValueError unless `cond` is a finite float [batch, context_dim].

  The shape and dtype are static, so they are checked under `jax.jit` too;
  the values (NaN, inf) only when `cond` is concrete.

  Args:
    cond: the context, or None.
    context_dim: C, the width the layer was built for.
    batch: the batch size of the input it conditions (None: any).
    name: what to call `cond` in the message.

  Raises:
    ValueError: naming the shape and dtype received and the ones expected.
  """
  expected = context_description("batch" if batch is None else batch,
                                 context_dim)
  if cond is None:
    raise ValueError(f"{name} is missing; expected {expected}")
  if (cond.ndim != 2 or cond.shape[1] != context_dim or
      (batch is not None and cond.shape[0] != batch) or
      not jnp.issubdtype(cond.dtype, jnp.floating)):
    raise ValueError(f"{name} has shape {tuple(cond.shape)} and dtype "
                     f"{cond.dtype}; expected {expected}")
  if not isinstance(cond, jax.core.Tracer) and not np.all(np.isfinite(cond)):
    raise ValueError(f"{name} holds NaN or infinite values; expected "
                     f"{expected} of finite values")


class ContextConditioned(base.Bijector):
  """A conditional transform q_c(x) given a context vector c [B, C].

  Forward and inverse are the transform's with `cond` = c (one copy per
  scale when the transform is a `multiscale.MultiScale`); the log-det is
  the transform's.

  Attributes:
    transform: a bijector whose layers are built conditional (couplings
      with ``cond_mode`` "concat" or "project", MAF layers with
      ``conditional=True``).
    context_dim: C, the width of c, >= 1.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from nbflows.bijectors import MaskedAutoregressive
    >>> layer = ContextConditioned(
    ...     transform=MaskedAutoregressive(hidden=(8,), conditional=True),
    ...     context_dim=2)
    >>> x, c = jnp.ones((3, 2)), jnp.zeros((3, 2))
    >>> params = layer.init(jax.random.key(0), x, c)
    >>> y, logdet = layer.apply(params, x, c, method="forward")
    >>> bool(jnp.all(y == x)), logdet.shape        # identity when fresh
    (True, (3,))
  """
  transform: nn.Module = None
  context_dim: int = 1
  conditional = True

  def _condition(self, x: Array, cond: Optional[Array]):
    if self.context_dim < 1:
      raise ValueError(f"context_dim={self.context_dim}; expected >= 1 (a "
                       "flow without a context needs no ContextConditioned)")
    if not base.is_conditional(self.transform):
      raise ValueError("the transform has no conditional layer and would "
                       "ignore the context; build it with conditional=True")
    check_context(cond, self.context_dim, x.shape[0])
    if isinstance(self.transform, multiscale.MultiScale):
      return (cond,) * self.transform.num_scales
    return cond

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self.transform.forward(x, self._condition(x, cond))

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self.transform.inverse(y, self._condition(y, cond))
