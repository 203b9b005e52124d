"""The models and train steps that `train.benchmark` times.

Two kinds:
  * the peer architectures of ``../shared/bench/torch_realnvp.py``, built
    from nbflows' bijectors (`arch_flow`): "conv" is 8 checkerboard affine
    couplings of [B, 28, 28, 1] images with `ConvCoupler(hidden=32,
    num_blocks=2)`, "mlp" is 8 half-mask affine couplings of [B, 64] vectors
    with `MLPCoupler((256, 256))`; standard normal prior, Adam(1e-3), batch
    64 and 256. Two differences from the peer: nbflows' `AffineCoupling`
    multiplies tanh(raw) by a learned per-channel factor (initialised to
    one), one parameter per transformed channel (8 in all for conv, 256
    for mlp) and one multiply per transformed element, next to the
    coupler's 59 MFLOP (conv) or 0.18 MFLOP (mlp) per image and layer; and
    the mlp couplings split x (`distrax.SplitCoupling`), so each coupler is
    32 -> 256 -> 256 -> 64, where the peer's 64 -> 256 -> 256 -> 128 gets
    32 zeroed inputs and has 64 of its outputs discarded. The weights on
    those never receive a gradient, so both train the same function of x
    (90,688 against 115,328 parameters per coupler, 21% fewer FLOPs).
  * the library's own models from `configs/` (`config_model`), trained by
    `train.loop.trainer.make_train_step`, on random batches in data units of the
    dataset's shape (throughput does not depend on the pixel values).
"""
from __future__ import annotations

import functools
import importlib
import math
from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nbflows.bijectors import combinators
from nbflows.bijectors import couplers
from nbflows.bijectors import coupling
from nbflows.distributions import gaussian
from nbflows.models import registry

ARCHS = ("conv", "mlp")
BATCH = {"conv": (64, 28, 28, 1), "mlp": (256, 64)}


def arch_flow(arch: str, num_layers: int = 8, scan: bool = False,
              conv_impl: str = "xla") -> combinators.Chain:
  """The peer's RealNVP transform (see the module docstring).

  Args:
    arch: "conv" or "mlp".
    num_layers: the number of couplings (8 in the peer).
    scan: stack pairs of couplings with `nn.scan` (`combinators.alternating`).
    conv_impl: the conv couplers' `ConvCoupler.conv_impl` ("xla" or
      "im2col"; the parameters are the same either way).

  Returns:
    A `combinators.Chain` mapping x to z, with forward(x) = (z, log|det dz/dx|).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> chain = arch_flow("mlp", num_layers=2)
    >>> x = jnp.ones((3, 64))
    >>> z, logdet = chain.apply(chain.init(jax.random.key(0), x), x)
    >>> bool(jnp.allclose(z, x)), logdet.shape   # identity at init
    (True, (3,))
  """
  if arch not in ARCHS:
    raise ValueError(f"arch={arch!r}; expected one of {ARCHS}")
  if arch == "conv":
    def make(parity: int) -> coupling.AffineCoupling:
      return coupling.AffineCoupling(
          mask="checkerboard", parity=parity,
          coupler=couplers.ConvCoupler(hidden=32, num_blocks=2,
                                       conv_impl=conv_impl))
  else:
    def make(parity: int) -> coupling.AffineCoupling:
      return coupling.AffineCoupling(
          mask="half", parity=parity,
          coupler=couplers.MLPCoupler(hidden=(256, 256)))
  return combinators.alternating(num_layers, make, scan)


def arch_log_prob(chain: combinators.Chain, params: Any,
                  x: jax.Array) -> jax.Array:
  """log p(x) in nats, [B]: standard normal prior plus the flow's log-det."""
  z, logdet = chain.apply(params, x, method="forward")
  return gaussian.standard_normal_log_prob(z) + logdet


