"""Generative data augmentation with a trained Exemplar VAE (paper 3, eq. 16).

A classifier (an MLP with ReLU units, as in paper 3, Sec. 5.4) is trained on
the training split; at every step each real image x_i of the batch also
yields a synthetic one, x~_i = decoder mean of z ~ N(mu(x_i), sigma^2 I)
(the exemplar's "more like this" sample), which inherits the label y_i. The
loss is the weighted cross-entropy of eq. 16,

  l = -sum_i [ lambda log p(y_i | x_i) + (1 - lambda) log p(y_i | x~_i) ],

so lambda = 1 is training without augmentation. The script trains with the
given lambda and, with --compare, also with lambda = 1 from the same
initialisation and batches, and writes both test errors to
`WORKDIR/augment.json`:

  python -m train.augment --workdir DIR --weight 0.5 --steps 2000 --compare

where DIR is a finished `python -m train.main` run of an Exemplar VAE config
(e.g. configs/evae_digits.py).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from nbflows.data import sources
from nbflows.models import protocols
from train.loop import workdir_lock

Array = jax.Array


class MLPClassifier(nn.Module):
  """Flattened image in [0, 1] -> class logits through ReLU hidden layers."""
  hidden: Sequence[int]
  num_classes: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h = nn.relu(nn.Dense(width)(h))
    return nn.Dense(self.num_classes)(h)


def augmentation_loss(logits_real: Array, logits_augmented: Array,
                      labels: Array, weight: float,
                      label_smoothing: float = 0.0) -> Array:
  """Eq. 16, averaged over the batch: weight on real, 1 - weight on synthetic.

  Args:
    logits_real: [B, C] logits of the real images.
    logits_augmented: [B, C] logits of their synthetic versions.
    labels: [B] integer labels, shared by both.
    weight: lambda in [0, 1].
    label_smoothing: mass spread uniformly over the classes (paper 3 uses
      label smoothing in Table 6).

  Returns:
    The scalar loss.
  """
  targets = optax.smooth_labels(
      jax.nn.one_hot(labels, logits_real.shape[-1]), label_smoothing)
  real = optax.softmax_cross_entropy(logits_real, targets)
  augmented = optax.softmax_cross_entropy(logits_augmented, targets)
  return jnp.mean(weight * real + (1.0 - weight) * augmented)


def train_classifier(model: protocols.ExemplarSampler, params: Any,
                     splits: sources.Splits, weight: float, steps: int,
                     hidden: Sequence[int] = (1024, 1024),
                     batch_size: int = 100, learning_rate: float = 1e-3,
                     label_smoothing: float = 0.1, seed: int = 0
                     ) -> Dict[str, float]:
  """Trains the classifier with eq. 16 and returns its test error.

  Args:
    model: a trained Exemplar VAE (its `sample_like` makes x~).
    params: the model's parameters.
    splits: the dataset the model was trained on.
    weight: lambda of eq. 16 (1.0: no augmentation, no sampling).
    steps: Adam steps.
    hidden: hidden widths of the MLP.
    batch_size: real images per step.
    learning_rate: Adam's learning rate.
    label_smoothing: see `augmentation_loss`.
    seed: seeds the initialisation, the batches and the samples.

  Returns:
    {"test_error": fraction of misclassified test images,
     "train_error": the same on the training split}.
  """
  if not 0.0 <= weight <= 1.0:
    raise ValueError(f"weight={weight}; expected lambda in [0, 1]")
  levels = splits.info.num_levels
  classifier = MLPClassifier(tuple(hidden), splits.info.num_classes)
  train_x = jnp.asarray(splits.train.images, jnp.float32)
  train_y = jnp.asarray(splits.train.labels)
  init_key, data_key = jax.random.split(jax.random.key(seed))
  variables = classifier.init(init_key, train_x[:1])
  optimizer = optax.adam(learning_rate)

  def grey(x: Array) -> Array:
    return jnp.floor(x) / (levels - 1)

  @jax.jit
  def step(carry, key):
    variables, opt_state = carry
    batch_key, noise_key, sample_key = jax.random.split(key, 3)
    rows = jax.random.randint(batch_key, (batch_size,), 0, train_x.shape[0])
    x = train_x[rows] + jax.random.uniform(noise_key, train_x[rows].shape)
    labels = train_y[rows]
    if weight < 1.0:
      synthetic = model.sample_like(params, sample_key, x)[:, 0]
    else:
      synthetic = x    # weight 1: the synthetic term has zero weight

    def loss_fn(variables):
      return augmentation_loss(classifier.apply(variables, grey(x)),
                               classifier.apply(variables, grey(synthetic)),
                               labels, weight, label_smoothing)

    loss, grads = jax.value_and_grad(loss_fn)(variables)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(variables, updates), opt_state), loss

  (variables, _), _ = jax.lax.scan(step, (variables, optimizer.init(variables)),
                                   jax.random.split(data_key, steps))

  def error(split: sources.Split) -> float:
    logits = classifier.apply(variables, jnp.asarray(split.images, jnp.float32)
                              / (levels - 1))
    return float(jnp.mean(jnp.argmax(logits, -1) != split.labels))

  return {"test_error": error(splits.test), "train_error": error(splits.train)}


def augment(workdir: str, weight: float, steps: int, compare: bool,
            hidden: Sequence[int], seed: int) -> Dict[str, Any]:
  """Loads the run in `workdir`, trains the classifiers, writes augment.json.

  The workdir is locked while it runs (`workdir_lock`).
  """
  from nbflows import checkpoint_loading  # pylint: disable=g-import-not-at-top
  with workdir_lock.hold(workdir):  # it writes augment.json
    model, params, config = checkpoint_loading.load_checkpoint(workdir)
    if not protocols.offers(model, protocols.ExemplarSampler):
      raise ValueError(f"the run in {workdir} trained model {config.model!r}; "
                       "augmentation needs an Exemplar VAE (model 'evae')")
    splits = sources.load(config.dataset, config.data_dir or None,
                          validation_fraction=config.data.validation_fraction,
                          test_fraction=config.data.test_fraction)
    results: Dict[str, Any] = {"weight": weight, "steps": steps,
                               "hidden": list(hidden), "seed": seed}
    augmented = train_classifier(model, params, splits, weight, steps, hidden,
                                 seed=seed)
    results.update({f"augmented_{k}": v for k, v in augmented.items()})
    if compare:
      plain = train_classifier(model, params, splits, 1.0, steps, hidden,
                               seed=seed)
      results.update({f"plain_{k}": v for k, v in plain.items()})
    with open(os.path.join(workdir, "augment.json"), "w") as f:
      json.dump(results, f, indent=2)
    print(json.dumps(results))
    return results
