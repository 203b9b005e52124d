"""A small convolutional classifier whose features score sample quality.

The papers report FID, the Frechet distance on Inception-v3 features, which
cannot be downloaded here. `load_or_train` trains (once per dataset and
settings, then loads from a cache) a small classifier on the dataset's
training split; its penultimate layer gives the features on which
`frechet_distance` and `prd_score` are computed. The numbers are named
"Frechet distance on classifier features", never "FID". Any other feature
function, e.g. Inception's where available, can be used instead: every
function here that takes a `FeatureFn` accepts any callable
`images -> [N, F]`.

Images are given as arrays, independently of the data loader: either integer
images [N, H, W, C] with values in [0, num_levels), or float data in data
units (uint8 + u, u ~ U[0, 1)), which is quantised with floor, as when a
sample is saved as an image. Both are then mapped to [-0.5, 0.5].

Example:
  >>> import numpy as np, sklearn.datasets, tempfile
  >>> digits = sklearn.datasets.load_digits()
  >>> images = digits.images.reshape(-1, 8, 8, 1).astype(np.uint8)
  >>> net = load_or_train("digits", images, digits.target, num_levels=17,
  ...                     num_classes=10, cache_dir=tempfile.mkdtemp(),
  ...                     settings=ClassifierSettings(num_steps=20))
  >>> net(images[:5]).shape
  (5, 128)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Callable, Dict, Sequence, Tuple

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nbflows.metrics import frechet
from nbflows.metrics import prd

Array = jax.Array
FeatureFn = Callable[[np.ndarray], np.ndarray]
CACHE_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ClassifierSettings:
  """Architecture and training settings; all of them key the cache.

  Attributes:
    widths: channels of the 3x3 convolutions; the first has stride 1, the
      others stride 2.
    feature_dim: width of the penultimate (feature) layer.
    num_steps: Adam steps.
    batch_size: examples per step.
    learning_rate: Adam's learning rate.
    seed: initialisation and batch-order seed.
  """
  widths: Tuple[int, ...] = (32, 64, 64)
  feature_dim: int = 128
  num_steps: int = 2000
  batch_size: int = 128
  learning_rate: float = 1e-3
  seed: int = 0


class ConvClassifier(nn.Module):
  """conv3x3 (stride 1) -> conv3x3 (stride 2) ... -> dense (features) -> logits.

  Attributes:
    widths: channels per convolution (ReLU after each).
    feature_dim: width of the ReLU feature layer.
    num_classes: number of logits.
  """
  widths: Sequence[int]
  feature_dim: int
  num_classes: int

  def setup(self):
    self.convs = [nn.Conv(width, (3, 3), strides=1 if i == 0 else 2)
                  for i, width in enumerate(self.widths)]
    self.hidden = nn.Dense(self.feature_dim)
    self.head = nn.Dense(self.num_classes)

  def features(self, x: Array) -> Array:
    """[B, H, W, C] images in [-0.5, 0.5] -> [B, feature_dim] features."""
    for conv in self.convs:
      x = nn.relu(conv(x))
    return nn.relu(self.hidden(x.reshape(x.shape[0], -1)))

  def __call__(self, x: Array) -> Array:
    """[B, H, W, C] images in [-0.5, 0.5] -> [B, num_classes] logits."""
    return self.head(self.features(x))


def to_network_input(images: np.ndarray, num_levels: int) -> np.ndarray:
  """Maps integer images or data-unit floats to float32 in [-0.5, 0.5].

  Args:
    images: [N, H, W, C]; integers in [0, num_levels), or floats in data
      units (quantised by floor and clipped to [0, num_levels - 1]).
    num_levels: number of intensity levels (256 for uint8 images, 17 for
      scikit-learn's digits).

  Raises:
    ValueError: for a non-image shape, num_levels < 2, or integer values out
      of range.
  """
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images has shape {images.shape}; expected "
                     "[N, H, W, C]")
  if num_levels < 2:
    raise ValueError(f"num_levels={num_levels}; expected >= 2")
  if np.issubdtype(images.dtype, np.integer):
    if images.size and (images.min() < 0 or images.max() >= num_levels):
      raise ValueError(f"integer images have values in [{images.min()}, "
                       f"{images.max()}]; expected [0, {num_levels})")
    levels = images.astype(np.float32)
  else:
    levels = np.clip(np.floor(images), 0, num_levels - 1).astype(np.float32)
  return levels / (num_levels - 1) - 0.5


class FeatureNet:
  """A trained `ConvClassifier`; calling it gives penultimate features.

  Attributes:
    module: the classifier.
    params: its parameters.
    num_levels: intensity levels of the images it was trained on.
  """

  def __init__(self, module: ConvClassifier, params, num_levels: int):
    self.module = module
    self.params = params
    self.num_levels = num_levels
    self._features = jax.jit(
        lambda p, x: module.apply(p, x, method="features"))
    self._logits = jax.jit(module.apply)

  def _batched(self, fn, images: np.ndarray, batch_size: int) -> np.ndarray:
    x = to_network_input(images, self.num_levels)
    return np.concatenate(
        [np.asarray(fn(self.params, x[i:i + batch_size]), np.float64)
         for i in range(0, len(x), batch_size)])

  def __call__(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """[N, H, W, C] images -> [N, feature_dim] float64 features."""
    return self._batched(self._features, images, batch_size)

  def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of `images` classified as `labels`."""
    logits = self._batched(self._logits, images, 512)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


def train_classifier(images: np.ndarray, labels: np.ndarray, num_levels: int,
                     num_classes: int,
                     settings: ClassifierSettings) -> FeatureNet:
  """Trains a `ConvClassifier` with Adam on softmax cross-entropy.

  Args:
    images: [N, H, W, C] training images (see `to_network_input`).
    labels: [N] integer class labels in [0, num_classes).
    num_levels: intensity levels of the images.
    num_classes: number of classes.
    settings: architecture and training settings.

  Returns:
    The trained `FeatureNet`.

  Raises:
    ValueError: if labels do not match the images or are out of range.
  """
  x = to_network_input(images, num_levels)
  labels = np.asarray(labels)
  if labels.shape != (x.shape[0],) or not np.issubdtype(labels.dtype,
                                                         np.integer):
    raise ValueError(f"labels has shape {labels.shape} and dtype "
                     f"{labels.dtype}; expected integers of shape "
                     f"[{x.shape[0]}]")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"labels lie in [{labels.min()}, {labels.max()}]; "
                     f"expected [0, {num_classes})")
  module = ConvClassifier(tuple(settings.widths), settings.feature_dim,
                          num_classes)
  params = module.init(jax.random.key(settings.seed), x[:1])
  optimizer = optax.adam(settings.learning_rate)
  opt_state = optimizer.init(params)

  @jax.jit
  def train_step(params, opt_state, x_batch, y_batch):
    def loss_fn(params):
      logits = module.apply(params, x_batch)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, y_batch).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(settings.seed)
  batch_size = min(settings.batch_size, x.shape[0])
  for _ in range(settings.num_steps):
    index = rng.choice(x.shape[0], size=batch_size, replace=False)
    params, opt_state = train_step(params, opt_state, x[index],
                                   labels[index].astype(np.int32))
  return FeatureNet(module, params, num_levels)