def arch_train_step(chain: combinators.Chain, learning_rate: float = 1e-3
                    ) -> Tuple[optax.GradientTransformation, Callable]:
  """Adam on the mean negative log-likelihood, jitted with donated state.

  Returns:
    (optimizer, step) with `step(params, opt_state, x) -> (params,
    opt_state, loss)`; params and opt_state are donated.
  """
  optimizer = optax.adam(learning_rate)

  def loss_fn(params, x):
    return -jnp.mean(arch_log_prob(chain, params, x))

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, x):
    loss, grads = jax.value_and_grad(loss_fn)(params, x)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return optimizer, step


def arch_batches(arch: str, num: int = 4, batch: int = 0) -> list:
  """`num` standard normal batches of the arch's shape (the peer uses 4)."""
  shape = BATCH[arch] if not batch else (batch, *BATCH[arch][1:])
  rng = np.random.default_rng(0)
  return [jnp.asarray(rng.standard_normal(shape), jnp.float32)
          for _ in range(num)]


def load_config(model: str, data: str, quick: bool
                ) -> ml_collections.ConfigDict:
  """`configs/{model}_{data}.py`'s config (`get_config("quick")` if quick).

  Where there is no such file (e.g. rnvp_mnist5k), `configs/{model}_digits.py`
  with `dataset` set to `data`.

  Raises:
    ValueError: if neither config file exists.
  """
  arg = "quick" if quick else None
  for name in (f"configs.{model}_{data}", f"configs.{model}_digits"):
    try:
      config = importlib.import_module(name).get_config(arg)
    except ModuleNotFoundError:
      continue
    with config.unlocked():
      config.dataset = data
    return config
  raise ValueError(f"no config configs/{model}_{data}.py or "
                   f"configs/{model}_digits.py for model {model!r}")


def random_batch(config: ml_collections.ConfigDict, batch_size: int,
                 seed: int = 0) -> Dict[str, jax.Array]:
  """A batch of uniform random images in data units for `config`'s model.

  Has "x" [B, H, W, C] and, for neighbourhood models, "neighbours"
  [B, k, H, W, C] (k = config.neighbours.k) and "label" [B].
  """
  model = registry.build_model(config)
  rng = np.random.default_rng(seed)
  levels = model.num_levels or 1

  def images(*lead: int) -> jax.Array:
    return jnp.asarray(rng.integers(0, levels, (*lead, *model.event_shape)),
                       jnp.float32)

  batch = {"x": images(batch_size),
           "label": jnp.asarray(rng.integers(0, 10, batch_size), jnp.int32)}
  if model.condition_kind == "neighbours":
    batch["neighbours"] = images(batch_size, config.neighbours.k)
  return batch


def conv_flops_per_image(num_layers: int = 8) -> float:
  """Forward multiply-adds x 2 of the conv arch's couplers, per image.

  Per coupling: conv3x3 1->32, four conv3x3 32->32, conv3x3 32->2 over
  28 x 28 pixels. Training costs about three times the forward pass (the
  backward computes the gradients of both the input and the weights).
  """
  pixels = 28 * 28
  per_layer = 9 * pixels * (1 * 32 + 4 * 32 * 32 + 32 * 2)
  return 2.0 * per_layer * num_layers


def mlp_flops_per_image(num_layers: int = 8) -> float:
  """Forward multiply-adds x 2 of the mlp arch's couplers, per example (the
  split couplers: 32 -> 256 -> 256 -> 64)."""
  return 2.0 * num_layers * (32 * 256 + 256 * 256 + 256 * 64)


def config_flops_per_image(model: Any, params: Any, batch: Dict) -> float:
  """Forward FLOPs per image of `model.log_prob`, from XLA's cost analysis."""
  x, cond = batch["x"], model.condition(batch)
  lowered = jax.jit(model.log_prob).lower(params, x, cond)
  cost = lowered.compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  flops = float((cost or {}).get("flops", math.nan))
  return flops / x.shape[0]
