"""Combinators: bijectors built from other bijectors (paper 1, Sec. 2.1, eq. 5).

A flow's transform q = q_m o ... o q_1 is assembled from these:
  * `Chain`: q_m o ... o q_1, passing `cond` to the layers built conditional.
  * `Repeat`: n copies of one step stacked with `nn.scan` (one trace and one
    compile for all n; parameters get a leading axis of size n).
  * `Flattened`: a vector bijector applied to flattened [B, D] events.
  * `alternating`: a `Chain` of layers of alternating parity, optionally
    scanned in pairs.
Log-dets add up: log|det dq/dx| = sum_l log|det dq_l/dh_{l-1}| (eq. 5).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from nbflows.bijectors import base

Array = jax.Array


class Chain(base.Bijector):
  """q = layers[-1] o ... o layers[0]; forward applies `layers[0]` first.

  A layer receives `cond` when it is conditional (`base.is_conditional`) and
  None otherwise, so unconditional layers (squeeze, ActNorm, preprocessing)
  can sit in a chain of conditional couplings. Log-dets add up.

  Attributes:
    layers: the bijectors, in the order the forward pass applies them.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from nbflows.bijectors import AffineCoupling, MLPCoupler
    >>> chain = Chain(tuple(
    ...     AffineCoupling(mask="half", parity=p, coupler=MLPCoupler((8,)))
    ...     for p in (0, 1)))
    >>> x = jnp.ones((3, 4))
    >>> params = chain.init(jax.random.key(0), x)
    >>> y, logdet = chain.apply(params, x, method="forward")
    >>> logdet.shape
    (3,)
  """
  layers: Sequence[nn.Module] = ()

  @property
  def conditional(self) -> bool:
    return any(base.is_conditional(layer) for layer in self.layers)

  def _check(self, cond: Optional[Array]) -> None:
    if cond is not None and not self.conditional:
      raise ValueError("cond was given, but no layer of this chain is "
                       "conditional")

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    self._check(cond)
    logdet = base.zeros_logdet(x)
    for layer in self.layers:
      layer_cond = cond if base.is_conditional(layer) else None
      x, layer_logdet = layer.forward(x, layer_cond)
      logdet = logdet + layer_logdet
    return x, logdet

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    self._check(cond)
    logdet = base.zeros_logdet(y)
    for layer in reversed(self.layers):
      layer_cond = cond if base.is_conditional(layer) else None
      y, layer_logdet = layer.inverse(y, layer_cond)
      logdet = logdet + layer_logdet
    return y, logdet


class Repeat(base.Bijector):
  """`length` copies of `step`, each with its own parameters, via `nn.scan`.

  The step is traced once, not `length` times, which is what keeps the
  compile time of deep flows down; its parameters carry a leading axis of
  size `length`. The inverse scans the same parameters in reverse order.
  `cond` is broadcast to every copy. Data-dependent initialisation (ActNorm)
  works inside the scan: each copy is initialised on its own input.

  When to use it. Measured on 2 CPU cores (jax 0.10.2), compile time of the
  jitted value-and-gradient of the loss, unrolled vs scanned: MLP couplings,
  8 layers 4.9 s vs 5.5 s, 32 layers 19.3 s vs 4.5 s (step 26 vs 37 ms);
  Glow on 8x8 digits, K = 8 steps per scale, 27 s vs 16 s. But XLA:CPU runs
  the gradient of a convolution inside a loop far slower (jax-ml/jax#12868):
  that Glow's step took 0.18 s unrolled and 1.37 s scanned, the default 8x8
  RealNVP's 0.15 s vs 5.0 s. So the model factories take ``scan=False`` by
  default; scan deep MLP stacks, or conv stacks off the CPU.

  Attributes:
    step: the bijector to repeat (e.g. a `Chain` of two couplings with
      opposite parities, or a Glow step).
    length: the number of copies, >= 1.
  """
  step: nn.Module = None
  length: int = 1

  @property
  def conditional(self) -> bool:
    return base.is_conditional(self.step)

  def _scan(self, method: str, x: Array, cond: Optional[Array]):
    if self.length < 1:
      raise ValueError(f"length={self.length}; expected >= 1")
    if cond is not None and not self.conditional:
      raise ValueError("cond was given, but the repeated step is not "
                       "conditional")

    def body(step, carry, cond):
      return getattr(step, method)(carry, cond)

    scanned = nn.scan(body, variable_axes={"params": 0},
                      split_rngs={"params": True}, in_axes=nn.broadcast,
                      length=self.length, reverse=method == "inverse")
    y, logdets = scanned(self.step, x, cond)  # logdets: [length, B]
    return y, jnp.sum(logdets, axis=0)

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._scan("forward", x, cond)

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._scan("inverse", y, cond)


class Flattened(base.Bijector):
  """Applies a vector bijector to [B, *event] arrays flattened to [B, D].

  Forward: y = reshape(inner(reshape(x, [B, D])), x.shape); a reshape only
  relabels coordinates, so log|det| is the inner bijector's. This lets
  the vector flows (MAF, MLP couplings) model images as D-vectors while z
  keeps the shape of x.

  Attributes:
    inner: a bijector on [B, D].
  """
  inner: nn.Module = None

  @property
  def conditional(self) -> bool:
    return base.is_conditional(self.inner)

  def _apply(self, method: str, x: Array, cond: Optional[Array]
             ) -> Tuple[Array, Array]:
    y, logdet = getattr(self.inner, method)(x.reshape(x.shape[0], -1), cond)
    return y.reshape(x.shape), logdet

  def forward(self, x: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._apply("forward", x, cond)

  def inverse(self, y: Array, cond: Optional[Array] = None
              ) -> Tuple[Array, Array]:
    return self._apply("inverse", y, cond)


def alternating(num_layers: int, make_layer: Callable[[int], nn.Module],
                scan: bool) -> Chain:
  """`num_layers` layers `make_layer(0), make_layer(1), make_layer(0), ...`

  The alternation is the parity of a coupling's mask or the direction of an
  autoregressive order. With ``scan=True`` the layers are grouped in pairs
  (`make_layer(0)`, `make_layer(1)`), identical up to parameters, and the
  pairs are stacked with `Repeat` (`nn.scan`); an odd count ends with one
  more `make_layer(0)`. The layers and their order are the same either way;
  only the parameter tree differs (scanned parameters carry a leading axis).

  Args:
    num_layers: the number of layers, >= 1.
    make_layer: returns a fresh layer of the given parity (0 or 1).
    scan: stack pairs with `nn.scan` rather than unrolling.

  Returns:
    A `Chain` of the layers.

  Raises:
    ValueError: if `num_layers` < 1.
  """
  if num_layers < 1:
    raise ValueError(f"num_layers={num_layers}; expected >= 1")
  if scan and num_layers >= 2:
    pair = Chain((make_layer(0), make_layer(1)))
    layers = [Repeat(step=pair, length=num_layers // 2)]
    if num_layers % 2:
      layers.append(make_layer(0))
  else:
    layers = [make_layer(i % 2) for i in range(num_layers)]
  return Chain(tuple(layers))
