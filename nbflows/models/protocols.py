"""What each kind of model offers: one `typing.Protocol` per capability.

The trainer, the evaluators and the tools ask a model for a capability
(`offers`, `require`) instead of testing its family. Every registered model
offers `Trainable`; the rest depend on what the model really computes:

  capability               offered by
  -----------------------  -------------------------------------------------
  `Trainable`              every model (init, loss, eval metrics, samples)
  `Density`                flows (paper 1, 2, 4), LGF (paper 2), the KDE
  `Bijective`              flows: RealNVP, Glow, MAF, NCL, NCT, CC-RNVP,
                           the NIF-prior flow (paper 4), LGF (paper 2)
  `Fitted`                 the KDE (paper 1, eq. 2): fitted, not trained
  `TestMetrics`            LGF: more importance samples at test (paper 2)
  `ImportanceLikelihood`   LGF: log p(x) by importance sampling (paper 2)
  `IWAEBound`              the VAEs (paper 3, Sec. 5): the IWAE bound
  `GaussianEncoder`        the VAEs: q(z | x) = N(mu(x), diag Lambda(x))
  `ExemplarSampler`        the Exemplar VAE: "more like this" (paper 3)
  `NoiseScaleSampler`      the NIF-prior flow: samples per noise scale
                           (paper 4, Sec. 5.2)
  `LatentGaussians`        NCL: one flow pass and per-neighbourhood
                           Gaussians give the exact marginal (paper 1, eq. 7)
  `StepScheduledLoss`      the paper-3 VAEs: the KL warm-up (paper 3, Sec. 5)
  `HostBatchPreparation`   the Exemplar VAE: the kNN cache of Alg. 1
                           (paper 3), searched on the host between steps

A protocol is checked structurally (`typing.runtime_checkable`): a model
offers it when it has every member, so a new model needs no registration
beyond its builder (`nbflows.models.registry`).

Example:
  >>> from configs import vae_digits
  >>> from nbflows.models import registry
  >>> model = registry.build_model(vae_digits.get_config("quick"))
  >>> offers(model, Trainable), offers(model, Density)
  (True, False)
  >>> require(model, Density, "the marginal bits/dim")
  Traceback (most recent call last):
  ...
  TypeError: model 'vae' (VAEModel) does not offer Density (log p(x | cond) in closed form), needed for the marginal bits/dim
"""
from __future__ import annotations

from typing import (Any, Dict, Mapping, Optional, Protocol, Sequence, Tuple,
                    Union, runtime_checkable)

import jax
import numpy as np

Array = jax.Array
Params = Any


@runtime_checkable
class Trainable(Protocol):
  """What the trainer and the evaluators call on every model.

  Units and shapes as in `nbflows.models.base`. `selection_metric` names
  the per-example eval metric (lower is better) that picks the best
  checkpoint; `default_metrics(images)` the eval.json metrics
  (`train.evaluation.metric_names.METRICS`) the model reports when
  none are asked for, `images` saying whether the data are discrete images.
  """
  name: str
  event_shape: Tuple[int, ...]
  condition_kind: str
  num_dims: int
  num_levels: Optional[int]
  selection_metric: str

  def init(self, key: Array, batch: Mapping[str, Array]) -> Params: ...

  def loss(self, params: Params, batch: Mapping[str, Array],
           key: Array) -> Tuple[Array, Dict[str, Array]]: ...

  def eval_metrics(self, params: Params, batch: Mapping[str, Array],
                   key: Array) -> Dict[str, Array]: ...

  def default_metrics(self, images: bool) -> Tuple[str, ...]: ...

  def sample(self, params: Params, key: Array, n_or_cond: Union[int, Array],
             temperature: float = 1.0) -> Array: ...

  def condition(self, batch: Mapping[str, Array]) -> Optional[Array]: ...

  def check_x(self, x: Array, name: str = "x") -> None: ...


@runtime_checkable
class Density(Protocol):
  """log p(x | cond) in closed form.

  `log_prob` [B] in nats of data units (`nbflows.data_units`: integer
  images dequantised, wrong units an error), `bits_per_dim` [B]
  (traceable): eq. 5 of paper 1 for the flows, eq. 2 for the KDE; LGF's is
  its importance-sampled estimate with a fixed key. `sample_and_log_prob`
  is `sample` then `log_prob`; `as_distribution(params, cond)` the model as
  a `distrax.Distribution`.
  """

  def log_prob(self, params: Params, x: Array, cond: Optional[Array] = None,
               *, key: Optional[Array] = None,
               validate: bool = False) -> Array: ...

  def sample_and_log_prob(self, params: Params, key: Array,
                          n_or_cond: Union[int, Array],
                          temperature: Union[float, Array] = 1.0, *,
                          validate: bool = False) -> Tuple[Array, Array]: ...

  def as_distribution(self, params: Params,
                      cond: Optional[Array] = None) -> Any: ...

  def bits_per_dim(self, params: Params, x: Array,
                   cond: Optional[Array] = None) -> Array: ...


@runtime_checkable
class Bijective(Protocol):
  """A bijection x <-> z.

  `forward` and `inverse` return (y, log|det| [B]) (paper 1, Sec. 2.1).
  """

  def forward(self, params: Params, x: Array,
              cond: Optional[Array] = None) -> Tuple[Array, Array]: ...

  def inverse(self, params: Params, z: Array,
              cond: Optional[Array] = None) -> Tuple[Array, Array]: ...


