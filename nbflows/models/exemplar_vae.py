"""The Exemplar VAE (paper 3): a VAE whose prior is built from training data.

To generate, draw a training exemplar x_n uniformly, then z ~ N(mu(x_n),
sigma^2 I) with the inference network's mean mu and one learned scalar
sigma^2 (eq. 12), then x ~ p(x | z). The prior is therefore the mixture

  r(z | X) = 1/N sum_n N(z; mu(x_n), sigma^2 I)                   (eq. 10, 14)

(`nbflows.distributions.priors.ExemplarPrior`, built from the parameters by
`ExemplarVAEModel.prior`)

and training maximises the ELBO of eq. 13 with two regularisers (Sec. 2.1):
the point's own exemplar is left out (leave-one-out, eq. 4) and the prior of
each batch uses a random subset of M = ratio * N exemplars (eq. 5). At
evaluation all N exemplars are used, without regularisation (Sec. 5).

Exemplars are the training images as grey levels, never binarised (App.
D.2), and the model holds them: `ExemplarVAEModel` takes the training split's
uint8 images at construction and each training batch's "index" field (its
position in that split) says which exemplar to leave out.

The kNN variant (Sec. 3.1, Alg. 1; `knn` = k > 0, 0 keeps the exact prior)
replaces the sum over M by one over the k exemplars nearest mu(x_i) inside
the subsample less the point itself, found in an `ExemplarCache` of latent
means that is refreshed for every point that passes through the encoder; it
is a lower bound (eq. 15). A step has a host half and a jitted half:

  batch = model.knn_batch(params, cache, batch, key1)   # search, refresh
  (loss, (metrics, means)), grads = jax.jit(jax.value_and_grad(
      model.knn_loss, has_aux=True))(params, batch, key2)
  cache.update(batch["exemplar_neighbours"], means)

The trainer runs exactly this (`protocols.HostBatchPreparation`):
`train_batch_preparer(params)` holds the run's cache and does the host half
(and the last line, with the same means, computed before the step), and
`loss_at_step` takes the kNN path whenever the batch carries
"exemplar_neighbours".

Example:
  >>> import jax, jax.numpy as jnp, numpy as np
  >>> from nbflows.models import vae
  >>> images = np.random.default_rng(0).integers(0, 17, (10, 4, 4, 1), np.uint8)
  >>> model = ExemplarVAEModel(
  ...     vae.VAE(event_shape=(4, 4, 1), latent_dim=2, hidden=(8,),
  ...             prior="exemplar"), images, num_levels=17, knn=2,
  ...     iwae_samples=4)
  >>> batch = {"x": jnp.asarray(images[:3], jnp.float32) + 0.5,
  ...          "index": jnp.arange(3)}
  >>> params = model.init(jax.random.key(0), batch)
  >>> model.sample(params, jax.random.key(1), 5).shape
  (5, 4, 4, 1)
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from nbflows.data import sources
from nbflows.distributions import exemplar_prior
from nbflows.distributions import priors
from nbflows.models import base
from nbflows.models import vae
from nbflows.objectives import elbo

Array = jax.Array
Params = Any


class ExemplarVAEModel(vae.VAEModel):
  """A VAE with the exemplar prior, its regularisers and its kNN bound.

  Args:
    module: a `vae.VAE` built with prior="exemplar".
    exemplars: uint8 [N, *event_shape] training images, in the order of the
      training split (the "index" field of training batches refers to it).
    num_levels: L, the number of pixel values.
    leave_one_out: drop each training point's own exemplar (eq. 4).
    subsample_ratio: M / N of eq. 5, in (0, 1]; 1 keeps every exemplar.
    knn: k of the kNN bound (eq. 15) of `knn_loss`; with k > 0 the trainer
      trains through it (Alg. 1), with 0 on the exact prior.
    iwae_samples: S, importance samples for the test log-likelihood.
    iwae_chunk: samples evaluated at once.
    name: the config's model name.
    kl_warmup_steps: the linear KL warm-up of Sec. 5 (`vae.VAEModel`).
  """

  def __init__(self, module: vae.VAE, exemplars: np.ndarray, num_levels: int,
               leave_one_out: bool = True, subsample_ratio: float = 0.5,
               knn: int = 0, iwae_samples: int = 1000, iwae_chunk: int = 100,
               name: str = "evae", kl_warmup_steps: int = 0):
    super().__init__(module, num_levels, iwae_samples, iwae_chunk, name,
                     kl_warmup_steps=kl_warmup_steps)
    if module.prior != "exemplar":
      raise ValueError(f"module.prior={module.prior!r}; an ExemplarVAEModel "
                       "needs a VAE built with prior='exemplar'")
    exemplars = np.asarray(exemplars)
    if exemplars.shape[1:] != self.event_shape or exemplars.shape[0] < 2:
      raise ValueError(f"exemplars has shape {exemplars.shape}; expected "
                       f"[N >= 2, {', '.join(map(str, self.event_shape))}]")
    if not 0.0 < subsample_ratio <= 1.0:
      raise ValueError(f"subsample_ratio={subsample_ratio}; expected M/N in "
                       "(0, 1]")
    self.exemplars = jnp.asarray(exemplars)          # uint8, [N, *event]
    self.num_exemplars = exemplars.shape[0]
    self.leave_one_out = leave_one_out
    self.num_subsample = max(2, int(round(subsample_ratio *
                                          self.num_exemplars)))
    if not (knn == 0 or 1 <= knn < self.num_subsample):
      raise ValueError(f"knn={knn}; expected 0 (the exact prior) or "
                       f"1 <= k < M = {self.num_subsample}")
    self.knn = knn

  # ------------------------------------------------------------- exemplars
  def exemplar_inputs(self, indices: Optional[Array] = None) -> Array:
    """Grey-level exemplars [M, *event] in [0, 1] (all N if no `indices`)."""
    images = self.exemplars if indices is None else self.exemplars[indices]
    return images.astype(jnp.float32) / (self.num_levels - 1)

  def exemplar_means(self, params: Params,
                     indices: Optional[Array] = None) -> Array:
    """mu(x_j) [M, d] of the exemplars (eq. 12), differentiable in `params`."""
    inputs = self.exemplar_inputs(indices)
    flat = inputs.reshape(-1, *self.event_shape)
    mean, _ = self.module.apply(params, flat, method="encode")
    return mean.reshape(*inputs.shape[:-len(self.event_shape)], -1)

  def log_variance(self, params: Params) -> Array:
    """The shared log sigma^2 of eq. 12."""
    return self.module.apply(params, method="log_variance")

  def loss_at_step(self, params: Params, batch: Mapping[str, Array],
                   key: Array, step: Array
                   ) -> Tuple[Array, Dict[str, Array]]:
    """`vae.VAEModel.loss_at_step` (the ELBO of eq. 13), logging log sigma^2.

    The extra metric "log_variance" (eq. 12) shows whether the prior's
    components shrink onto the exemplars, the memorisation that
    leave-one-out prevents (Sec. 2.1). A batch from `knn_batch` (it
    carries "exemplar_neighbours") takes the kNN bound of eq. 15 instead
    (`knn_loss`).
    """
    if "exemplar_neighbours" in batch:
      loss, (metrics, _) = self.knn_loss(params, batch, key, step)
      return loss, metrics
    loss, metrics = super().loss_at_step(params, batch, key, step)
    return loss, dict(metrics, log_variance=self.log_variance(params))

  # ----------------------------------------------------------------- priors
  def prior(self, params: Params) -> priors.ExemplarPrior:
    """r(z | X) over all N training exemplars (Sec. 5, Evaluation)."""
    return priors.ExemplarPrior(self.exemplar_means(params),
                                self.log_variance(params))

  def training_log_prior(self, params: Params, z: Array,
                         batch: Mapping[str, Array], key: Array) -> Array:
    """log r(z | pi) over a random subset pi less the point itself (eq. 13)."""
    indices = self._subsample(key)
    mask = (exemplar_prior.leave_one_out_mask(batch["index"], indices)
            if self.leave_one_out else None)
    return priors.ExemplarPrior(self.exemplar_means(params, indices),
                                self.log_variance(params), mask).log_prob(z)

  def _subsample(self, key: Array) -> Array:
    if self.num_subsample == self.num_exemplars:
      return jnp.arange(self.num_exemplars, dtype=jnp.int32)
    return exemplar_prior.subsample(key, self.num_exemplars,
                                    self.num_subsample)

  # ---------------------------------------------------- kNN training (Alg. 1)
  def init_cache(self, params: Params) -> exemplar_prior.ExemplarCache:
    """The cache of Alg. 1, filled with mu(x_n) of every training exemplar."""
    return exemplar_prior.ExemplarCache(
        np.asarray(self._exemplar_means_jit(params)))

  def knn_batch(self, params: Params, cache: exemplar_prior.ExemplarCache,
                batch: Mapping[str, Array], key: Array) -> Dict[str, Array]:
    """The host half of an Alg. 1 step: subsample, search, refresh.

    Draws pi (eq. 5), encodes the batch (its grey levels, like the cached
    exemplars) with the current parameters, writes those means into the
    cache (Cache.update(i, mu_i)), and finds each point's k nearest
    exemplars inside pi (Cache.kNN(mu_i) intersected with pi) with the
    library's exact kNN; under leave-one-out it searches k + 1 and drops
    the point itself, or the farthest when the point is not among them.

    Args:
      params: model parameters.
      cache: the `ExemplarCache`, updated in place.
      batch: {"x" (data units), "index" (positions in the training split)}.
      key: PRNG key of the subsample.

    Returns:
      The batch plus "exemplar_neighbours" (int32 [B, k], indices into the
      training split, nearest first, never the point itself under
      leave-one-out) and "exemplar_count" (float32 [B], M_i, the number of
      components of the point's full mixture: |pi|, less one if the point
      is in pi under leave-one-out).
    """
    index = np.asarray(batch["index"])
    subset = np.asarray(self._subsample(key))
    query = np.asarray(self._query_means(params, batch["x"]))
    cache.update(index, query)
    count = np.full(index.shape, len(subset), np.float32)
    if not self.leave_one_out:
      neighbours = cache.neighbours(query, self.knn, subset)
    else:
      found = cache.neighbours(query, self.knn + 1, subset)   # [B, k + 1]
      is_self = found == index[:, None]
      drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), self.knn)
      kept = np.arange(self.knn + 1)[None, :] != drop[:, None]
      neighbours = found[kept].reshape(len(index), self.knn)
      count -= np.isin(index, subset)
    return dict(batch, exemplar_neighbours=jnp.asarray(neighbours),
                exemplar_count=jnp.asarray(count))

  def knn_loss(self, params: Params, batch: Mapping[str, Array], key: Array,
               step: Optional[Array] = None
               ) -> Tuple[Array, Tuple[Dict[str, Array], Array]]:
    """Negative ELBO with the kNN prior bound (eq. 15); pure and jittable.

    The neighbours of `knn_batch` are encoded afresh (so the prior's
    gradient reaches the encoder through them) and z is scored against them
    with the weight 1/M_i of the full subsample. The KL term is weighted as
    in `loss_at_step` (the warm-up of Sec. 5).

    Args:
      params: model parameters.
      batch: the output of `knn_batch`.
      key: a PRNG key (split as `loss` splits it, so with k covering the whole
        subsample the two losses agree).
      step: the training step of the KL warm-up (None: after it).

    Returns:
      (loss, (metrics, neighbour_means [B, k, d])): the shape
      `jax.value_and_grad(..., has_aux=True)` expects; pass the means to
      `cache.update(batch["exemplar_neighbours"], neighbour_means)` (Alg. 1,
      last line). The metrics add "prior_components", the number of
      exemplars each point's prior is evaluated over (k).
    """
    binarise_key, sample_key, _ = jax.random.split(key, 3)
    x_binary = vae.binarise(binarise_key, batch["x"], self.num_levels)
    neighbours = batch["exemplar_neighbours"]
    neighbour_means = self.exemplar_means(params, neighbours)     # [B, k, d]

    def log_prior(z: Array) -> Array:
      return exemplar_prior.knn_log_density(
          z, neighbour_means, self.log_variance(params),
          batch["exemplar_count"])

    reconstruction, kl = self.elbo_terms(params, x_binary, sample_key,
                                         log_prior)
    weight = elbo.kl_weight(self.kl_warmup_steps if step is None else step,
                            self.kl_warmup_steps)
    loss, metrics = elbo.training_loss(reconstruction, kl, weight)
    metrics.update(kl_weight=weight, log_variance=self.log_variance(params),
                   prior_components=jnp.asarray(neighbour_means.shape[1],
                                                jnp.float32))
    return loss, (metrics, jax.lax.stop_gradient(neighbour_means))

  def train_batch_preparer(self, params: Params):
    """Alg. 1's host half for the trainer (`protocols.HostBatchPreparation`).

    With knn = 0 the identity (the exact prior needs nothing). Otherwise a
    fresh `ExemplarCache` of every exemplar's mean under `params` (Alg. 1's
    first loop) and `prepare(params, batch, key)`: `knn_batch`, then the
    neighbours' rows set to their means under `params`, the values the
    step's `knn_loss` computes before its update (Alg. 1, last line).
    Returns numpy arrays, for `sharding.shard_batch`.
    """
    if not self.knn:
      return lambda params, batch, key: batch
    cache = self.init_cache(params)

    def prepare(params, batch, key):
      prepared = self.knn_batch(params, cache, batch, key)
      neighbours = prepared["exemplar_neighbours"]
      cache.update(neighbours, self._exemplar_means_jit(params, neighbours))
      return {name: np.asarray(value) for name, value in prepared.items()}

    return prepare

  @functools.cached_property
  def _query_means(self):
    return jax.jit(lambda params, x: self.encode(params, x)[0])

  @functools.cached_property
  def _exemplar_means_jit(self):
    return jax.jit(self.exemplar_means)

  # --------------------------------------------------------------- sampling
  def sample_like(self, params: Params, key: Array, exemplars: Array,
                  num_per_exemplar: int = 1,
                  temperature: Union[float, Array] = 1.0) -> Array:
    """"More like this": samples generated from given exemplars (Fig. 3).

    Each exemplar is encoded to mu(x'), z ~ N(mu(x'), T^2 sigma^2 I) and
    decoded; the result can serve as augmented data with the exemplar's label
    (eq. 16).

    Args:
      params: model parameters.
      key: a PRNG key.
      exemplars: [B, *event] images in data units (any images, e.g. test
        images or earlier samples).
      num_per_exemplar: samples drawn from each exemplar.
      temperature: T >= 0, scales sigma (T = 0 decodes mu(x')); may be
        traced under the caller's jit (`base.checked_temperature`).

    Returns:
      [B, num_per_exemplar, *event] decoder means in data units.
    """
    self.check_x(exemplars, "exemplars")
    if num_per_exemplar < 1:
      raise ValueError(f"num_per_exemplar={num_per_exemplar}; expected >= 1")
    return self._sample_like_jit(params, key, exemplars, num_per_exemplar,
                                 base.checked_temperature(temperature))

  def _sample_like(self, params: Params, key: Array, exemplars: Array,
                   num_per_exemplar: int, temperature: Array) -> Array:
    means, _ = self.encode(params, exemplars)                 # [B, d]
    means = jnp.repeat(means[:, None, :], num_per_exemplar, axis=1)
    z = priors.perturb(key, means, self.log_variance(params), temperature)
    return self.decode(params, z)

  @functools.cached_property
  def _sample_like_jit(self):
    return jax.jit(self._sample_like, static_argnums=(3,))

  def cyclic_samples(self, params: Params, key: Array, start: Array,
                     num_steps: int,
                     temperature: Union[float, Array] = 1.0) -> Array:
    """Cyclic generation (App. B): each sample is the next step's exemplar.

    Args:
      params: model parameters.
      key: a PRNG key.
      start: [B, *event] first exemplars in data units (training images, or
        noise, as in Fig. 6 and 7).
      num_steps: the number of generations.
      temperature: T >= 0, scales sigma, as in `sample_like`.

    Returns:
      [num_steps, B, *event] samples in data units, one row per generation.
    """
    if num_steps < 1:
      raise ValueError(f"num_steps={num_steps}; expected >= 1")
    self.check_x(start, "start")

    return self._cyclic_jit(params, key, start, num_steps,
                            base.checked_temperature(temperature))

  @functools.cached_property
  def _cyclic_jit(self):

    def cyclic(params, key, start, num_steps, temperature):
      def step(exemplars, step_key):
        samples = self._sample_like(params, step_key, exemplars, 1,
                                    temperature)[:, 0]
        return samples, samples

      _, chain = jax.lax.scan(step, start, jax.random.split(key, num_steps))
      return chain

    return jax.jit(cyclic, static_argnums=(3,))


def build_evae(config: Any,
               splits: Optional[sources.Splits] = None) -> ExemplarVAEModel:
  """The Exemplar VAE of `config.vae` over the training split of the data.

  Args:
    config: a config with the `vae` block of configs/vae_digits.py and
      `vae.exemplar` options (leave_one_out, subsample_ratio, knn).
    splits: the loaded dataset; loaded with the config's data options (the
      same call the input pipeline makes) when None.

  Returns:
    An `ExemplarVAEModel` holding the training images as exemplars.

  Raises:
    ValueError: for `config.vae.beta` other than 1 (its loss is the ELBO),
      or a KL warm-up not shorter than the run.
  """
  if splits is None:
    splits = sources.load(
        config.dataset, config.data_dir or None,
        validation_fraction=config.data.validation_fraction,
        test_fraction=config.data.test_fraction)
  if config.vae.get("beta", 1.0) != 1.0:
    raise ValueError(f"config.vae.beta={config.vae.beta}; the Exemplar VAE "
                     "trains on the ELBO (beta = 1) only")
  info = splits.info
  return ExemplarVAEModel(
      vae.make_network(config, info.event_shape, "exemplar"),
      splits.train.images, num_levels=info.num_levels,
      leave_one_out=config.vae.exemplar.leave_one_out,
      subsample_ratio=config.vae.exemplar.subsample_ratio,
      knn=config.vae.exemplar.knn, iwae_samples=config.vae.iwae_samples,
      iwae_chunk=config.vae.iwae_chunk, name=config.model,
      kl_warmup_steps=vae.kl_warmup_steps(config))

