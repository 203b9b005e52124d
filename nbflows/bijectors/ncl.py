"""NCL's latent Gaussian as a bijector (paper 1, Sec. 2.2, eq. 7 and 9).

NCL keeps the flow q unconditional and moves the latent Gaussian with the
neighbourhood N (eq. 7):

  p_Z(q(x) | N) = N(q(x) | g_mu(q(N)), diag(g_sigma(q(N))^2))

where the neighbours pass through the same flow q as the target (shared
parameters, Fig. 2b). Written as one more bijector after q (eq. 9),

  z = (q(x) - g_mu(q(N))) / g_sigma(q(N)),   z ~ N(0, I)
  log p(x | N) = log N(z; 0, I) + log|det dq/dx| - sum log g_sigma

`NeighbourhoodAffine` is eq. 9 given q(N); `NCLTransform` is q followed by
it, given N. g_mu and g_sigma (App. B.1, `LatentStatistics`) are two
branches of six 3x3 conv layers that share their first three. The shared
layers run on every neighbour's latent alone (weights shared across
neighbours); what follows depends on the form (`neighbourhood.FORMS`):
  * "concat" (NCL, the paper's form): the k feature maps are concatenated
    along channels in the order of the neighbourhood, nearest first, so the
    layer is built for one k and takes no other;
  * "pool" (NCL-pool, a variant not in the paper): the k feature maps are
    pooled by their mean and maximum over the neighbours, so the result does
    not depend on their order and any k >= 1 works at test time.
Each branch's last three layers then map these features to a mean and a
bounded log-scale, log sigma = s tanh(raw / s) with s = `max_log_scale`.
The last layers are zero-initialised, so a fresh head is the identity
(N(0, I) prior).

With a context vector c [B, C] (config.context.dim = C > 0, `cond` the dict
{"neighbours": N, "context": c}, `neighbourhood.split_condition`), c is
broadcast over space and concatenated onto those features before the two
branches, so g_mu(q(N), c) and g_sigma(q(N), c); q stays unconditional.
"""
from __future__ import annotations

from typing import Optional, Tuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.bijectors import base
from nbflows.bijectors import neighbourhood

Array = jax.Array

# App. B.1: six conv layers per branch, of which the first three are shared.
NUM_SHARED_LAYERS = 3
NUM_BRANCH_LAYERS = 3


def _standardise(mean: Array, log_scale: Array,
                 event_ndims: int) -> distrax.Bijector:
  """Eq. 9 as a distrax bijector: y = (z - mean) / exp(log_scale)."""
  return distrax.Block(
      distrax.Inverse(distrax.ScalarAffine(shift=mean, log_scale=log_scale)),
      ndims=event_ndims)


class LatentStatistics(nn.Module):
  """g_mu and g_sigma of eq. 7 (App. B.1) as functions of q(N).

  Input [B, k, H, W, C] neighbour latents; output (mean, log_scale), each
  [B, H, W, C]. Three shared conv layers per neighbour; then the k feature
  maps are concatenated along channels in their order ("concat", App. B.1;
  [B, H, W, k F]) or pooled by their mean and max over the neighbours
  ("pool", NCL-pool; [B, H, W, 2F]); then two branches of three conv layers
  give the mean and log g_sigma. A context c [B, C], if given, is broadcast
  over space and concatenated onto the features before the branches
  (`neighbourhood.append_context`). The branches' last layers are
  zero-initialised.

  Attributes:
    hidden: channels F of the hidden conv layers.
    max_log_scale: s in log sigma = s tanh(raw / s); |log sigma| < s.
    form: "concat" or "pool".
    num_neighbours: k, required by "concat", which takes only that k.
  """
  hidden: int = 32
  max_log_scale: float = 3.0
  form: str = "concat"
  num_neighbours: Optional[int] = None

  @nn.compact
  def __call__(self, latents: Array, context: Optional[Array] = None
               ) -> Tuple[Array, Array]:
    if latents.ndim != 5:
      raise ValueError(f"latents have shape {tuple(latents.shape)}; expected "
                       "[B, k, H, W, C] (NCL needs image events)")
    if not self.max_log_scale > 0:
      raise ValueError(f"max_log_scale={self.max_log_scale}; expected > 0")
    k_fixed = neighbourhood.fixed_num_neighbours(self.form, self.num_neighbours, "form")
    neighbourhood.check_neighbourhood(latents, latents.shape[2:], latents.shape[0],
                        "latents", k_fixed)
    batch, k = latents.shape[:2]
    channels = latents.shape[-1]
    h = neighbourhood.flatten_neighbours(latents)                       # [B k, H, W, C]
    for i in range(NUM_SHARED_LAYERS):
      h = nn.relu(nn.Conv(self.hidden, (3, 3), padding="SAME",
                          name=f"shared{i}")(h))
    h = h.reshape(batch, k, *h.shape[1:])                  # [B, k, H, W, F]
    if self.form == "concat":
      features = neighbourhood.concat_neighbourhood(h)                   # [B, H, W, k F]
    else:
      features = jnp.concatenate([h.mean(axis=1), h.max(axis=1)], axis=-1)
    features = neighbourhood.append_context(features, context)

    def branch(name: str) -> Array:
      g = features
      for i in range(NUM_BRANCH_LAYERS - 1):
        g = nn.relu(nn.Conv(self.hidden, (3, 3), padding="SAME",
                            name=f"{name}{i}")(g))
      return nn.Conv(channels, (3, 3), padding="SAME",
                     kernel_init=nn.initializers.zeros, name=f"{name}_out")(g)

    s = self.max_log_scale
    return branch("mean"), s * jnp.tanh(branch("log_scale") / s)


