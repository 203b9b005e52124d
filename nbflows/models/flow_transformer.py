"""Which elementwise map a flow's layers use: `config.flow.transformer`.

A coupling layer (RealNVP, paper 1 eq. 6) and an autoregressive layer (MAF)
each move the transformed dimensions by an elementwise bijection whose
parameters a network computes, the "transformer": "affine" (shift and
bounded log-scale: `coupling.AffineCoupling`, `made.MaskedAutoregressive`)
or "spline" (a rational-quadratic spline on [-spline_bound, spline_bound]
with `num_bins` bins, the identity outside: Durkan et al. 2019, Sec. 3,
`spline_coupling.RationalQuadraticSplineCoupling` and
``MaskedAutoregressive(transformer="spline")``). The builders of "rnvp",
"rnvp_mlp" and "maf" read it from config.flow.{transformer, num_bins,
spline_bound}; for any other model `check_model` makes a transformer other
than "affine" an error rather than a setting silently ignored.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import ml_collections

from nbflows import config_fields
from nbflows.bijectors import coupling
from nbflows.bijectors import made
from nbflows.bijectors import spline
from nbflows.bijectors import spline_coupling

TRANSFORMERS = made.TRANSFORMERS      # ("affine", "spline")
MODELS = ("rnvp", "rnvp_mlp", "maf")  # the models whose builders read it


@dataclasses.dataclass(frozen=True)
class Transformer:
  """The transformer of a flow's layers and its settings.

  Attributes:
    kind: "affine" or "spline".
    num_bins: the spline's bins (spline only).
    bound: the spline acts on [-bound, bound] (spline only).

  Example:
    >>> Transformer("spline", num_bins=4).outputs_per_channel
    13
    >>> Transformer("cubic")
    Traceback (most recent call last):
    ...
    ValueError: transformer='cubic'; expected one of ('affine', 'spline')
  """
  kind: str = "affine"
  num_bins: int = 8
  bound: float = 3.0

  def __post_init__(self):
    if self.kind not in TRANSFORMERS:
      raise ValueError(f"transformer={self.kind!r}; expected one of "
                       f"{TRANSFORMERS}")
    spline.check_settings(self.num_bins, self.bound)

  @property
  def outputs_per_channel(self) -> int:
    """Coupler outputs per transformed channel (2 for shift and log-scale)."""
    if self.kind == "spline":
      return spline.num_params(self.num_bins)
    return 2

  def coupling(self, **attributes) -> coupling.Coupling:
    """A coupling layer with this transformer (`coupling.Coupling`'s
    attributes: mask, parity, coupler, conditional)."""
    if self.kind == "spline":
      return spline_coupling.RationalQuadraticSplineCoupling(
          num_bins=self.num_bins, bound=self.bound, **attributes)
    return coupling.AffineCoupling(**attributes)

  def autoregressive(self, **attributes) -> made.MaskedAutoregressive:
    """A MAF layer with this transformer (hidden, order, conditional, ...)."""
    return made.MaskedAutoregressive(
        transformer=self.kind, num_bins=self.num_bins,
        spline_bound=self.bound, **attributes)


AFFINE = Transformer()


def _fields(config: ml_collections.ConfigDict) -> Tuple[str, int, float]:
  """(transformer, num_bins, spline_bound); a run saved before these fields
  existed (its config.json) had affine layers."""
  flow = config.flow
  return (flow.get("transformer", AFFINE.kind),
          flow.get("num_bins", AFFINE.num_bins),
          flow.get("spline_bound", AFFINE.bound))


def from_config(config: ml_collections.ConfigDict) -> Transformer:
  """config.flow.{transformer, num_bins, spline_bound} as a `Transformer`.

  Raises:
    ConfigError: (a ValueError) naming the field for an unknown transformer
      or bad spline settings.
  """
  try:
    return Transformer(*_fields(config))
  except ValueError as error:
    raise config_fields.ConfigError(
        f"config.flow.transformer / num_bins / spline_bound: {error}"
    ) from None


def validate(config: ml_collections.ConfigDict) -> None:
  """`from_config` and `check_model`: the checks `train.loop.trainer` runs
  before it touches a workdir.

  Raises:
    ConfigError: (a ValueError) naming the field.
  """
  from_config(config)
  check_model(config)


def check_model(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError if config.flow.transformer is not "affine" for a
  model whose builder does not read it (`MODELS` do)."""
  kind = _fields(config)[0]
  if config.model not in MODELS and kind != "affine":
    raise config_fields.ConfigError(
        f"config.flow.transformer={kind!r}, but model "
        f"{config.model!r} has affine layers only; the transformer is read "
        f"by {', '.join(MODELS)}")
