"""NCT's conditional flow q_N(x) (paper 1, Sec. 2.2, eq. 8).

Every coupling layer's scale and shift also see the neighbourhood N:

  y_A = x_A
  y_B = x_B * s(x_A, N) + t(x_A, N)                                  (eq. 8)

so z = q_N(x) and z ~ N(0, I) (Alg. 1). The neighbourhood enters the
couplers by concatenation along channels with x_A, resized to each layer's
spatial size in the multi-scale architecture (`nbflows.bijectors.ConvCoupler`
with cond_mode "concat").

What the couplers see (`config.nct.condition`), computed from the neighbours
in the logit space of the flow's input (they are preprocessed like x):
  * "concat" (NCT, eq. 8, the default): the k neighbours side by side along
    channels in the order of the neighbourhood, nearest first (the neighbour
    index sorts them by distance), [B, H, W, kC]; k is fixed when the model
    is built (config.neighbours.k) and no other k is taken.
  * "pool" (NCT-pool, a variant not in the paper): the mean and standard
    deviation over the k neighbours of every pixel, [B, H, W, 2C]. It does
    not depend on the order of the neighbours and takes any k at test time.
Scale s of the multi-scale transform (s = 0 the finest) receives this
condition resized to the spatial size of that scale's input by averaging
2 x 2 blocks s times, [B, H / 2^s, W / 2^s, c] ("we re-size the neighbors
before concatenating them"); the layers after a scale's squeeze get it
resized to their size by the coupler. The number of condition channels c
is the same at every scale, so the couplers grow by the same few weights.

With a context vector c [B, C] (config.context.dim = C > 0, `cond` the dict
{"neighbours": N, "context": c}, `neighbourhood.split_condition`), s and t
of eq. 8 also see c: it is broadcast over space and concatenated onto every
scale's condition, [B, H / 2^s, W / 2^s, c + C] (`neighbourhood.append_context`).
"""
from __future__ import annotations

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.bijectors import base
from nbflows.bijectors import neighbourhood

Array = jax.Array


def pool_neighbourhood(neighbours: Array) -> Array:
  """Per-pixel mean and std over the neighbours: [B, k, H, W, C] -> [B, H, W, 2C].

  Example:
    >>> import jax.numpy as jnp
    >>> n = jnp.stack([jnp.zeros((1, 2, 2, 1)), 2 * jnp.ones((1, 2, 2, 1))], 1)
    >>> pool_neighbourhood(n)[0, 0, 0].tolist()   # mean 1, std 1
    [1.0, 1.0]
  """
  return jnp.concatenate([neighbours.mean(axis=1), neighbours.std(axis=1)],
                         axis=-1)


def halve(image: Array) -> Array:
  """Averages 2 x 2 blocks: [B, H, W, c] -> [B, H / 2, W / 2, c].

  Example:
    >>> import jax.numpy as jnp
    >>> halve(jnp.arange(4.0).reshape(1, 2, 2, 1)).tolist()
    [[[[1.5]]]]
  """
  b, h, w, c = image.shape
  if h % 2 or w % 2:
    raise ValueError(f"image has shape {tuple(image.shape)}; expected an even "
                     "height and width to halve")
  return image.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class NCTTransform(base.Bijector):
  """A conditional multi-scale flow q_N(x) given a neighbourhood (eq. 8).

  `cond` is the neighbourhood [B, k, H, W, C] in the flow's input space; it
  is concatenated ("concat") or pooled ("pool") and halved once per scale
  (`halve`). With `context_dim` C > 0, `cond` is {"neighbours": N,
  "context": c [B, C]} and c joins every scale's condition.

  Attributes:
    transform: a `multiscale.MultiScale` built with conditional couplings.
    condition: "concat" (eq. 8) or "pool" (NCT-pool); see the module
      docstring.
    num_neighbours: k; required by "concat", which takes only that k.
    context_dim: C, the width of a context vector given with N; 0: none.
  """
  transform: nn.Module = None
  condition: str = "concat"
  num_neighbours: Optional[int] = None
  context_dim: int = 0
  conditional = True

  def _split(self, x: Array, cond) -> Tuple[Array, Optional[Array]]:
    """(N, c or None) of `cond`, checked for targets `x`."""
    return neighbourhood.split_condition(
        cond, x.shape[1:], x.shape[0],
        neighbourhood.fixed_num_neighbours(self.condition,
                                           self.num_neighbours, "condition"),
        self.context_dim)

  def scale_conditions(self, cond: Array, context: Optional[Array] = None
                       ) -> Tuple[Array, ...]:
    """One condition per scale: the neighbourhood halved s times at scale s,
    with the context c (if any) broadcast onto each."""
    if self.condition == "concat":
      summary = neighbourhood.concat_neighbourhood(cond)
    else:
      summary = pool_neighbourhood(cond)
    conditions = [summary]
    for _ in range(self.transform.num_scales - 1):
      conditions.append(halve(conditions[-1]))
    return tuple(neighbourhood.append_context(c, context) for c in conditions)

  def forward_targets(self, targets: Array, cond
                      ) -> Tuple[Array, Array]:
    """Forward of P targets per neighbourhood: [P, B, *event] -> (y, [P, B])."""
    num, batch = targets.shape[:2]
    flat = targets.reshape(num * batch, *targets.shape[2:])
    tiled = [None if part is None else
             jnp.tile(part, (num,) + (1,) * (part.ndim - 1))
             for part in self._split(flat[:batch], cond)]
    y, logdet = self.transform.forward(flat, self.scale_conditions(*tiled))
    return y.reshape(targets.shape), logdet.reshape(num, batch)

  def forward(self, x: Array, cond=None) -> Tuple[Array, Array]:
    return self.transform.forward(
        x, self.scale_conditions(*self._split(x, cond)))

  def inverse(self, y: Array, cond=None) -> Tuple[Array, Array]:
    return self.transform.inverse(
        y, self.scale_conditions(*self._split(y, cond)))
