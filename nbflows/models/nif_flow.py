"""A flow whose unit Gaussian prior is a Gaussian NIF (paper 4, Sec. 4.3).

The paper's experimental form: take a normalizing flow f (data -> z, z of
the data's shape, d = dim z) and replace its N(0, I_d) prior by the
closed-form marginal of a Gaussian noisy injective flow (eq. 13),

  log p(x) = log N(f(x); b, A A^T + Sigma) + log|det df/dx|,

with a latent of k < d dimensions: the flow learns to put the data near the
k-dimensional hyperplane {A w + b}. For images A is the nearest-neighbour
up-sampling of Sec. 4.1 (`nif.GaussianNIF` with `upsample_factor`), so the
prior costs O(d c^2) for c latent channels. Sampling has, besides the
temperature T of w ~ N(0, T^2 I), the test-time noise scale s of Sigma
(Sec. 5.2): s = 1 is the trained model, s = 0 samples the flow's image of
the hyperplane, "the learned manifold".

The "nif_flow" model reuses the transform of a base flow built from the
same config (`config.nif.base_model`: "rnvp", "glow" or "maf"), so it is
"the same flow with a unit Gaussian prior" up to the prior.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence, Union

import jax
import ml_collections
import numpy as np

from nbflows.data import sources
from nbflows.distributions import nif
from nbflows.models import base
from nbflows.models import flow
from nbflows.models import glow
from nbflows.models import maf
from nbflows.models import realnvp

Array = jax.Array
Params = base.Params
BASE_BUILDERS = {"rnvp": realnvp.build_rnvp, "glow": glow.build_glow,
                 "maf": maf.build_maf}


class NIFFlowModel(flow.FlowModel):
  """`flow.FlowModel` with the Gaussian NIF as prior (eq. 13).

  Attributes (besides `flow.FlowModel`'s):
    latent_dim: k for a dense A; latent channels c for the up-sampling A
      (then k = H W c / f^2).
    upsample_factor: None (dense A) or f (nearest-neighbour up-sampling of
      an [H/f, W/f, c] latent, images only).
  """
  latent_dim: int = 16
  upsample_factor: Optional[int] = None

  def setup(self):
    super().setup()
    self.nif = nif.GaussianNIF(event_shape=self.event_shape,
                               latent_dim=self.latent_dim,
                               upsample_factor=self.upsample_factor)

  def prior_log_prob(self, z: Array, cond: Optional[Array]) -> Array:
    """log N(z; b, A A^T + Sigma), [B] (eq. 13)."""
    del cond
    return self.nif.log_prob(z)

  def prior_sample(self, key: Array, cond: Optional[Array], num_samples: int,
                   temperature: float) -> Array:
    """z = A (T w) + b + Sigma^1/2 eps, w, eps ~ N(0, I)."""
    del cond
    return self.nif.sample(key, num_samples, temperature)

  def sample_with_noise_scale(self, key: Array, num_samples: int,
                              temperature: float, noise_scale: float) -> Array:
    """Samples in data units with Sigma scaled by s = `noise_scale` (Sec. 5.2)."""
    z = self.nif.sample(key, num_samples, temperature, noise_scale)
    return self.inverse(z)[0]

  def embed(self, x: Array) -> Array:
    """The NIF pseudo-inverse of f(x): [B, *latent_shape] (eq. 58)."""
    z, _ = self.forward(x)
    return self.nif.pseudo_inverse(z)


class NIFModel(base.BijectiveModel):
  """The flow of an `NIFFlowModel`: exact bits/dim, plus the NIF's noise
  scale at sampling (`protocols.NoiseScaleSampler`) and its low-dimensional
  embedding."""

  def sample(self, params: Params, key: Array, n_or_cond,
             temperature: Union[float, Array] = 1.0,
             noise_scale: Union[float, Array] = 1.0) -> Array:
    """[n, *event] samples in data units.

    Args:
      params: model parameters.
      key: a PRNG key.
      n_or_cond: the number of samples (the model is unconditional).
      temperature: T >= 0, scales the standard deviation of the NIF latent.
      noise_scale: s >= 0, scales Sigma; 0 samples the learned manifold.
        T = s = 0 gives f^-1(b), the image of the prior's mean. Either may
        be traced under the caller's jit (`base.checked_temperature`).

    Raises:
      ValueError: for a count below 1 or a concrete negative T or s.
    """
    return self._sample_with_noise(
        params, key, base.checked_sample_count(n_or_cond, self.name),
        base.checked_temperature(temperature),
        base.checked_temperature(noise_scale, "noise_scale"))

  def samples_by_noise_scale(self, params: Params, key: Array,
                             num_per_row: int,
                             noise_scales: Sequence[float] = (0.0, 1.0),
                             temperature: float = 1.0) -> np.ndarray:
    """One row of samples per test-time noise scale s (paper 4, Sec. 5.2).

    Every row is drawn with the same `key`, so column j has the same latent
    w and noise eps in each row and the rows differ only by s: with s = 0 the
    sample is the flow's image of A (T w) + b, on the learned manifold.

    Args:
      params: model parameters.
      key: a PRNG key, shared by the rows.
      num_per_row: samples per row.
      noise_scales: s of each row, each >= 0.
      temperature: T of the latent.

    Returns:
      [len(noise_scales), num_per_row, *event_shape] samples in data units.
    """
    return np.stack([np.asarray(self.sample(params, key, num_per_row,
                                            temperature, noise_scale=s))
                     for s in noise_scales])

  def embed(self, params: Params, x: Array) -> Array:
    """Low-dimensional embeddings [B, *latent_shape] of data `x` (Sec. 5.1)."""
    self.check_x(x)
    return self._embed(params, x)

  @functools.cached_property
  def _sample_with_noise(self):
    return jax.jit(
        lambda p, k, n, t, s: self.module.apply(
            p, k, n, t, s, method="sample_with_noise_scale"),
        static_argnums=(2,))

  @functools.cached_property
  def _embed(self):
    return jax.jit(lambda p, x: self.module.apply(p, x, method="embed"))


def build_nif_flow(config: ml_collections.ConfigDict) -> NIFModel:
  """The "nif_flow" model: `config.nif.base_model`'s flow with a NIF prior.

  Uses the base flow's config fields and config.nif.{base_model,
  latent_size (k), upsample_factor (0 for a dense A)}.

  Raises:
    ValueError: for an unknown base model, or a k that is not below d or
      (with up-sampling) not a multiple of H W / f^2.
  """
  settings = config.nif
  if settings.base_model not in BASE_BUILDERS:
    raise ValueError(f"config.nif.base_model={settings.base_model!r}; "
                     f"expected one of {sorted(BASE_BUILDERS)}")
  baseline = BASE_BUILDERS[settings.base_model](config).module
  info = sources.dataset_info(config.dataset)
  factor = settings.upsample_factor or None
  latent_dim = settings.latent_size
  if factor is not None:
    if len(info.event_shape) != 3:
      raise ValueError(f"config.nif.upsample_factor={factor} needs images; "
                       f"dataset {config.dataset!r} has event shape "
                       f"{info.event_shape} (set it to 0 for a dense A)")
    pixels = math.prod(info.event_shape[:2]) // factor**2
    if settings.latent_size % pixels:
      raise ValueError(f"config.nif.latent_size={settings.latent_size}; with "
                       f"upsample_factor={factor} the latent has {pixels} "
                       "pixels, so expected a multiple of it")
    latent_dim = settings.latent_size // pixels
  module = NIFFlowModel(transform=baseline.transform,
                        event_shape=info.event_shape,
                        num_levels=info.num_levels,
                        logit_alpha=config.flow.logit_alpha,
                        latent_dim=latent_dim, upsample_factor=factor)
  return NIFModel(module, info.event_shape, name=config.model,
                  num_classes=info.num_classes, num_levels=info.num_levels)
