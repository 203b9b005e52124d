"""Neighbour indices on a trained VAE's encoder means (paper 1, App. B.2)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import vae_digits
from nbflows import checkpoint as checkpoint_format
from nbflows import checkpoint_loading
from nbflows.data import sources
from nbflows.neighbours import index as index_lib
from nbflows.neighbours import vae_features
from train.loop import trainer


@pytest.fixture(scope="module")
def splits():
  return sources.load("digits")


@pytest.fixture(scope="module")
def vae_workdir(tmp_path_factory):
  """A VAE trained for a few steps on digits, in this process."""
  config = vae_digits.get_config("quick")
  config.num_train_steps = 10
  config.eval_every_steps = 10
  workdir = str(tmp_path_factory.mktemp("vae"))
  trainer.train_and_evaluate(config, workdir)
  return workdir


def neighbours_config(features="pca"):
  config = default.get_config().neighbours
  config.features = features
  return config


def test_hook_gives_the_encoder_means_of_the_grey_levels(vae_workdir, splits):
  images = splits.test.images[:37]
  hook, _ = vae_features.encoder_means(vae_workdir,
                                       splits.info.event_shape, batch_size=8)
  means = hook(images)
  model, params, config = checkpoint_loading.load_checkpoint(vae_workdir)
  # Dequantised data units floor to the same grey levels: same means.
  expected, _ = model.encode(params, jnp.asarray(images, jnp.float32) + 0.5)
  assert means.shape == (37, config.vae.latent_dim)
  assert means.dtype == np.float32
  np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-5)
  whole, _ = vae_features.encoder_means(vae_workdir, splits.info.event_shape)
  np.testing.assert_allclose(whole(images), means, rtol=1e-5, atol=1e-6)


def test_index_on_vae_features_differs_from_pca_and_keeps_classes(
    vae_workdir, splits, tmp_path):
  pca = index_lib.build_or_load(splits, neighbours_config(), str(tmp_path),
                                progress=False)
  config = neighbours_config(vae_workdir)
  vae = index_lib.build_or_load(splits, config, str(tmp_path), progress=False)
  assert pca.pca is not None and vae.pca is None
  assert vae.settings["features"].startswith("vae_encoder_means:")
  assert "@step10:" in vae.settings["features"]
  assert "pca_variance" not in vae.settings
  assert pca.settings["features"] == "pca"
  assert (index_lib.default_path(splits, config, str(tmp_path),
                                 vae.settings["features"])
          != index_lib.default_path(splits, neighbours_config(),
                                    str(tmp_path)))
  for name in index_lib.SPLITS:
    assert vae.neighbours[name].shape == pca.neighbours[name].shape
    assert np.any(vae.neighbours[name] != pca.neighbours[name])
    labels = getattr(splits, name).labels
    np.testing.assert_array_equal(
        splits.train.labels[vae.neighbours[name]],
        np.broadcast_to(labels[:, None], vae.neighbours[name].shape))
  # Nearest first in the VAE's feature space, not in PCA's.
  assert np.all(np.diff(vae.distances["test"], axis=1) >= 0)
  again = index_lib.build_or_load(splits, config, str(tmp_path),
                                  progress=False)
  for name in index_lib.SPLITS:
    np.testing.assert_array_equal(again.neighbours[name], vae.neighbours[name])


def test_bad_workdirs_raise_named_errors(vae_workdir, splits, tmp_path):
  missing = str(tmp_path / "missing")
  with pytest.raises(ValueError, match=r"features='.*missing'.*config\.json"):
    index_lib.build_or_load(splits, neighbours_config(missing), str(tmp_path),
                            progress=False)
  not_vae = str(tmp_path / "rnvp")
  checkpoint_format.save_config(default.get_config("quick"), not_vae)
  with pytest.raises(ValueError, match="model 'rnvp'.*expected the workdir "
                     "of a VAE"):
    vae_features.encoder_means(not_vae, splits.info.event_shape)
  with pytest.raises(ValueError, match=r"\(8, 8, 1\); expected images "
                     r"\(28, 28, 1\)"):
    vae_features.encoder_means(vae_workdir, (28, 28, 1))
  hook, _ = vae_features.encoder_means(vae_workdir, splits.info.event_shape)
  with pytest.raises(ValueError, match=r"expected \[n, 8, 8, 1\]"):
    hook(np.zeros((2, 4, 4, 1), np.uint8))
