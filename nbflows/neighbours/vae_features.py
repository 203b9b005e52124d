"""Neighbour features from a trained VAE: its encoder means (paper 1, App. B.2).

For CelebA, paper 1 searches neighbours on the latent means mu(x) of a
beta-VAE (beta = 1.5, configs/vae_beta_celeba.py) instead of on PCA
coefficients. `encoder_means(workdir, event_shape)` turns the workdir of a
VAE trained by this library into the feature hook of
`nbflows.neighbours.index` (uint8 images [n, H, W, C] -> float32 [n, d_z])
and the name the index records for it; `config.neighbours.features = WORKDIR`
asks `index.build_or_load` to use it.

The images are encoded as the VAE sees them at evaluation, deterministically:
grey levels k / (L - 1) (`nbflows.models.vae.VAEModel.encode`), not a random
binarisation.

The name holds the workdir's absolute path, the checkpoint step and a hash
of its config.json, so a retrained VAE makes a cached index stale (an
`IndexMismatchError`) rather than silently reusing it. The parameters are
restored only when the hook is first called: a cached index loads without
touching the checkpoint.

Example:
  >>> hook, name = encoder_means("workdirs/vae_beta_celeba",
  ...                            (64, 64, 3))  # doctest: +SKIP
  >>> hook(splits.train.images).shape  # doctest: +SKIP
  (162770, 32)
"""
from __future__ import annotations

import hashlib
import os
from typing import Callable, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

PCA = "pca"
BATCH_SIZE = 1024   # images encoded per jitted call


def encoder_means(workdir: str, event_shape: Sequence[int],
                  batch_size: int = BATCH_SIZE
                  ) -> Tuple[Callable[[np.ndarray], np.ndarray], str]:
  """The feature hook mu(x) of the VAE trained in `workdir`, and its name.

  Args:
    workdir: a training run of a VAE model (config.json and a checkpoint;
      the best by validation loss is used, else the latest).
    event_shape: the dataset's image shape [H, W, C]; must be the VAE's.
    batch_size: images per jitted encoder call.

  Returns:
    (hook, name): hook maps uint8 images [n, H, W, C] to float32 encoder
    means [n, d_z]; name is "vae_encoder_means:<abs workdir>@step<step>:
    config<hash>".

  Raises:
    ValueError: if `workdir` is not a directory with a config.json and a
      checkpoint, if its model offers no Gaussian encoder
      (`nbflows.models.protocols.GaussianEncoder`,
      whose `encode` gives mu(x)), or if its image
      shape is not `event_shape`; the message names what was given and what
      was expected.
  """
  # Imported here: reading checkpoints needs orbax, which building an index
  # on PCA features does not.
  from nbflows import checkpoint as checkpoint_format  # pylint: disable=g-import-not-at-top
  from nbflows import checkpoint_loading  # pylint: disable=g-import-not-at-top
  from nbflows.models import registry  # pylint: disable=g-import-not-at-top
  from nbflows.models import protocols  # pylint: disable=g-import-not-at-top

  expected = "the workdir of a VAE trained by python -m train.main"
  config_path = os.path.join(workdir, checkpoint_format.CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise ValueError(f"config.neighbours.features={workdir!r}: no "
                     f"{config_path}; expected {PCA!r} or {expected}")
  config = checkpoint_format.load_config(workdir)
  model = registry.build_model(config)
  if not protocols.offers(model, protocols.GaussianEncoder):
    raise ValueError(f"config.neighbours.features={workdir!r} holds model "
                     f"{config.model!r}, which has no Gaussian encoder; "
                     f"expected {expected} (e.g. configs/vae_beta_celeba.py)")
  if tuple(model.event_shape) != tuple(event_shape):
    raise ValueError(f"config.neighbours.features={workdir!r} holds a VAE of "
                     f"{config.dataset!r} images {tuple(model.event_shape)}; "
                     f"expected images {tuple(event_shape)} of the dataset "
                     "being indexed")
  which, step = checkpoint_format.chosen_checkpoint(workdir)
  if step is None:
    raise ValueError(f"config.neighbours.features={workdir!r} holds no "
                     f"checkpoint; expected {expected}")
  with open(config_path, "rb") as f:
    config_hash = hashlib.sha256(f.read()).hexdigest()[:12]
  name = (f"vae_encoder_means:{os.path.abspath(workdir)}@step{step}:"
          f"config{config_hash}")

  @jax.jit
  def means(params, images):   # [b, H, W, C] uint8 -> [b, d_z]
    return model.encode(params, images.astype(jnp.float32))[0]

  loaded = {}

  def hook(images: np.ndarray) -> np.ndarray:
    if tuple(images.shape[1:]) != tuple(event_shape):
      raise ValueError(f"images of shape {images.shape}; expected "
                       f"[n, {', '.join(map(str, event_shape))}]")
    if "params" not in loaded:
      _, loaded["params"], _ = checkpoint_loading.load_checkpoint(
          workdir, which=which)
    # Pad the last batch to `batch_size`: one compile for every batch.
    chunks = []
    for start in range(0, len(images), batch_size):
      chunk = images[start:start + batch_size]
      padded = np.zeros((batch_size, *chunk.shape[1:]), chunk.dtype)
      padded[:len(chunk)] = chunk
      chunks.append(np.asarray(means(loaded["params"], padded))[:len(chunk)])
    if not chunks:
      return np.zeros((0, model.module.latent_dim), np.float32)
    return np.concatenate(chunks).astype(np.float32)

  return hook, name
