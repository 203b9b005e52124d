"""Sampling from neighbourhood models (paper 1, Alg. 2, Sec. 1, App. B.4).

  * `sample_unconditional`: eq. 4's generative process (Alg. 2): every
    sample picks a training neighbourhood uniformly at random and draws
    x ~ p(. | N(x_i)).
  * `sample_like`: targeted sampling, the "more like this" interface: any
    set of images (not necessarily training images) is the neighbourhood:
    exactly the model's k of them, the most alike first, for NCL and NCT,
    which concatenate their neighbours in order of distance; any number
    k >= 1, in any order, for NCL-pool and NCT-pool.
  * `interpolate_neighbourhoods`: App. B.4: the members of one
    neighbourhood are swapped for those of another one at a time; each
    intermediate set is sampled with the same key, so the latent noise is
    fixed along the sequence and only the neighbourhood changes.

`temperature` T multiplies the latent Gaussian's standard deviation (T = 0:
the image of the latent mean). The images given follow the units rule of
every model entry (`nbflows.data_units`): integers are used at the centres
of their bins (+ 0.5), floats must be in data units [0, num_levels), and
images in other units (rescaled to [0, 1], or on a 0-255 scale for fewer
levels) are a ValueError naming the argument.

Example:
  >>> import jax, jax.numpy as jnp, numpy as np
  >>> from configs import ncl_digits
  >>> from nbflows.models import registry
  >>> model = registry.build_model(ncl_digits.get_config("quick"))
  >>> params = model.init(jax.random.key(0), {
  ...     "x": jnp.full((1, 8, 8, 1), 8.5),
  ...     "neighbours": jnp.full((1, 5, 8, 8, 1), 8.5)})
  >>> liked = np.zeros((5, 8, 8, 1), np.uint8)       # NCL's k = 5 images
  >>> sample_like(model, params, jax.random.key(1), liked, 4).shape
  (4, 8, 8, 1)
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from nbflows import data_units
from nbflows import marginal
from nbflows.models import protocols

Array = jax.Array


def sample_unconditional(model: protocols.Trainable, params, key: Array,
                         num_samples: int, conditions: marginal.Conditions,
                         temperature: float = 1.0
                         ) -> Tuple[Array, np.ndarray]:
  """Alg. 2: x ~ p(. | N(x_i)) with i uniform over the training rows.

  Args:
    model: a conditional model.
    params: its parameters.
    key: PRNG key (the rows and the latent noise).
    num_samples: how many samples.
    conditions: `marginal.Neighbourhoods` (or [N] training labels for a
      label model); each sample picks one row.
    temperature: T >= 0.

  Returns:
    (samples [num_samples, *event] in data units, the rows picked
    [num_samples]).
  """
  if num_samples < 1:
    raise ValueError(f"num_samples={num_samples}; expected >= 1")
  pick_key, sample_key = jax.random.split(key)
  rows = np.asarray(jax.random.randint(pick_key, (num_samples,), 0,
                                       marginal.num_rows(conditions)))
  cond = jnp.asarray(marginal.gather(conditions, rows))
  return model.sample(params, sample_key, cond, temperature), rows


def _neighbourhood(model: protocols.Trainable, images: Array,
                   name: str) -> np.ndarray:
  """Checks a set of images [k, *event] (shape and units); returns it as given.

  Integer images stay integers, so that the model's entry dequantises them
  (a float set of all-zero images would look rescaled to [0, 1]).
  """
  images = np.asarray(images)
  if images.ndim != len(model.event_shape) + 1 or (
      tuple(images.shape[1:]) != model.event_shape) or len(images) < 1:
    dims = ", ".join(str(d) for d in model.event_shape)
    raise ValueError(f"{name} has shape {images.shape}; expected a set of "
                     f"images [k, {dims}] with k >= 1")
  data_units.check(images, model.num_levels, name)
  return images


def sample_like(model: protocols.Trainable, params, key: Array, images: Array,
                num_samples: int, temperature: float = 1.0) -> Array:
  """Targeted sampling: `num_samples` draws from p(. | N = images).

  Args:
    model: a neighbourhood model.
    params: its parameters.
    key: PRNG key.
    images: [k, *event], any images (integer levels or floats in data
      units, `nbflows.data_units`) to imitate, the most alike first;
      k = `model.num_neighbours` where that is set.
    num_samples: how many samples.
    temperature: T >= 0.

  Returns:
    [num_samples, *event] samples in data units.

  Raises:
    ValueError: naming `images`, for the wrong shape or units.
  """
  if num_samples < 1:
    raise ValueError(f"num_samples={num_samples}; expected >= 1")
  neighbourhood = _neighbourhood(model, images, "images")
  cond = jnp.broadcast_to(neighbourhood, (num_samples, *neighbourhood.shape))
  return model.sample(params, key, cond, temperature)


class Interpolation(NamedTuple):
  """App. B.4's sequence: k + 1 conditioning sets and their samples.

  Attributes:
    neighbourhoods: [k + 1, k, *event] in data units; set j holds the
      last k - j members of the first neighbourhood and the first j of the
      second.
    samples: [k + 1, num_samples, *event]; row j drawn from set j with the
      same latent noise for every j.
  """
  neighbourhoods: np.ndarray
  samples: Array


def interpolation_sets(first: np.ndarray, second: np.ndarray) -> np.ndarray:
  """The k + 1 sets from `first` to `second`, swapping one member per step.

  Example:
    >>> interpolation_sets(np.array([1, 2, 3]), np.array([7, 8, 9])).tolist()
    [[1, 2, 3], [7, 2, 3], [7, 8, 3], [7, 8, 9]]
  """
  if first.shape != second.shape:
    raise ValueError(f"the neighbourhoods have shapes {first.shape} and "
                     f"{second.shape}; expected equal shapes [k, ...]")
  k = len(first)
  return np.stack([np.concatenate([second[:j], first[j:]])
                   for j in range(k + 1)])


def interpolate_neighbourhoods(model: protocols.Trainable, params, key: Array,
                               first: Array, second: Array,
                               num_samples: int = 1,
                               temperature: float = 1.0) -> Interpolation:
  """Neighbourhood interpolation (App. B.4, Fig. B.1).

  Args:
    model: a neighbourhood model.
    params: its parameters.
    key: PRNG key; the same key samples every set, so the latent noise is
      fixed along the sequence.
    first: [k, *event] the neighbourhood to start from.
    second: [k, *event] the neighbourhood to end at.
    num_samples: samples per set.
    temperature: T >= 0.

  Returns:
    `Interpolation(neighbourhoods [k + 1, k, *event], samples
    [k + 1, num_samples, *event])`.
  """
  first = _neighbourhood(model, first, "first")
  second = _neighbourhood(model, second, "second")
  if first.dtype != second.dtype:      # one set of levels, one of floats
    first, second = data_units.dequantise(first), data_units.dequantise(second)
  sets = interpolation_sets(first, second)
  samples = jnp.stack([sample_like(model, params, key, members, num_samples,
                                   temperature) for members in sets])
  return Interpolation(data_units.dequantise(sets), samples)