def cache_key(dataset_name: str, images: np.ndarray, labels: np.ndarray,
              num_levels: int, num_classes: int,
              settings: ClassifierSettings) -> str:
  """File stem `feature_net-{dataset}-{hash}` of settings and training data."""
  digest = hashlib.sha256()
  digest.update(json.dumps({
      "version": CACHE_FORMAT_VERSION,
      "settings": dataclasses.asdict(settings),
      "num_levels": num_levels, "num_classes": num_classes,
      "shape": list(np.shape(images)), "dtype": str(np.asarray(images).dtype),
  }, sort_keys=True).encode())
  digest.update(np.ascontiguousarray(images).tobytes())
  digest.update(np.ascontiguousarray(labels).tobytes())
  return f"feature_net-{dataset_name}-{digest.hexdigest()[:16]}"


def _save(path: str, params) -> None:
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  tmp = f"{path}.tmp-{os.getpid()}.npz"
  np.savez(tmp, **{k: np.asarray(v) for k, v in flat.items()})
  os.replace(tmp, path)  # atomic: readers never see a partial file


def _load(path: str):
  with np.load(path) as data:
    flat = {k: jnp.asarray(data[k]) for k in data.files}
  return flax.traverse_util.unflatten_dict(flat, sep="/")


def load_or_train(dataset_name: str, images: np.ndarray, labels: np.ndarray,
                  num_levels: int, num_classes: int, cache_dir: str,
                  settings: ClassifierSettings = ClassifierSettings()
                  ) -> FeatureNet:
  """Loads the cached classifier for this data and settings, or trains it.

  The cache file is `{cache_dir}/{cache_key(...)}.npz`, written atomically.

  Args:
    dataset_name: the dataset's name (part of the file name).
    images: [N, H, W, C] training-split images.
    labels: [N] training-split labels.
    num_levels: intensity levels of the images.
    num_classes: number of classes.
    cache_dir: directory of cached classifiers (created if missing).
    settings: architecture and training settings.

  Returns:
    The `FeatureNet`, a feature function `images -> [N, feature_dim]`.
  """
  path = os.path.join(cache_dir, cache_key(dataset_name, images, labels,
                                           num_levels, num_classes,
                                           settings) + ".npz")
  if os.path.exists(path):
    module = ConvClassifier(tuple(settings.widths), settings.feature_dim,
                            num_classes)
    return FeatureNet(module, _load(path), num_levels)
  net = train_classifier(images, labels, num_levels, num_classes, settings)
  os.makedirs(cache_dir, exist_ok=True)
  _save(path, net.params)
  return net


def sample_quality(feature_fn: FeatureFn, real_images: np.ndarray,
                   generated_images: np.ndarray,
                   **prd_kwargs) -> Dict[str, float]:
  """Frechet distance and PRD summary of generated vs real images.

  Args:
    feature_fn: `images -> [N, F]` features, e.g. a `FeatureNet` or an
      Inception feature function.
    real_images: [N_r, H, W, C] real (reference) images.
    generated_images: [N_g, H, W, C] model samples.
    **prd_kwargs: passed to `prd.prd_score` (num_clusters, num_runs, ...).

  Returns:
    {"frechet_distance", "prd_f8" (recall-like), "prd_f1_8"
    (precision-like)} on the features of `feature_fn`.
  """
  real = np.asarray(feature_fn(real_images), np.float64)
  generated = np.asarray(feature_fn(generated_images), np.float64)
  result = prd.prd_score(generated, real, **prd_kwargs)
  return {"frechet_distance": frechet.frechet_distance(real, generated),
          "prd_f8": result.f_8, "prd_f1_8": result.f_1_8}
