"""One parametrised suite that runs every bijector through the contract.

Every entry of `CASES` goes through: output shapes; the round trip
``inverse(forward(x)) == x``; ``logdet_inverse == -logdet_forward``; the
log-det against ``slogdet(jax.jacfwd(forward))``; jitted against eager;
batched against per-example (each example alone, as a batch of one, gives
the same result, and the batch Jacobian has no cross-example blocks);
identity at initialisation (where the case says the layer is built to be);
and invalid input raising ``ValueError`` that names the problem.

All checks but the identity one run on randomly *perturbed* parameters, so a
zero-initialised layer (the identity, log-det 0) cannot pass them trivially.

To cover a new layer, append a `Case` to `CASES` below (keep shapes tiny:
every case costs compile time).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nbflows import bijectors
from nbflows.bijectors import made as made_lib
from nbflows.bijectors import multiscale

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

Array = jax.Array
Shape = Tuple[int, ...]
IMAGE = (2, 4, 4, 2)      # [B, H, W, C]: 32 dims per example
VECTOR = (2, 5)           # [B, D]


def normal(key: Array, shape: Shape) -> Array:
  return jax.random.normal(key, shape)


def shifted_normal(key: Array, shape: Shape) -> Array:
  """Not standardised: mean 3, std 2 (so ActNorm's init does something)."""
  return 3.0 + 2.0 * jax.random.normal(key, shape)


def standardised(key: Array, shape: Shape) -> Array:
  """Exactly zero mean and unit variance per channel (last axis)."""
  x = jax.random.normal(key, shape)
  axes = tuple(range(x.ndim - 1))
  return (x - x.mean(axes)) / x.std(axes)


def unit_interval(key: Array, shape: Shape) -> Array:
  return jax.random.uniform(key, shape, minval=0.01, maxval=0.99)


def data_units(key: Array, shape: Shape) -> Array:
  return jax.random.uniform(key, shape, minval=0.0, maxval=255.99)


@dataclasses.dataclass(frozen=True)
class BadInput:
  """An invalid input: `transform(x, cond) -> (x, cond)` must raise."""
  what: str
  transform: Callable[[Array, Optional[Array]], Tuple[Array, Optional[Array]]]
  match: str           # regex the ValueError's message must match


EXTRA_AXIS = BadInput("extra axis", lambda x, c: (x[..., None], c), "shape")
NO_BATCH_AXIS = BadInput("no batch axis",
                         lambda x, c: (x.reshape(-1), c), "shape")


@dataclasses.dataclass(frozen=True)
class Case:
  """One bijector configuration run through the whole suite.

  Attributes:
    name: the test id.
    make: builds the (unbound) layer.
    x_shape: input shape, batch first.
    y_shape: forward output shape (defaults to `x_shape`).
    cond_shape: condition shape, batch first, or None if unconditional; a
      dict of shapes for a dict cond (each part drawn N(0, 1)).
    sample: draws valid inputs, `sample(key, shape)`.
    identity_at_init: the layer is built to be the identity at init on
      inputs from `sample`.
    bad_inputs: invalid inputs (beyond the generic cond checks).
    checks_finite: "init" if initialising on NaN input must raise, "apply"
      if the forward pass itself must raise too, None if neither.
    perturb_scale: std of the noise added to every parameter.
  """
  name: str
  make: Callable[[], nn.Module]
  x_shape: Shape
  y_shape: Optional[Shape] = None
  cond_shape: Optional[Shape] = None
  sample: Callable[[Array, Shape], Array] = normal
  identity_at_init: bool = False
  bad_inputs: Sequence[BadInput] = (EXTRA_AXIS,)
  checks_finite: Optional[str] = None
  perturb_scale: float = 0.1


def _coupling_cases() -> list[Case]:
  conv = functools.partial(bijectors.ConvCoupler, hidden=8, num_blocks=1)
  mlp = functools.partial(bijectors.MLPCoupler, hidden=(16,))
  # name -> (mask, coupler, x shape, cond shape for "concat", for
  # "project"); image conditions are resized (concat) or flattened
  # (project), vectors broadcast. An odd D is masked, an even one split.
  layouts = {
      "checkerboard": ("checkerboard", conv, IMAGE, (2, 2, 2, 1), (2, 3)),
      "channel": ("channel", conv, IMAGE, (2, 3), (2, 4, 4, 1)),
      "half": ("half", mlp, VECTOR, (2, 3), (2, 3)),
      "half-split": ("half", mlp, (2, 6), (2, 3), (2, 3)),
  }
  cases = []
  for name, (mask, coupler, x_shape, concat_cond,
             project_cond) in layouts.items():
    for parity in (0, 1):
      cases.append(Case(
          f"coupling-{name}-parity{parity}",
          functools.partial(bijectors.AffineCoupling, mask=mask, parity=parity,
                            coupler=coupler()),
          x_shape, identity_at_init=True))
    for mode, cond_shape in (("concat", concat_cond),
                             ("project", project_cond)):
      cases.append(Case(
          f"coupling-{name}-{mode}-cond{len(cond_shape) - 1}d",
          functools.partial(bijectors.AffineCoupling, mask=mask,
                            coupler=coupler(cond_mode=mode), conditional=True),
          x_shape, cond_shape=cond_shape, identity_at_init=True))
  return cases


CASES: list[Case] = _coupling_cases() + [
    Case("squeeze", bijectors.Squeeze, IMAGE, y_shape=(2, 2, 2, 8),
         bad_inputs=(EXTRA_AXIS,
                     BadInput("odd height", lambda x, c: (x[:, :3], c),
                              "even"))),
    Case("rescale-image", functools.partial(bijectors.Rescale, num_levels=256),
         IMAGE, sample=data_units, checks_finite="apply",
         bad_inputs=(NO_BATCH_AXIS,
                     BadInput("value above range",
                              lambda x, c: (x.at[0, 0].set(256.0), c),
                              r"outside \[0, 256\)"),
                     BadInput("negative value",
                              lambda x, c: (x.at[0, 0].set(-0.5), c),
                              r"outside \[0, 256\)"))),
    Case("rescale-vector", functools.partial(bijectors.Rescale, num_levels=4),
         VECTOR, sample=lambda k, s: 4 * unit_interval(k, s),
         checks_finite="apply", bad_inputs=(NO_BATCH_AXIS,)),
    Case("logit-image", functools.partial(bijectors.Logit, alpha=0.05), IMAGE,
         sample=unit_interval, checks_finite="apply",
         bad_inputs=(NO_BATCH_AXIS,
                     BadInput("value above 1",
                              lambda x, c: (x.at[0, 0].set(1.5), c),
                              r"outside \[0, 1\]"))),
    Case("logit-alpha0", functools.partial(bijectors.Logit, alpha=0.0), VECTOR,
         sample=unit_interval, checks_finite="apply",
         bad_inputs=(NO_BATCH_AXIS,)),
    Case("actnorm-image", bijectors.ActNorm, IMAGE, sample=shifted_normal,
         checks_finite="init",
         bad_inputs=(BadInput("wrong channels",
                              lambda x, c: (x[..., :1], c), "channels"),)),
    Case("actnorm-standardised", bijectors.ActNorm, IMAGE, sample=standardised,
         identity_at_init=True, checks_finite="init"),
    Case("actnorm-vector", bijectors.ActNorm, VECTOR, sample=shifted_normal,
         checks_finite="init"),
    Case("conv1x1-image", bijectors.Conv1x1, IMAGE,
         bad_inputs=(BadInput("wrong channels",
                              lambda x, c: (x[..., :1], c), "channels"),)),
    Case("conv1x1-vector",
         functools.partial(bijectors.Conv1x1, permutation_seed=3), VECTOR),
] + [
    Case(f"maf-{order}",
         functools.partial(bijectors.MaskedAutoregressive, hidden=(16, 16),
                           order=order),
         VECTOR, identity_at_init=True,
         bad_inputs=(EXTRA_AXIS,
                     BadInput("wrong features",
                              lambda x, c: (x[:, :3], c), "features")))
    for order in made_lib.ORDERS
] + [
    Case("maf-conditional",
         functools.partial(bijectors.MaskedAutoregressive, hidden=(16,),
                           order="reversed", conditional=True),
         VECTOR, cond_shape=(2, 3), identity_at_init=True,
         bad_inputs=(EXTRA_AXIS,
                     BadInput("cond of wrong rank",
                              lambda x, c: (x, c[..., None]), "cond has shape"),
                     BadInput("cond of wrong width", lambda x, c: (x, c[:, :2]),
                              "cond has 2 features"))),
]

# Combinators: a vector coupling on flattened images (the reshape takes any
# rank, so no bad input beyond the generic ones), and a scanned pair of
# conditional couplings (cond broadcast to both copies).
def _half_coupling(parity: int, cond_mode: Optional[str] = None):
  return bijectors.AffineCoupling(
      mask="half", parity=parity, conditional=cond_mode is not None,
      coupler=bijectors.MLPCoupler(hidden=(16,), cond_mode=cond_mode))


CASES += [
    Case("flattened-coupling",
         lambda: bijectors.Flattened(inner=_half_coupling(0)), IMAGE,
         identity_at_init=True, bad_inputs=()),
    Case("repeat-conditional-pair",
         lambda: bijectors.Repeat(
             step=bijectors.Chain((_half_coupling(0, "concat"),
                                   _half_coupling(1, "concat"))), length=2),
         VECTOR, cond_shape=(2, 3), identity_at_init=True),
]

# LGF (paper 2, eq. 6): G(x; u) = exp(s(u)) * g(x) + t(u), u as the condition.
from nbflows.bijectors import lgf as lgf_lib  # noqa: E402

CASES += [
    Case("lgf-vector-identity-g",
         functools.partial(lgf_lib.LocalisedAffine, u_shape=(3,), hidden=(8,)),
         VECTOR, cond_shape=(2, 3), identity_at_init=True),
    Case("lgf-vector-maf",
         functools.partial(lgf_lib.LocalisedAffine, u_shape=(1,), hidden=(8,),
                           inner=bijectors.MaskedAutoregressive(hidden=(16,))),
         VECTOR, cond_shape=(2, 1), identity_at_init=True),
    Case("lgf-image-coupling",
         functools.partial(
             lgf_lib.LocalisedAffine, u_shape=(4, 4, 1), hidden=(4,),
             inner=bijectors.AffineCoupling(
                 mask="checkerboard",
                 coupler=bijectors.ConvCoupler(hidden=8, num_blocks=1))),
         IMAGE, cond_shape=(2, 4, 4, 1), identity_at_init=True,
         bad_inputs=(EXTRA_AXIS,
                     BadInput("u of another spatial size",
                              lambda x, c: (x, c[:, :2, :2]), "cond has shape"))),
]

# Neighbourhood flows (paper 1): cond is a neighbourhood of k = 3 images
# [B, k, H, W, C] per example. NCL: q then eq. 9 (and the eq. 9 head alone,
# whose cond is the neighbours' latents), with App. B.1's concatenating
# g_mu, g_sigma and with NCL-pool's; NCT: eq. 8 couplings on two scales,
# given the concatenated neighbours and given NCT-pool's summary. The
# concatenating forms take only the k they were built for.
from nbflows.bijectors import ncl as ncl_lib  # noqa: E402
from nbflows.bijectors import nct as nct_lib  # noqa: E402
from nbflows.bijectors import neighbourhood  # noqa: E402

NEIGHBOURHOOD = (2, 3, 4, 4, 2)


def _coupling(mask: str, parity: int, conditional: bool):
  return bijectors.AffineCoupling(
      mask=mask, parity=parity, conditional=conditional,
      coupler=bijectors.ConvCoupler(
          hidden=8, num_blocks=1, cond_mode="concat" if conditional else None))


def _nct_scales() -> bijectors.MultiScale:
  return bijectors.MultiScale(
      before=bijectors.Chain((_coupling("checkerboard", 0, True),)),
      squeeze=True, after=bijectors.Chain((_coupling("channel", 0, True),)),
      inner=bijectors.MultiScale(
          before=bijectors.Chain((_coupling("checkerboard", 1, True),))))


ANOTHER_K = BadInput("another k", lambda x, c: (x, c[:, :2]),
                     r"k = 2 neighbours.*built for k = 3")


def _ncl_head(form: str) -> ncl_lib.NeighbourhoodAffine:
  return ncl_lib.NeighbourhoodAffine(
      hidden=8, form=form, num_neighbours=3 if form == "concat" else None)


def _ncl_transform(form: str) -> ncl_lib.NCLTransform:
  return ncl_lib.NCLTransform(
      transform=bijectors.Chain((_coupling("checkerboard", 0, False),
                                 _coupling("checkerboard", 1, False))),
      head=_ncl_head(form))


def _nct_transform(condition: str) -> nct_lib.NCTTransform:
  return nct_lib.NCTTransform(
      transform=_nct_scales(), condition=condition,
      num_neighbours=3 if condition == "concat" else None)


CASES += [
    Case(f"{name}-{form}", functools.partial(make, form), IMAGE,
         cond_shape=NEIGHBOURHOOD, identity_at_init=True,
         bad_inputs=(EXTRA_AXIS, ANOTHER_K) if form == "concat" else
         (EXTRA_AXIS,))
    for name, make in (("ncl-head", _ncl_head),
                       ("ncl-transform", _ncl_transform),
                       ("nct", _nct_transform))
    for form in neighbourhood.FORMS
]


# Context vectors (condition_kind="context"): cond is c [B, 3], handed by
# `ContextConditioned` to RealNVP couplings on vectors, to both scales of a
# multi-scale image flow (concatenated, broadcast over space) and to MAF
# layers; it must be a finite float [B, 3].
def _context_cases() -> list[Case]:
  context_bad_inputs = (
      BadInput("context of another width", lambda x, c: (x, c[:, :2]),
               r"cond has shape \(2, 2\).*\[2, 3\]"),
      BadInput("integer context", lambda x, c: (x, c.astype(jnp.int32)),
               "dtype int32; expected a float context"),
      BadInput("NaN context", lambda x, c: (x, c.at[0, 0].set(jnp.nan)),
               "NaN"))
  transforms = {
      "coupling-vector": (lambda: bijectors.Chain(
          (_half_coupling(0, "concat"), _half_coupling(1, "project"))),
                          VECTOR),
      "coupling-image": (_nct_scales, IMAGE),
      "maf": (lambda: bijectors.Chain(tuple(
          bijectors.MaskedAutoregressive(hidden=(16,), order=order,
                                         conditional=True)
          for order in ("forward", "reversed"))), VECTOR),
  }
  return [Case(f"context-{name}",
               functools.partial(lambda make: bijectors.ContextConditioned(
                   transform=make(), context_dim=3), make),
               x_shape, cond_shape=(2, 3), identity_at_init=True,
               bad_inputs=(EXTRA_AXIS,) + context_bad_inputs)
          for name, (make, x_shape) in transforms.items()]


CONTEXT_CASES = _context_cases()
CASES += CONTEXT_CASES


# Rational-quadratic splines (Durkan et al. 2019): couplings on images
# (checkerboard, channel: distrax's MaskedCoupling) and vectors (even D,
# SplitCoupling; an unconditional one is in tests/test_density_2d.py), MAF
# layers, conditional or not. The vector coupling transforms 5 of its 10
# dimensions, as the MAF cases do, so the eager passes share the splines'
# compiled operations. The spline acts on [-1, 1], so about a third
# of the standard-normal inputs (and of the round trip's outputs) lie
# outside it, where the map is the identity.
from nbflows.bijectors import spline as spline_lib  # noqa: E402
from nbflows.bijectors import spline_coupling  # noqa: E402

SPLINE_BINS, SPLINE_BOUND = 4, 1.0
SPLINE_OUTPUTS = spline_lib.num_params(SPLINE_BINS)


def _spline_coupling(mask: str, parity: int, cond_mode: Optional[str]):
  if mask == "half":
    coupler = bijectors.MLPCoupler(hidden=(16,), cond_mode=cond_mode,
                                   outputs_per_channel=SPLINE_OUTPUTS)
  else:
    coupler = bijectors.ConvCoupler(hidden=8, num_blocks=1,
                                    cond_mode=cond_mode,
                                    outputs_per_channel=SPLINE_OUTPUTS)
  return spline_coupling.RationalQuadraticSplineCoupling(
      mask=mask, parity=parity, coupler=coupler,
      conditional=cond_mode is not None, num_bins=SPLINE_BINS,
      bound=SPLINE_BOUND)


SPLINE_CASES = [
    Case("spline-coupling-checkerboard",
         functools.partial(_spline_coupling, "checkerboard", 0, None), IMAGE,
         identity_at_init=True),
    Case("spline-coupling-channel-concat-cond1d",
         functools.partial(_spline_coupling, "channel", 1, "concat"), IMAGE,
         cond_shape=(2, 3), identity_at_init=True),
    Case("spline-coupling-half-split-concat-cond1d",
         functools.partial(_spline_coupling, "half", 0, "concat"), (2, 10),
         cond_shape=(2, 3), identity_at_init=True),
    Case("spline-maf",
         functools.partial(bijectors.MaskedAutoregressive, hidden=(16,),
                           transformer="spline", num_bins=SPLINE_BINS,
                           spline_bound=SPLINE_BOUND),
         VECTOR, identity_at_init=True,
         bad_inputs=(EXTRA_AXIS,
                     BadInput("wrong features",
                              lambda x, c: (x[:, :3], c), "features"))),
    Case("spline-maf-conditional",
         functools.partial(bijectors.MaskedAutoregressive, hidden=(16,),
                           order="reversed", conditional=True,
                           transformer="spline", num_bins=SPLINE_BINS,
                           spline_bound=SPLINE_BOUND),
         VECTOR, cond_shape=(2, 3), identity_at_init=True),
]
CASES += SPLINE_CASES


# NCL and NCT given a context vector with their neighbours
# (config.context.dim = 3): cond is {"neighbours": [B, k, H, W, C],
# "context": [B, 3]}; the context joins NCL's g_mu / g_sigma features and
# NCT's per-scale conditions, broadcast over space.
def _neighbour_context_cases() -> list[Case]:
  def ncl():
    return ncl_lib.NCLTransform(
        transform=bijectors.Chain((_coupling("checkerboard", 0, False),
                                   _coupling("checkerboard", 1, False))),
        head=ncl_lib.NeighbourhoodAffine(hidden=8, num_neighbours=3,
                                         context_dim=3))

  def nct():
    return nct_lib.NCTTransform(transform=_nct_scales(), num_neighbours=3,
                                context_dim=3)

  def replaced(key, change):
    return lambda x, c: (x, {**c, key: change(c[key])})

  bad_inputs = (
      EXTRA_AXIS,
      BadInput("another k", replaced("neighbours", lambda n: n[:, :2]),
               r"cond\['neighbours'\] has shape.*built for k = 3"),
      BadInput("no context", lambda x, c: (x, {"neighbours": c["neighbours"]}),
               r"cond is a dict with keys \['neighbours'\]; expected "
               r"\{\"neighbours\""),
      BadInput("bare neighbours", lambda x, c: (x, c["neighbours"]),
               "cond is of type"),
      BadInput("context of another width",
               replaced("context", lambda c: c[:, :2]),
               r"cond\['context'\] has shape \(2, 2\).*\[2, 3\]"),
      BadInput("NaN context",
               replaced("context", lambda c: c.at[0, 0].set(jnp.nan)), "NaN"))
  return [Case(f"{name}-context", make, IMAGE,
               cond_shape={"neighbours": NEIGHBOURHOOD, "context": (2, 3)},
               identity_at_init=True, bad_inputs=bad_inputs)
          for name, make in (("ncl-transform", ncl), ("nct", nct))]


NEIGHBOUR_CONTEXT_CASES = _neighbour_context_cases()
CASES += NEIGHBOUR_CONTEXT_CASES

IDS = [case.name for case in CASES]
assert len(set(IDS)) == len(IDS), "case names must be unique"


# --------------------------------------------------------------- helpers
# Compiling dominates the run time. Each case runs its layer op by op once
# (init and the round trip: JAX compiles each operation once per shape and
# reuses it across cases of the same shapes) and compiles one function that
# computes everything else (`compiled_results`); the tests share both through
# these caches.
def perturb(params, seed: int, scale: float):
  """Adds N(0, scale^2) noise (from numpy: nothing to compile) to every
  parameter."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda p: p + scale * rng.standard_normal(p.shape).astype(p.dtype),
      params)


def forward_fn(layer: nn.Module):
  return functools.partial(layer.apply, method="forward")


def inverse_fn(layer: nn.Module):
  return functools.partial(layer.apply, method="inverse")


def round_trip(layer: nn.Module, params, x: Array, cond: Optional[Array]):
  """(y, logdet, inverse(y), logdet of the inverse)."""
  y, logdet = forward_fn(layer)(params, x, cond)
  x_back, logdet_inv = inverse_fn(layer)(params, y, cond)
  return y, logdet, x_back, logdet_inv


def random_cond(key: Array, shape):
  """N(0, 1) of `shape`, or a dict of such arrays for a dict of shapes."""
  if isinstance(shape, dict):
    keys = jax.random.split(key, len(shape))
    return {part: jax.random.normal(k, shape[part])
            for k, part in zip(keys, sorted(shape))}
  return jax.random.normal(key, shape)


@functools.cache
def setup_case(name: str, perturbed: bool = True):
  """(case, layer, params, x, cond); params perturbed unless asked."""
  if perturbed:
    case, layer, params, x, cond = setup_case(name, perturbed=False)
    return case, layer, perturb(params, 1, case.perturb_scale), x, cond
  case = CASES[IDS.index(name)]
  key_x, key_c, key_init = jax.random.split(jax.random.key(0), 3)
  layer = case.make()
  x = case.sample(key_x, case.x_shape)
  cond = (None if case.cond_shape is None
          else random_cond(key_c, case.cond_shape))
  params = layer.init(key_init, x, cond)
  return case, layer, params, x, cond


@functools.cache
def batched_results(name: str, perturbed: bool = True):
  """`round_trip` on the whole batch."""
  _, layer, params, x, cond = setup_case(name, perturbed)
  return round_trip(layer, params, x, cond)


@functools.cache
def compiled_results(name: str):
  """One jitted pass over a case's perturbed layer.

  Returns a dict with
    "batched": `round_trip` on the whole batch, jitted;
    "per_example": `round_trip` on each example alone (a batch of one, under
      `jax.vmap`), stacked;
    "jacobian": d forward(x) / d x of the whole batch, [B, n_out, B, n_in].
  """
  _, layer, params, x, cond = setup_case(name)

  def run(params, x, cond):
    def one(xi, ci):
      ci = jax.tree.map(lambda part: part[None], ci)   # also a dict cond
      return [r[0] for r in round_trip(layer, params, xi[None], ci)]

    def flat_forward(v):
      return forward_fn(layer)(params, v.reshape(x.shape), cond)[0].reshape(-1)

    b = x.shape[0]
    jacobian = jax.jacfwd(flat_forward)(x.reshape(-1))
    return {"batched": round_trip(layer, params, x, cond),
            "per_example": jax.vmap(one)(x, cond),
            "jacobian": jacobian.reshape(b, -1, b, x[0].size)}

  return jax.jit(run)(params, x, cond)


# ----------------------------------------------------------------- tests
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_shapes(case: Case):
  _, _, _, x, _ = setup_case(case.name)
  y, logdet, x_back, logdet_inv = batched_results(case.name)
  assert y.shape == (case.y_shape or case.x_shape)
  assert logdet.shape == logdet_inv.shape == (x.shape[0],)
  assert x_back.shape == x.shape


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_round_trip_and_negated_logdet(case: Case):
  _, _, _, x, _ = setup_case(case.name)
  y, logdet, x_back, logdet_inv = batched_results(case.name)
  np.testing.assert_allclose(x_back, x, atol=1e-5, rtol=0)
  np.testing.assert_allclose(logdet_inv, -logdet, rtol=1e-5, atol=1e-4)
  # Guard against a vacuous pass: perturbed layers really transform x
  # (Squeeze only reorders it).
  if case.name != "squeeze":
    assert float(jnp.max(jnp.abs(y - x.reshape(y.shape)))) > 1e-3


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_logdet_matches_jacobian(case: Case):
  _, logdet, _, _ = batched_results(case.name)
  jacobian = compiled_results(case.name)["jacobian"]
  for i in range(jacobian.shape[0]):
    sign, expected = jnp.linalg.slogdet(jacobian[i, :, i])
    assert sign != 0
    np.testing.assert_allclose(logdet[i], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jit_matches_eager(case: Case):
  jitted = compiled_results(case.name)["batched"]
  for a, b in zip(batched_results(case.name), jitted):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_batched_matches_per_example(case: Case):
  results = compiled_results(case.name)
  # y, logdet, x_back, logdet_inv
  for a, b in zip(results["batched"], results["per_example"]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
  # No example's output depends on another example's input.
  jacobian = np.array(results["jacobian"])
  for i in range(jacobian.shape[0]):
    jacobian[i, :, i] = 0.0
  np.testing.assert_array_equal(jacobian, 0.0)


@pytest.mark.parametrize("case", [c for c in CASES if c.identity_at_init],
                         ids=[c.name for c in CASES if c.identity_at_init])
def test_identity_at_init(case: Case):
  _, _, _, x, _ = setup_case(case.name, perturbed=False)
  y, logdet, x_back, logdet_inv = batched_results(case.name, perturbed=False)
  np.testing.assert_allclose(y, x, atol=1e-5)
  np.testing.assert_allclose(logdet, 0.0, atol=1e-4)
  # y == x, so x_back is the inverse applied to x itself.
  np.testing.assert_allclose(x_back, x, atol=1e-5)
  np.testing.assert_allclose(logdet_inv, 0.0, atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_invalid_input_raises(case: Case):
  _, layer, params, x, cond = setup_case(case.name)
  forward, inverse = forward_fn(layer), inverse_fn(layer)
  y = batched_results(case.name)[0]
  # Each check raises before any computation, so running eagerly is cheap.
  if cond is None:
    stray = jnp.zeros((x.shape[0], 3))
    for fn, inp in ((forward, x), (inverse, y)):
      with pytest.raises(ValueError, match="unconditional|conditional=False"):
        fn(params, inp, stray)
  else:
    for fn, inp in ((forward, x), (inverse, y)):
      with pytest.raises(ValueError, match="cond is missing"):
        fn(params, inp, None)
      with pytest.raises(ValueError, match=r"cond(\['\w+'\])? has"):
        # batch of 1 for a batch of 2 (every part of a dict cond)
        fn(params, inp, jax.tree.map(lambda part: part[:1], cond))
  for bad in case.bad_inputs:
    bad_x, bad_cond = bad.transform(x, cond)
    with pytest.raises(ValueError, match=bad.match):
      forward(params, bad_x, bad_cond)
  if case.checks_finite:
    for value in (jnp.nan, jnp.inf):
      bad_x = x.at[(0,) * x.ndim].set(value)
      with pytest.raises(ValueError, match="NaN|outside"):
        layer.init(jax.random.key(0), bad_x, cond)
      if case.checks_finite == "apply":
        with pytest.raises(ValueError, match="NaN|outside"):
          forward(params, bad_x, cond)


# ----------------------------------------------- layer-specific maths
@pytest.mark.parametrize("shape, realnvp, glow", [
    ((8, 8), 2, 2),        # digits: RealNVP 8 -> 4; Glow 8 -> 4 -> 2
    ((28, 28), 3, 2),      # MNIST: RealNVP 28 -> 14 -> 7; Glow 28 -> 14 -> 7
    ((32, 32), 4, 4),      # CIFAR-10: RealNVP 32 -> 16 -> 8 -> 4; Glow to 2
    ((64, 32), 4, 4),      # the smaller side decides
    ((4, 4), 1, 1),        # RealNVP: no squeeze; Glow: one, to 2 x 2
    ((2, 2), 1, 0),        # RealNVP's one unsqueezed scale; Glow: none fits
    ((6, 10), 1, 1),       # 6 x 10 -> 3 x 5, odd: no further squeeze
])
def test_max_num_scales_under_each_rule(shape, realnvp, glow):
  assert bijectors.max_num_scales(*shape, multiscale.REALNVP_SCALES) == realnvp
  assert bijectors.max_num_scales(*shape, multiscale.GLOW_SCALES) == glow


def test_squeeze_layout():
  x = jnp.arange(48.0).reshape(1, 4, 4, 3)
  y = bijectors.squeeze(x)
  # Output channel (2a + b) * C + c holds input pixel (2i + a, 2j + b, c).
  for i, j, a, b, c in np.ndindex(2, 2, 2, 2, 3):
    assert y[0, i, j, (2 * a + b) * 3 + c] == x[0, 2 * i + a, 2 * j + b, c]
  np.testing.assert_array_equal(bijectors.unsqueeze(y), x)


@pytest.mark.parametrize("dims", [5, 6])   # masked (odd D) and split
@pytest.mark.parametrize("parity", [0, 1])
def test_half_coupling_by_hand(dims: int, parity: int):
  # Parity 0 keeps x[:, :D // 2], parity 1 keeps the rest; the kept part
  # drives the coupler, the other part gets y = x * exp(s) + t (eq. 6).
  layer = bijectors.AffineCoupling(mask="half", parity=parity,
                                   coupler=bijectors.MLPCoupler(hidden=(4,)))
  x = jax.random.normal(jax.random.key(1), (3, dims))
  params = perturb(layer.init(jax.random.key(2), x), 3, 0.5)
  y, logdet = layer.apply(params, x, method="forward")
  kept = (np.arange(dims) < dims // 2) != bool(parity)
  np.testing.assert_array_equal(y[:, kept], x[:, kept])
  net = params["params"]["coupler"]
  coupler_input = x[:, kept] if dims % 2 == 0 else jnp.where(kept, x, 0.0)
  hidden = jax.nn.relu(coupler_input @ net["dense0"]["kernel"] +
                       net["dense0"]["bias"])
  shift, raw = jnp.split(hidden @ net["output"]["kernel"] +
                         net["output"]["bias"], 2, axis=-1)
  log_scale = (params["params"]["log_scale_factor"]["value"] *
               jnp.tanh(raw))
  if dims % 2:       # the masked form computes (and ignores) every channel
    shift, log_scale = shift[:, ~kept], log_scale[:, ~kept]
  np.testing.assert_allclose(y[:, ~kept],
                             x[:, ~kept] * jnp.exp(log_scale) + shift,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logdet, log_scale.sum(-1), rtol=1e-5,
                             atol=1e-6)


def test_half_coupling_rejects_images_with_even_channels():
  layer = bijectors.AffineCoupling(mask="half",
                                   coupler=bijectors.MLPCoupler(hidden=(4,)))
  with pytest.raises(ValueError, match="half mask needs a"):
    layer.init(jax.random.key(0), jnp.ones((2, 4, 4, 2)))


def test_rescale_and_logit_logdets_by_hand():
  x = jnp.array([[0.0, 100.5, 255.9]])
  y, logdet = bijectors.Rescale(256).apply({}, x, method="forward")
  np.testing.assert_allclose(y, x / 256, rtol=1e-6)
  np.testing.assert_allclose(logdet, [-3 * np.log(256)], rtol=1e-6)
  alpha = 0.05
  z, logdet = bijectors.Logit(alpha).apply({}, y, method="forward")
  p = alpha + (1 - 2 * alpha) * np.asarray(y, np.float64)
  np.testing.assert_allclose(z, np.log(p) - np.log1p(-p), rtol=1e-5)
  expected = np.sum(np.log(1 - 2 * alpha) - np.log(p) - np.log1p(-p))
  np.testing.assert_allclose(logdet, [expected], rtol=1e-5)


def test_logit_is_finite_at_the_ends_of_the_interval():
  y = jnp.array([[0.0, 1.0]])
  z, logdet = bijectors.Logit(alpha=1e-6).apply({}, y, method="forward")
  assert np.all(np.isfinite(z)) and np.all(np.isfinite(logdet))
  y_back, _ = bijectors.Logit(alpha=1e-6).apply({}, z, method="inverse")
  np.testing.assert_allclose(y_back, y, atol=1e-5)


def test_uniform_dequantise_stays_below_the_next_integer():
  # At 255 float32 rounds 255 + u up to 256 for u > 1 - 2**-17: with 10**6
  # draws that happens about 8 times unless the result is capped.
  x = jnp.full((1000, 1000), 255, jnp.uint8)
  y = bijectors.uniform_dequantise(jax.random.key(0), x)
  assert y.dtype == jnp.float32
  assert float(y.min()) >= 255.0 and float(y.max()) < 256.0
  np.testing.assert_allclose(float(y.mean()), 255.5, atol=1e-3)
  small = bijectors.uniform_dequantise(jax.random.key(1),
                                       jnp.arange(4, dtype=jnp.uint8))
  np.testing.assert_array_equal(jnp.floor(small), jnp.arange(4))
  with pytest.raises(ValueError, match="integer"):
    bijectors.uniform_dequantise(jax.random.key(0), jnp.ones(3))


def test_actnorm_standardises_its_init_batch():
  _, layer, _, x, _ = setup_case("actnorm-image", perturbed=False)
  params = layer.init(jax.random.key(0), x)
  y, logdet = layer.apply(params, x, method="forward")
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
  # log-det = H * W * sum_c log(1 / std_c) on the init batch.
  expected = -4 * 4 * np.sum(np.log(np.std(np.asarray(x), axis=(0, 1, 2))))
  np.testing.assert_allclose(logdet, [expected] * 2, rtol=1e-4)


def test_conv1x1_starts_as_a_rotation():
  _, layer, params, x, _ = setup_case("conv1x1-vector", perturbed=False)
  d = x.shape[-1]
  columns, logdet = layer.apply(params, jnp.eye(d), method="forward")
  w = columns.T                                 # W[:, k] = W e_k
  np.testing.assert_allclose(w.T @ w, np.eye(d), atol=1e-5)
  np.testing.assert_allclose(logdet, 0.0, atol=1e-5)
  other = layer.init(jax.random.key(7), x)
  assert not np.allclose(other["params"]["lower"], params["params"]["lower"])


@pytest.mark.parametrize("order", made_lib.ORDERS)
def test_made_is_autoregressive(order: str):
  d, f = 5, 3
  net = made_lib.MADE(hidden=(12, 12), order=order, seed=1)
  xs = jax.random.normal(jax.random.key(0), (16, d))
  conds = jax.random.normal(jax.random.key(1), (16, f))
  params = perturb(net.init(jax.random.key(2), xs, conds), 3, 0.5)

  def jacobians(x, cond):   # d(mu, raw)/dx [2, D, D] and d(mu, raw)/dcond
    def outputs(x, cond):
      return jnp.stack(net.apply(params, x[None], cond[None]))[:, 0]
    return jax.jacfwd(outputs, argnums=(0, 1))(x, cond)

  jac_x, jac_cond = jax.jit(jax.vmap(jacobians))(xs, conds)  # [16, 2, D, D|F]
  degrees = made_lib.input_degrees(d, order, seed=1)
  allowed = degrees[None, :] < degrees[:, None]      # out i <- in j
  used = np.asarray(jnp.abs(jac_x).max(axis=0)) > 0  # [2, D, D]
  # Every output depends on exactly the inputs earlier in the order (at
  # some of the 16 points: a relu may be off at any one of them) ...
  np.testing.assert_array_equal(used, np.broadcast_to(allowed, used.shape))
  # ... and on cond, including the first output, which has no other input.
  assert np.all(np.asarray(jnp.abs(jac_cond).max(axis=0)) > 0)


@pytest.mark.parametrize("case", CONTEXT_CASES,
                         ids=[c.name for c in CONTEXT_CASES])
def test_context_changes_the_output(case: Case):
  """The context matters: another c gives another y and log-det (and the
  inverse of y under another c is not x)."""
  _, layer, params, x, cond = setup_case(case.name)
  y, logdet, _, _ = batched_results(case.name)
  other_y, other_logdet = forward_fn(layer)(params, x, cond + 1.0)
  assert np.abs(np.asarray(other_y - y)).max() > 1e-2
  assert np.abs(np.asarray(other_logdet - logdet)).max() > 1e-3
  x_other, _ = inverse_fn(layer)(params, y, cond + 1.0)
  assert np.abs(np.asarray(x_other - x)).max() > 1e-2


@pytest.mark.parametrize("case", SPLINE_CASES,
                         ids=[c.name for c in SPLINE_CASES])
def test_spline_is_the_identity_outside_its_bound(case: Case):
  # boundary_slopes="identity": a transformed value outside [-B, B] passes
  # through unchanged (kept values do too), inside it moves.
  _, _, _, x, _ = setup_case(case.name)
  y = batched_results(case.name)[0]
  outside = np.abs(np.asarray(x)) > SPLINE_BOUND
  assert 0.1 < outside.mean() < 0.6
  np.testing.assert_array_equal(np.asarray(y)[outside],
                                np.asarray(x)[outside])
  moved = np.abs(np.asarray(y - x)) > 1e-4
  assert moved[~outside].mean() > 0.3


def test_spline_settings_are_checked():
  x = jnp.ones((2, 4))
  with pytest.raises(ValueError, match="transformer='cubic'.*'affine', "
                                       "'spline'"):
    bijectors.MaskedAutoregressive(transformer="cubic").init(
        jax.random.key(0), x)
  with pytest.raises(ValueError, match="num_bins=0"):
    _spline = spline_coupling.RationalQuadraticSplineCoupling(
        mask="half", num_bins=0)
    _spline.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"spline bound=-1\.0"):
    spline_coupling.RationalQuadraticSplineCoupling(
        mask="half", bound=-1.0).init(jax.random.key(0), x)
  # An affine-sized coupler (2 outputs per channel) is named, not reshaped.
  layer = spline_coupling.RationalQuadraticSplineCoupling(
      mask="half", num_bins=4, coupler=bijectors.MLPCoupler(hidden=(4,)))
  with pytest.raises(ValueError, match="outputs_per_channel=13"):
    layer.init(jax.random.key(0), x)


@pytest.mark.parametrize("case", NEIGHBOUR_CONTEXT_CASES,
                         ids=[c.name for c in NEIGHBOUR_CONTEXT_CASES])
def test_neighbour_context_changes_the_output(case: Case):
  """NCL's and NCT's outputs depend on the context, not only on N: another
  c with the same neighbours gives another y, log-det and inverse."""
  _, layer, params, x, cond = setup_case(case.name)
  y, logdet, _, _ = batched_results(case.name)
  other = {**cond, "context": cond["context"] + 1.0}
  other_y, other_logdet = forward_fn(layer)(params, x, other)
  assert np.abs(np.asarray(other_y - y)).max() > 1e-2
  assert np.abs(np.asarray(other_logdet - logdet)).max() > 1e-3
  x_other, _ = inverse_fn(layer)(params, y, other)
  assert np.abs(np.asarray(x_other - x)).max() > 1e-2