class NeighbourhoodAffine(base.Bijector):
  """Eq. 9 as a conditional bijector of a latent z given q(N).

  Forward: y = (z - g_mu(q(N))) / g_sigma(q(N)); log|det| = -sum log g_sigma.
  `cond` is the neighbour latents q(N), [B, k, H, W, C]; with `context_dim`
  C > 0, {"neighbours": q(N), "context": c [B, C]}.

  Attributes:
    hidden: channels of g_mu and g_sigma's hidden layers.
    max_log_scale: bound on |log g_sigma|.
    form: "concat" (App. B.1) or "pool" (NCL-pool); see `LatentStatistics`.
    num_neighbours: k, required by "concat".
    context_dim: C, the width of a context vector given with q(N); 0: none.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> head = NeighbourhoodAffine(hidden=8, num_neighbours=3)
    >>> z, latents = jnp.ones((2, 4, 4, 1)), jnp.zeros((2, 3, 4, 4, 1))
    >>> params = head.init(jax.random.key(0), z, latents)
    >>> y, logdet = head.apply(params, z, latents, method="forward")
    >>> bool(jnp.all(y == z)), logdet.tolist()      # identity when fresh
    (True, [0.0, 0.0])
  """
  hidden: int = 32
  max_log_scale: float = 3.0
  form: str = "concat"
  num_neighbours: Optional[int] = None
  context_dim: int = 0
  conditional = True

  def setup(self):
    self.statistics = LatentStatistics(self.hidden, self.max_log_scale,
                                       self.form, self.num_neighbours)

  def fixed_k(self) -> Optional[int]:
    """The k this head takes (None: any k)."""
    return neighbourhood.fixed_num_neighbours(self.form, self.num_neighbours, "form")

  def split(self, x: Array, cond) -> Tuple[Array, Optional[Array]]:
    """(neighbours, context or None) of `cond`, checked for targets `x`."""
    return neighbourhood.split_condition(cond, x.shape[1:], x.shape[0],
                                         self.fixed_k(), self.context_dim)

  def _bijector(self, z: Array, cond) -> distrax.Bijector:
    mean, log_scale = self.statistics(*self.split(z, cond))
    return _standardise(mean, log_scale, z.ndim - 1)

  def forward(self, z: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._bijector(z, cond).forward_and_log_det(z)

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._bijector(y, cond).inverse_and_log_det(y)


class NCLTransform(base.Bijector):
  """x -> (q(x) - g_mu(q(N))) / g_sigma(q(N)): q then eq. 9, given N.

  `cond` is the neighbourhood [B, k, *event] in q's input space, or
  {"neighbours": N, "context": c} for a head with a context (the context
  goes to the head alone). The forward pass runs q once on the targets and
  the B k neighbours together; the neighbours' log-dets are dropped.

  Attributes:
    transform: the unconditional flow q.
    head: the `NeighbourhoodAffine` layer of eq. 9.
  """
  transform: nn.Module = None
  head: nn.Module = None
  conditional = True

  def latents(self, x: Array) -> Tuple[Array, Array]:
    """(q(x), log|det dq/dx|) without the neighbourhood."""
    return self.transform.forward(x)

  def neighbourhood_statistics(self, cond: Array,
                               context: Optional[Array] = None
                               ) -> Tuple[Array, Array]:
    """(g_mu(q(N), c), log g_sigma(q(N), c)), each [B, *event]."""
    latents, _ = self.transform.forward(neighbourhood.flatten_neighbours(cond))
    return self.head.statistics(latents.reshape(cond.shape), context)

  def forward_targets(self, targets: Array, cond
                      ) -> Tuple[Array, Array]:
    """Forward of P targets per neighbourhood: [P, B, *event] -> (y, [P, B]).

    One pass of q over the P B targets and the B k neighbours.
    """
    num, batch = targets.shape[:2]
    neighbours, context = self.head.split(targets[0], cond)
    event = targets.shape[2:]
    both = jnp.concatenate([targets.reshape(num * batch, *event),
                            neighbourhood.flatten_neighbours(neighbours)])
    latents, logdet = self.transform.forward(both)
    z = latents[:num * batch].reshape(targets.shape)
    mean, log_scale = self.head.statistics(
        latents[num * batch:].reshape(neighbours.shape), context)
    y, head_logdet = _standardise(mean, log_scale, len(event)
                                  ).forward_and_log_det(z)
    return y, logdet[:num * batch].reshape(num, batch) + head_logdet

  def forward(self, x: Array, cond=None) -> Tuple[Array, Array]:
    self.head.split(x, cond)
    y, logdet = self.forward_targets(x[None], cond)
    return y[0], logdet[0]

  def inverse(self, y: Array, cond=None) -> Tuple[Array, Array]:
    mean, log_scale = self.neighbourhood_statistics(*self.head.split(y, cond))
    z, head_logdet = _standardise(mean, log_scale, y.ndim - 1
                                  ).inverse_and_log_det(y)
    x, logdet = self.transform.inverse(z)
    return x, logdet + head_logdet