@runtime_checkable
class Fitted(Protocol):
  """Fitted to the data in closed form instead of trained.

  `train.loop.fitting` calls `fit(key, train_images, validation_points)`, which
  returns (params, fit) with `fit.sigma` and `fit.validation_log_prob` [G]
  (the KDE of paper 1, eq. 2: every training image a centre, the bandwidth
  chosen on validation).
  """

  def fit(self, key: Array, train: Array, validation: Array,
          grid: Optional[Sequence[float]] = None) -> Tuple[Params, Any]: ...


@runtime_checkable
class TestMetrics(Protocol):
  """Test-time metrics that differ from validation's.

  LGF (paper 2): S = `test_samples` importance samples at test, 5-10 at
  validation.
  """
  test_samples: int

  def test_metrics(self, params: Params, batch: Mapping[str, Array],
                   key: Array) -> Dict[str, Array]: ...


@runtime_checkable
class ImportanceLikelihood(Protocol):
  """An importance-sampled log-likelihood.

  log p(x) [B] estimated with `num_samples` importance samples (LGF,
  paper 2, App. E).
  """

  def importance_log_likelihood(self, params: Params, x: Array, key: Array,
                                num_samples: Optional[int] = None
                                ) -> Array: ...


@runtime_checkable
class IWAEBound(Protocol):
  """The IWAE lower bound on log p(x).

  Of binarised images (the VAEs, paper 3, Sec. 5); `eval_settings` holds
  its S for eval.json.
  """
  eval_settings: Dict[str, int]

  def iwae_log_likelihood(self, params: Params, x: Array, key: Array,
                          num_samples: Optional[int] = None,
                          index: Optional[Array] = None) -> Array: ...


@runtime_checkable
class GaussianEncoder(Protocol):
  """A Gaussian encoder q(z | x) = N(mu(x), diag Lambda(x)).

  `encode` gives (mu, log Lambda) [B, latent_dim] of images in data units
  (the VAEs, paper 3, eq. 11).
  """
  latent_dim: int

  def encode(self, params: Params, x: Array) -> Tuple[Array, Array]: ...


@runtime_checkable
class ExemplarSampler(Protocol):
  """Samples generated from given exemplars.

  [B, num_per_exemplar, *event] (the Exemplar VAE, paper 3, Fig. 3 and
  eq. 16).
  """

  def sample_like(self, params: Params, key: Array, exemplars: Array,
                  num_per_exemplar: int = 1,
                  temperature: float = 1.0) -> Array: ...


@runtime_checkable
class NoiseScaleSampler(Protocol):
  """Samples per test-time noise scale.

  One row per noise scale s (the NIF-prior flow, paper 4, Sec. 5.2).
  """

  def samples_by_noise_scale(self, params: Params, key: Array,
                             num_per_row: int,
                             noise_scales: Sequence[float] = (0.0, 1.0),
                             temperature: float = 1.0) -> np.ndarray: ...


@runtime_checkable
class LatentGaussians(Protocol):
  """Latent Gaussians given by the neighbourhood.

  NCL's p(x | N) = N(q(x); g_mu(q(N)), g_sigma(q(N))^2) |det dq/dx|
  (paper 1, eq. 7), q independent of N.

  `latents_and_logdet(params, x)` gives (q(x) [B, *event], log|det| [B]),
  `neighbourhood_gaussians(params, latents)` the (g_mu, log g_sigma)
  [B, *event] of neighbourhood latents q(N) [B, k, *event]: so the marginal
  over N neighbourhoods costs one flow pass per point (`nbflows.marginal`).
  """

  def latents_and_logdet(self, params: Params,
                         x: Array) -> Tuple[Array, Array]: ...

  def neighbourhood_gaussians(self, params: Params,
                              latents: Array) -> Tuple[Array, Array]: ...


@runtime_checkable
class StepScheduledLoss(Protocol):
  """A training loss that depends on the step.

  The trainer calls `loss_at_step(params, batch, key, step)` (step: the
  int32 scalar of the train state, 0 first) instead of `loss`: the VAEs'
  linear KL warm-up (paper 3, Sec. 5). `loss` stays the objective once the
  schedule has ended.
  """

  def loss_at_step(self, params: Params, batch: Mapping[str, Array],
                   key: Array, step: Array
                   ) -> Tuple[Array, Dict[str, Array]]: ...


@runtime_checkable
class HostBatchPreparation(Protocol):
  """Host-side work on each training batch before the jitted step.

  `train_batch_preparer(params)` returns `prepare(params, batch, key) ->
  batch`, which the trainer calls on every host batch (numpy arrays) with
  the step's current parameters and a PRNG key, and whose output (numpy
  arrays, batch axis first) the train step takes. The preparer may hold
  state for the run (the Exemplar VAE's cache of latent means, paper 3,
  Alg. 1); it is built afresh for each run from its first parameters.
  """

  def train_batch_preparer(self, params: Params) -> Any: ...


def offers(model: Any, capability: type) -> bool:
  """Whether `model` has every member of the protocol `capability`."""
  return isinstance(model, capability)


def require(model: Any, capability: type, purpose: str) -> None:
  """Raises TypeError unless `model` offers `capability`.

  Args:
    model: a model.
    capability: one of this module's protocols.
    purpose: what needs it, for the message ("--noise_scales").

  Raises:
    TypeError: naming the model, the capability and the purpose.
  """
  if offers(model, capability):
    return
  summary = (capability.__doc__ or "").strip().split("\n")[0].rstrip(".")
  raise TypeError(
      f"model {getattr(model, 'name', '')!r} ({type(model).__name__}) does "
      f"not offer {capability.__name__} ({summary}), needed for {purpose}")
