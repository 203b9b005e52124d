"""MADE and the masked autoregressive flow for vectors [B, D].

MADE (Germain et al. 2015, Sec. 4) gives every input a degree d(x_i) in
{1, ..., D} (its position in the autoregressive order) and every hidden unit a
degree in {1, ..., D - 1}; a weight is kept only where it cannot leak a later
input into an earlier output (eqs. 12 and 13):

  hidden layer:  unit k' <- unit k   iff  d(k') >= d(k)
  output layer:  out_i   <- unit k   iff  d(x_i) >  d(k)

so output i depends on x_j only for d(x_j) < d(x_i). A condition ``cond``
[B, F] has degree 0: it is connected, unmasked, to every unit of the first
hidden layer (Papamakarios et al. 2017, Sec. 3.4). With a condition, hidden
degrees start at 0 rather than 1: a degree-0 unit sees only ``cond`` and feeds
every output, so even the first output in the order (whose only permitted
inputs are ``cond``) depends on it. With hidden degrees from 1 it would be a
constant.

The masked autoregressive flow (MAF, Papamakarios et al. 2017, eqs. 3-5)
maps data to noise in one parallel pass,

  u_i = (x_i - mu_i(x_<i)) * exp(-alpha_i(x_<i))
  log|det du/dx| = -sum_i alpha_i

and noise to data in D sequential passes, x_i = u_i * exp(alpha_i) + mu_i,
the i-th pass fixing the i-th coordinate in the order.

With ``transformer="spline"`` the elementwise map is a rational-quadratic
spline instead (Durkan et al. 2019, Sec. 3.2, "RQ-NSF (AR)"): MADE returns
``3 * num_bins + 1`` spline parameters per dimension, every one of them
masked like mu_i, and u_i = g(x_i; theta_i(x_<i)) with g of `spline`
(identity outside [-spline_bound, spline_bound]); the inverse takes the
same D passes, each inverting the spline in closed form.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nbflows.bijectors import base
from nbflows.bijectors import spline

Array = jax.Array
ORDERS = ("forward", "reversed", "random")
TRANSFORMERS = ("affine", "spline")


def input_degrees(num_inputs: int, order: str = "forward",
                  seed: int = 0) -> np.ndarray:
  """Degrees 1..D of the inputs, i.e. their positions in the order.

  Args:
    num_inputs: D.
    order: "forward" (x_1 first), "reversed" (x_D first) or "random" (a
      permutation drawn from `seed`).
    seed: seed of the random order.

  Returns:
    int array [D], a permutation of 1..D.

  Example:
    >>> input_degrees(4, "reversed").tolist()
    [4, 3, 2, 1]
  """
  if order == "forward":
    return np.arange(1, num_inputs + 1)
  if order == "reversed":
    return np.arange(num_inputs, 0, -1)
  if order == "random":
    return np.random.default_rng(seed).permutation(num_inputs) + 1
  raise ValueError(f"order={order!r}; expected one of {ORDERS}")


def hidden_degrees(num_inputs: int, width: int,
                   conditional: bool = False) -> np.ndarray:
  """Degrees of a hidden layer, cycling through the useful range.

  Args:
    num_inputs: D.
    width: the number of hidden units.
    conditional: whether a condition (degree 0) feeds the network.

  Returns:
    int array [width]: 1, 2, ..., D - 1, 1, 2, ... without a condition;
    0, 1, ..., D - 1, 0, 1, ... with one.

  Example:
    >>> hidden_degrees(3, 5).tolist(), hidden_degrees(3, 5, True).tolist()
    ([1, 2, 1, 2, 1], [0, 1, 2, 0, 1])
  """
  if conditional:
    return np.arange(width) % num_inputs
  return np.arange(width) % (num_inputs - 1) + 1


class MaskedDense(nn.Module):
  """Dense layer whose kernel [in, out] is multiplied by a fixed 0/1 mask."""
  features: int
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: Array, mask: np.ndarray) -> Array:
    kernel = self.param("kernel", self.kernel_init,
                        (x.shape[-1], self.features))
    bias = self.param("bias", self.bias_init, (self.features,))
    return x @ (kernel * jnp.asarray(mask, kernel.dtype)) + bias


class MADE(nn.Module):
  """Masked autoencoder: x [B, D] (and cond [B, F]) -> (mu, raw) [B, D] each.

  ``mu_i`` and ``raw_i`` depend only on inputs earlier than x_i in the order
  (and on cond). The output layer is zero-initialised. With
  ``num_outputs=P`` it returns P arrays [B, D] instead of two, each masked
  the same way.

  Attributes:
    hidden: widths of the hidden layers (relu).
    order: "forward", "reversed" or "random" (see `input_degrees`).
    seed: seed of the random order.
    num_outputs: outputs per input dimension (2: mu and raw).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> net = MADE(hidden=(8,))
    >>> x = jnp.ones((2, 3))
    >>> params = net.init(jax.random.key(0), x)
    >>> mu, raw = net.apply(params, x)
    >>> mu.shape, float(jnp.abs(mu).max())    # zero output at init
    ((2, 3), 0.0)
  """
  hidden: Sequence[int] = (64, 64)
  order: str = "forward"
  seed: int = 0
  num_outputs: int = 2

  @nn.compact
  def __call__(self, x: Array, cond: Optional[Array] = None
               ) -> Tuple[Array, ...]:
    d = x.shape[-1]
    if d < 2:
      raise ValueError(f"x has shape {tuple(x.shape)}; MADE needs D >= 2 "
                       "inputs")
    if not self.hidden:
      raise ValueError("hidden=(); MADE needs at least one hidden layer")
    existing = self.variables.get("params", {})
    if "input" in existing and existing["input"]["kernel"].shape[0] != d:
      raise ValueError(f"x has {d} features (shape {tuple(x.shape)}); this "
                       "MADE was initialised with "
                       f"{existing['input']['kernel'].shape[0]}")
    if (cond is not None and "cond_projection" in existing and
        existing["cond_projection"]["kernel"].shape[0] != cond.shape[-1]):
      raise ValueError(f"cond has {cond.shape[-1]} features (shape "
                       f"{tuple(cond.shape)}); this MADE was initialised with "
                       f"{existing['cond_projection']['kernel'].shape[0]}")
    degrees = input_degrees(d, self.order, self.seed)
    h = x
    for i, width in enumerate(self.hidden):
      out_degrees = hidden_degrees(d, width, conditional=cond is not None)
      mask = out_degrees[None, :] >= degrees[:, None]  # [in, out]
      h = MaskedDense(width, name="input" if i == 0 else f"hidden{i}")(h, mask)
      if i == 0 and cond is not None:
        h = h + nn.Dense(width, use_bias=False, name="cond_projection")(cond)
      h = nn.relu(h)
      degrees = out_degrees
    out_degrees = input_degrees(d, self.order, self.seed)
    mask = out_degrees[None, :] > degrees[:, None]  # [hidden, D]
    p = self.num_outputs
    out = MaskedDense(p * d, kernel_init=nn.initializers.zeros,
                      name="output")(h, np.concatenate([mask] * p, axis=1))
    return tuple(jnp.split(out, p, axis=-1))


class MaskedAutoregressive(base.Bijector):
  """MAF layer: forward data -> noise in one pass, inverse in D passes.

  ``alpha = max_log_scale * tanh(raw / max_log_scale)`` bounds the
  log-scale while keeping slope 1 at 0; with ``transformer="spline"`` the
  map is the rational-quadratic spline of `spline` instead. The
  zero-initialised MADE output makes a fresh layer the identity (zero
  spline parameters are the identity spline).

  Attributes:
    hidden: MADE hidden widths.
    order: "forward", "reversed" or "random"; alternate them when stacking.
    seed: seed of the random order.
    conditional: whether the layer takes `cond` [B, F] (then required).
    max_log_scale: bound on |alpha| (affine).
    transformer: "affine" (MAF) or "spline" (neural spline flow).
    num_bins: the spline's bins K (spline).
    spline_bound: B, the spline acts on [-B, B], the identity outside.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> layer = MaskedAutoregressive(hidden=(16,))
    >>> x = jax.random.normal(jax.random.key(0), (2, 4))
    >>> params = layer.init(jax.random.key(1), x)
    >>> u, logdet = layer.apply(params, x, method="forward")
    >>> bool(jnp.allclose(u, x)), logdet.tolist()     # identity at init
    (True, [0.0, 0.0])
  """
  hidden: Sequence[int] = (64, 64)
  order: str = "forward"
  seed: int = 0
  conditional: bool = False
  max_log_scale: float = 3.0
  transformer: str = "affine"
  num_bins: int = 8
  spline_bound: float = 3.0

  def setup(self):
    if self.max_log_scale <= 0:
      raise ValueError(f"max_log_scale={self.max_log_scale}; expected > 0")
    if self.transformer not in TRANSFORMERS:
      raise ValueError(f"transformer={self.transformer!r}; expected one of "
                       f"{TRANSFORMERS}")
    num_outputs = 2
    if self.transformer == "spline":
      spline.check_settings(self.num_bins, self.spline_bound)
      num_outputs = spline.num_params(self.num_bins)
    self.made = MADE(hidden=self.hidden, order=self.order, seed=self.seed,
                     num_outputs=num_outputs)

  def _check(self, x: Array, cond: Optional[Array], name: str) -> None:
    if x.ndim != 2:
      raise ValueError(f"{name} has shape {tuple(x.shape)}; expected "
                       "[batch, features]")
    if self.conditional and cond is None:
      raise ValueError("cond is missing; this layer was built with "
                       "conditional=True and needs a [B, features] condition")
    if not self.conditional and cond is not None:
      raise ValueError("cond was given, but this layer was built with "
                       "conditional=False")
    if cond is not None and (cond.ndim != 2 or cond.shape[0] != x.shape[0]):
      raise ValueError(f"cond has shape {tuple(cond.shape)}; expected "
                       f"[{x.shape[0]}, features] to match {name}")

  def _affine(self, made: MADE, x: Array, cond: Optional[Array]
              ) -> distrax.Bijector:
    """The elementwise map noise -> data given the preceding coordinates."""
    mu, raw = made(x, cond)
    alpha = self.max_log_scale * jnp.tanh(raw / self.max_log_scale)
    return distrax.Block(distrax.ScalarAffine(shift=mu, log_scale=alpha), 1)

  def _spline(self, made: MADE, x: Array, cond: Optional[Array]
              ) -> distrax.Bijector:
    """Noise -> data given the preceding coordinates: the inverse spline, so
    that data -> noise (the density) is the spline's forward."""
    params = jnp.stack(made(x, cond), axis=-1)  # [B, D, 3 * num_bins + 1]
    return distrax.Block(distrax.Inverse(
        spline.rational_quadratic(params, self.spline_bound)), 1)

  def _elementwise(self, made: MADE, x: Array, cond: Optional[Array]
                   ) -> distrax.Bijector:
    if self.transformer == "spline":
      return self._spline(made, x, cond)
    return self._affine(made, x, cond)

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    self._check(x, cond, "x")
    return self._elementwise(self.made, x, cond).inverse_and_log_det(x)

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    self._check(y, cond, "y")

    def step(made, carry, _):
      x, _ = carry
      x, logdet = self._elementwise(made, x, cond).forward_and_log_det(y)
      return (x, logdet), None

    passes = nn.scan(step, variable_broadcast="params",
                     split_rngs={"params": False}, length=y.shape[-1])
    init = (jnp.zeros_like(y), jnp.zeros(y.shape[:1], y.dtype))
    (x, logdet), _ = passes(self.made, init, None)
    return x, logdet
