"""Neighbourhood conditioned likelihood, NCL (paper 1, Sec. 2.2, eq. 7 and 9).

A neighbourhood flow models p(x | N) for a target x and a set N of k training
images (eq. 4's conditional). NCL keeps the flow q unconditional and moves the
latent Gaussian with the neighbourhood (eq. 7):

  p_Z(q(x) | N) = N(q(x) | g_mu(q(N)), diag(g_sigma(q(N))^2))

where the neighbours pass through the same flow q as the target (shared
parameters, Fig. 2b). Written as one more bijector after q (eq. 9),

  z = (q(x) - g_mu(q(N))) / g_sigma(q(N)),   z ~ N(0, I)
  log p(x | N) = log N(z; 0, I) + log|det dq/dx| - sum log g_sigma

which is Alg. 1: `forward` maps x to the standardised z and the prior is the
standard normal. Sampling (Alg. 2) inverts it from z ~ N(0, T^2 I).

g_mu and g_sigma (App. B.1, `LatentStatistics`) are two branches of six
3x3 conv layers that share their first three. The shared layers run on every
neighbour's latent alone (weights shared across neighbours); what follows
depends on `config.ncl.statistics`:
  * "concat" (NCL, the paper's form and the default): the k feature maps are
    concatenated along channels in the order of the neighbourhood, nearest
    first (the neighbour index sorts them by distance), so the model is
    built for the k of `config.neighbours.k` and takes no other k;
  * "pool" (NCL-pool, a variant not in the paper): the k feature maps are
    pooled by their mean and maximum over the neighbours, so the result does
    not depend on their order and any k >= 1 works at test time.
Each branch's last three layers then map these features to a mean and a
bounded log-scale, log sigma = s tanh(raw / s) with s = `max_log_scale`.
The last layers are zero-initialised, so a fresh head is the identity
(N(0, I) prior).

This module also holds what NCL and NCT (`nbflows.models.nct`) share:
`NeighbourhoodFlow` (preprocesses the neighbours like x and hands them to a
transform that is a conditional bijector of x given N), the
`NeighbourhoodModel` facade (condition_kind "neighbours", the k of the
concatenating forms checked, contrastive training of eq. 10 when enabled)
and the two forms of taking the neighbourhood (`FORMS`:
`concat_neighbourhood`, or the -pool variants' pooling).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from configs import ncl_digits
  >>> model = build_ncl(ncl_digits.get_config("quick"))
  >>> x = jnp.full((2, 8, 8, 1), 8.5)
  >>> neighbours = jnp.full((2, 5, 8, 8, 1), 8.5)
  >>> params = model.init(jax.random.key(0), {"x": x, "neighbours": neighbours})
  >>> model.log_prob(params, x, neighbours).shape
  (2,)
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from nbflows.bijectors import base as bijector_base
from nbflows.data import sources
from nbflows.models import base
from nbflows.models import flow
from nbflows.models import realnvp
from nbflows.neighbours import index as index_lib
from nbflows.objectives import contrastive

Array = jax.Array
Params = base.Params
# App. B.1: six conv layers per branch, of which the first three are shared.
NUM_SHARED_LAYERS = 3
NUM_BRANCH_LAYERS = 3


# How the neighbourhood enters NCL's g_mu, g_sigma and NCT's couplings:
# "concat" (the paper's, k fixed) or "pool" (the -pool variants, any k).
FORMS = ("concat", "pool")


def fixed_num_neighbours(form: str, num_neighbours: Optional[int],
                         what: str) -> Optional[int]:
  """The k that `form` takes: `num_neighbours` for "concat", None (any k) for
  "pool".

  Args:
    form: one of `FORMS`.
    num_neighbours: k of the concatenating form.
    what: the attribute's name, for the messages.

  Raises:
    ValueError: for an unknown form, or "concat" without a k >= 1.
  """
  if form not in FORMS:
    raise ValueError(f"{what}={form!r}; expected one of {FORMS}")
  if form == "pool":
    return None
  if num_neighbours is None or num_neighbours < 1:
    raise ValueError(f"{what}='concat' with num_neighbours={num_neighbours}; "
                     "expected the k >= 1 of config.neighbours.k (the "
                     "neighbours are concatenated, so k is fixed)")
  return int(num_neighbours)


def neighbourhood_description(event_shape: Sequence[int], batch,
                              num_neighbours: Optional[int] = None) -> str:
  """What a neighbourhood argument must be, for error messages.

  Example:
    >>> neighbourhood_description((8, 8, 1), 3, num_neighbours=5)
    'neighbourhoods of shape [3, 5, 8, 8, 1] (k = 5 neighbours, nearest first)'
    >>> neighbourhood_description((8, 8, 1), "batch")
    'neighbourhoods of shape [batch, k, 8, 8, 1] (any k >= 1)'
  """
  dims = ", ".join(str(d) for d in event_shape)
  if num_neighbours is None:
    return f"neighbourhoods of shape [{batch}, k, {dims}] (any k >= 1)"
  return (f"neighbourhoods of shape [{batch}, {num_neighbours}, {dims}] "
          f"(k = {num_neighbours} neighbours, nearest first)")


def check_neighbourhood(cond: Optional[Array], event_shape: Sequence[int],
                        batch: int, name: str = "cond",
                        num_neighbours: Optional[int] = None) -> None:
  """Raises ValueError unless `cond` is a [batch, k, *event_shape] array.

  Args:
    cond: the neighbourhoods, or None.
    event_shape: the shape of one image.
    batch: the batch size of the targets they condition.
    name: what to call `cond` in the message.
    num_neighbours: the k a concatenating form was built for; None for any
      k >= 1.

  Raises:
    ValueError: naming the shape received and the one expected.
  """
  expected = neighbourhood_description(event_shape, batch, num_neighbours)
  if cond is None:
    raise ValueError(f"{name} is missing; expected {expected}")
  if (cond.ndim != len(event_shape) + 2 or cond.shape[0] != batch or
      cond.shape[1] < 1 or tuple(cond.shape[2:]) != tuple(event_shape)):
    raise ValueError(f"{name} has shape {tuple(cond.shape)}; expected "
                     f"{expected}")
  if num_neighbours is not None and cond.shape[1] != num_neighbours:
    raise ValueError(
        f"{name} has shape {tuple(cond.shape)}, k = {cond.shape[1]} "
        f"neighbours; expected {expected}: the model concatenates its "
        f"neighbours and was built for k = {num_neighbours} (the -pool "
        "variants take any k)")


def concat_neighbourhood(neighbours: Array) -> Array:
  """The neighbours side by side: [B, k, H, W, C] -> [B, H, W, kC].

  Channels j C to (j + 1) C - 1 hold neighbour j, so the nearest comes first.

  Example:
    >>> import jax.numpy as jnp
    >>> n = jnp.arange(6.0).reshape(1, 3, 1, 1, 2)    # k = 3, C = 2
    >>> concat_neighbourhood(n)[0, 0, 0].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
  """
  moved = jnp.moveaxis(neighbours, 1, -2)                  # [B, H, W, k, C]
  return moved.reshape(*moved.shape[:-2], -1)


def _flatten_neighbours(cond: Array) -> Array:
  """[B, k, *event] -> [B * k, *event]."""
  return cond.reshape(-1, *cond.shape[2:])


# ------------------------------------------------------- the eq. 9 head
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
  give the mean and log g_sigma. The branches' last layers are
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
  def __call__(self, latents: Array) -> Tuple[Array, Array]:
    if latents.ndim != 5:
      raise ValueError(f"latents have shape {tuple(latents.shape)}; expected "
                       "[B, k, H, W, C] (NCL needs image events)")
    if not self.max_log_scale > 0:
      raise ValueError(f"max_log_scale={self.max_log_scale}; expected > 0")
    k_fixed = fixed_num_neighbours(self.form, self.num_neighbours, "form")
    check_neighbourhood(latents, latents.shape[2:], latents.shape[0],
                        "latents", k_fixed)
    batch, k = latents.shape[:2]
    channels = latents.shape[-1]
    h = _flatten_neighbours(latents)                       # [B k, H, W, C]
    for i in range(NUM_SHARED_LAYERS):
      h = nn.relu(nn.Conv(self.hidden, (3, 3), padding="SAME",
                          name=f"shared{i}")(h))
    h = h.reshape(batch, k, *h.shape[1:])                  # [B, k, H, W, F]
    if self.form == "concat":
      features = concat_neighbourhood(h)                   # [B, H, W, k F]
    else:
      features = jnp.concatenate([h.mean(axis=1), h.max(axis=1)], axis=-1)

    def branch(name: str) -> Array:
      g = features
      for i in range(NUM_BRANCH_LAYERS - 1):
        g = nn.relu(nn.Conv(self.hidden, (3, 3), padding="SAME",
                            name=f"{name}{i}")(g))
      return nn.Conv(channels, (3, 3), padding="SAME",
                     kernel_init=nn.initializers.zeros, name=f"{name}_out")(g)

    s = self.max_log_scale
    return branch("mean"), s * jnp.tanh(branch("log_scale") / s)


class NeighbourhoodAffine(bijector_base.Bijector):
  """Eq. 9 as a conditional bijector of a latent z given q(N).

  Forward: y = (z - g_mu(q(N))) / g_sigma(q(N)); log|det| = -sum log g_sigma.
  `cond` is the neighbour latents q(N), [B, k, H, W, C].

  Attributes:
    hidden: channels of g_mu and g_sigma's hidden layers.
    max_log_scale: bound on |log g_sigma|.
    form: "concat" (App. B.1) or "pool" (NCL-pool); see `LatentStatistics`.
    num_neighbours: k, required by "concat".

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
  conditional = True

  def setup(self):
    self.statistics = LatentStatistics(self.hidden, self.max_log_scale,
                                       self.form, self.num_neighbours)

  def fixed_k(self) -> Optional[int]:
    """The k this head takes (None: any k)."""
    return fixed_num_neighbours(self.form, self.num_neighbours, "form")

  def _bijector(self, z: Array, cond: Optional[Array]) -> distrax.Bijector:
    check_neighbourhood(cond, z.shape[1:], z.shape[0],
                        num_neighbours=self.fixed_k())
    mean, log_scale = self.statistics(cond)
    return _standardise(mean, log_scale, z.ndim - 1)

  def forward(self, z: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._bijector(z, cond).forward_and_log_det(z)

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._bijector(y, cond).inverse_and_log_det(y)


class NCLTransform(bijector_base.Bijector):
  """x -> (q(x) - g_mu(q(N))) / g_sigma(q(N)): q then eq. 9, given N.

  `cond` is the neighbourhood [B, k, *event] in q's input space. The forward
  pass runs q once on the targets and the B k neighbours together; the
  neighbours' log-dets are dropped.

  Attributes:
    transform: the unconditional flow q.
    head: the `NeighbourhoodAffine` layer of eq. 9.
  """
  transform: nn.Module = None
  head: nn.Module = None
  conditional = True

  def _check(self, x: Array, cond: Optional[Array]) -> None:
    check_neighbourhood(cond, x.shape[1:], x.shape[0],
                        num_neighbours=self.head.fixed_k())

  def latents(self, x: Array) -> Tuple[Array, Array]:
    """(q(x), log|det dq/dx|) without the neighbourhood."""
    return self.transform.forward(x)

  def neighbourhood_statistics(self, cond: Array) -> Tuple[Array, Array]:
    """(g_mu(q(N)), log g_sigma(q(N))), each [B, *event]."""
    latents, _ = self.transform.forward(_flatten_neighbours(cond))
    return self.head.statistics(latents.reshape(cond.shape))

  def forward_targets(self, targets: Array, cond: Array
                      ) -> Tuple[Array, Array]:
    """Forward of P targets per neighbourhood: [P, B, *event] -> (y, [P, B]).

    One pass of q over the P B targets and the B k neighbours.
    """
    num, batch = targets.shape[:2]
    self._check(targets[0], cond)
    event = targets.shape[2:]
    both = jnp.concatenate([targets.reshape(num * batch, *event),
                            _flatten_neighbours(cond)])
    latents, logdet = self.transform.forward(both)
    z = latents[:num * batch].reshape(targets.shape)
    mean, log_scale = self.head.statistics(
        latents[num * batch:].reshape(cond.shape))
    y, head_logdet = _standardise(mean, log_scale, len(event)
                                  ).forward_and_log_det(z)
    return y, logdet[:num * batch].reshape(num, batch) + head_logdet

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    self._check(x, cond)
    y, logdet = self.forward_targets(x[None], cond)
    return y[0], logdet[0]

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    self._check(y, cond)
    mean, log_scale = self.neighbourhood_statistics(cond)
    z, head_logdet = _standardise(mean, log_scale, y.ndim - 1
                                  ).inverse_and_log_det(y)
    x, logdet = self.transform.inverse(z)
    return x, logdet + head_logdet


def latents_and_logdet(module: "NeighbourhoodFlow", x: Array
                       ) -> Tuple[Array, Array]:
  """(q(x), log|det d q(x) / dx|) of an NCL flow, preprocessing included.

  For ``module.apply(params, x, method=latents_and_logdet)``: then
  log p(x | N) = log N(q(x); g_mu, g_sigma^2) + this log-det (eq. 7), for
  any N.
  """
  h, logdet = module.preprocessing.forward(x)
  z, q_logdet = module.transform.latents(h)
  return z, logdet + q_logdet


def statistics_of_latents(module: "NeighbourhoodFlow", latents: Array
                          ) -> Tuple[Array, Array]:
  """(g_mu, log g_sigma) [B, *event] of an NCL flow from q(N) [B, k, *event].

  For ``module.apply(params, latents, method=statistics_of_latents)``.
  """
  return module.transform.head.statistics(latents)


# ------------------------------------- shared by the neighbourhood flows
class NeighbourhoodFlow(flow.FlowModel):
  """A `FlowModel` whose transform is a conditional bijector of x given N.

  The neighbours [B, k, *event] arrive in data units, like x, and go through
  the same preprocessing (rescale, logit) before the transform sees them
  (`transform_condition`). The prior is the standard normal (Alg. 1). The
  transform must offer `forward_targets` (P targets per neighbourhood), used
  by `targets_log_prob` for contrastive training.
  """

  def transform_condition(self, cond: Optional[Array]) -> Array:
    """The neighbourhood in the transform's input space, [B, k, *event]."""
    if cond is None:
      raise ValueError("cond is missing; a neighbourhood flow needs "
                       "neighbourhoods of shape [batch, k, "
                       f"{', '.join(str(d) for d in self.event_shape)}]")
    check_neighbourhood(cond, self.event_shape, cond.shape[0])
    h, _ = self.preprocessing.forward(_flatten_neighbours(cond))
    return h.reshape(cond.shape)

  def targets_log_prob(self, targets: Array, cond: Array) -> Array:
    """log p(x_p | N) for P targets per neighbourhood: [P, B, *event] -> [P, B].

    Used for eq. 10, where every neighbourhood scores its own example and a
    negative; the neighbourhood is processed once.
    """
    num, batch = targets.shape[:2]
    bijector_base.check_event(targets[0], self.event_shape, "targets[p]")
    h, logdet = self.preprocessing.forward(
        targets.reshape(num * batch, *self.event_shape))
    z, transform_logdet = self.transform.forward_targets(
        h.reshape(targets.shape), self.transform_condition(cond))
    log_prior = self.prior_log_prob(z.reshape(h.shape), None)
    return (log_prior + logdet).reshape(num, batch) + transform_logdet


class NeighbourhoodModel(base.Model):
  """The facade of NCL and NCT: cond is a neighbourhood [B, k, *event].

  With `contrastive` set, `loss` is eq. 10 (see
  `nbflows.objectives.contrastive`): the batch rolled by a random shift
  gives each neighbourhood a negative, and both are scored in one pass.

  Attributes:
    contrastive: the margin and weight of eq. 10, or None for the plain
      conditional likelihood.
    num_neighbours: the k the model takes (its neighbours are concatenated,
      as in the paper), or None for any k (the -pool variants).
  """

  def __init__(self, module: NeighbourhoodFlow, event_shape: Sequence[int],
               name: str, num_levels: Optional[int],
               num_classes: Optional[int] = None,
               contrastive_settings: Optional[
                   contrastive.ContrastiveSettings] = None,
               num_neighbours: Optional[int] = None):
    super().__init__(module, event_shape, condition_kind="neighbours",
                     name=name, num_classes=num_classes,
                     num_levels=num_levels)
    self.contrastive = (None if contrastive_settings is None
                        else contrastive_settings.validate())
    self.num_neighbours = num_neighbours

  def check_cond(self, cond: Optional[Array], batch: Optional[int]) -> None:
    """`base.Model.check_cond`, and k = `num_neighbours` where it is fixed."""
    super().check_cond(cond, batch)
    check_neighbourhood(cond, self.event_shape, cond.shape[0],
                        num_neighbours=self.num_neighbours)

  def _cond_description(self, batch: Optional[int]) -> str:
    return neighbourhood_description(
        self.event_shape, "batch" if batch is None else batch,
        self.num_neighbours)

  def loss(self, params: Params, batch: Mapping[str, Array],
           key: Array) -> Tuple[Array, Dict[str, Array]]:
    """Mean bits/dim of x given N(x), plus eq. 10's hinge when contrastive."""
    if self.contrastive is None:
      return super().loss(params, batch, key)
    x, cond = batch["x"], self.condition(batch)
    targets = jnp.stack([x, contrastive.roll_negatives(key, x)])
    log_prob = self.module.apply(params, targets, cond,
                                 method="targets_log_prob")
    bpd = units.bits_per_dim(log_prob, self.num_dims)
    return contrastive.contrastive_loss(bpd[0], bpd[1],
                                        self.contrastive.margin_bpd,
                                        self.contrastive.weight)


def contrastive_settings(config: ml_collections.ConfigDict
                         ) -> Optional[contrastive.ContrastiveSettings]:
  """config.contrastive as `ContrastiveSettings`, None when not enabled."""
  if not config.contrastive.enabled:
    return None
  return contrastive.ContrastiveSettings(config.contrastive.margin_bpd,
                                         config.contrastive.weight)


def configured_num_neighbours(config: ml_collections.ConfigDict,
                              field: str) -> Optional[int]:
  """The k a model built with form `config.<field>` takes; None for "pool".

  The concatenating form takes the neighbour index's k (config.neighbours.k,
  or num_prototypes for k-means neighbourhoods), nearest first.

  Args:
    config: the run's config.
    field: "ncl.statistics" or "nct.condition".

  Raises:
    ValueError: for a form outside `FORMS`, or "concat" with
      config.neighbours.train_subset_k (a random subset in random order).
  """
  group, name = field.split(".")
  form = config[group][name]
  if form not in FORMS:
    raise ValueError(f"config.{field}={form!r}; expected one of {FORMS}")
  if form == "pool":
    return None
  subset = config.neighbours.train_subset_k
  if subset:
    raise ValueError(
        f"config.neighbours.train_subset_k={subset} with config.{field}="
        "'concat'; expected 0: concatenation takes all k neighbours in order "
        f"of distance, in training as in evaluation (or {field}='pool', the "
        "pooled variant, which takes any k)")
  return index_lib.neighbourhood_size(config.neighbours)


def image_info(config: ml_collections.ConfigDict) -> sources.DatasetInfo:
  """`config.dataset`'s info; raises ValueError unless it holds images."""
  info = sources.dataset_info(config.dataset)
  if len(info.event_shape) != 3:
    raise ValueError(f"model {config.model!r} needs images; dataset "
                     f"{config.dataset!r} has event shape {info.event_shape}")
  return info


def build_ncl(config: ml_collections.ConfigDict) -> NeighbourhoodModel:
  """The "ncl" model: multi-scale RealNVP q with the eq. 9 head.

  Uses config.flow.{num_scales, couplings_per_scale, hidden_channels,
  num_res_blocks, logit_alpha}, config.ncl.{hidden_channels,
  max_log_scale, statistics} (statistics "concat": NCL, App. B.1, for the
  k of config.neighbours; "pool": NCL-pool, any k) and config.contrastive.
  """
  info = image_info(config)
  num_neighbours = configured_num_neighbours(config, "ncl.statistics")
  q = realnvp.multiscale_transform(
      info.event_shape, config.flow.num_scales,
      config.flow.couplings_per_scale, config.flow.hidden_channels,
      config.flow.num_res_blocks)
  head = NeighbourhoodAffine(hidden=config.ncl.hidden_channels,
                             max_log_scale=config.ncl.max_log_scale,
                             form=config.ncl.statistics,
                             num_neighbours=num_neighbours)
  module = NeighbourhoodFlow(
      transform=NCLTransform(transform=q, head=head),
      event_shape=info.event_shape, num_levels=info.num_levels,
      logit_alpha=config.flow.logit_alpha)
  return NeighbourhoodModel(module, info.event_shape, config.model,
                            info.num_levels, info.num_classes,
                            contrastive_settings(config), num_neighbours)
