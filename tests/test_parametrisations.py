"""A latent-flow run from before the softplus variance head (commit 484a464).

Its config.json has no glf.encoder_variance and its checkpoint a head
trained as hardtanh: loading refuses with the change and the two remedies,
the converter records "hardtanh", and the run then loads as trained (the
head's log-variance clipped at 2, where softplus would read ~5).
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vae_flowprior_digits
from nbflows import checkpoint as checkpoint_format
from nbflows import checkpoint_loading
from nbflows import config_fields
from nbflows import parametrisations
from nbflows.models import registry
from train import convert_checkpoint

pytestmark = pytest.mark.usefixtures("fast_compiles")
BIAS = 5.0   # the head's raw output: hardtanh reads 2, softplus log(5.007)


def old_run(workdir):
  """A vae_flowprior workdir as written before glf.encoder_variance."""
  config = vae_flowprior_digits.get_config("quick")
  with config.unlocked():
    config.glf.hidden = (4,)
    config.glf.flow_hidden = (4,)
    config.glf.encoder_variance = "hardtanh"    # what it was trained with
  model = registry.build_model(config)
  params = jax.jit(model.init)(jax.random.key(0), {
      "x": jnp.full((2, *model.event_shape), 0.5)})
  head = params["params"]["encoder"]["log_variance"]
  head["kernel"], head["bias"] = (jnp.zeros_like(head["kernel"]),
                                  jnp.full_like(head["bias"], BIAS))
  manager = checkpoint_format.manager(
      checkpoint_format.checkpoints_dir(workdir, "latest"),
      checkpoint_format.library_item_handlers(), None, read_only=False)
  manager.save(3, args=checkpoint_format.ocp.args.Composite(
      **checkpoint_format.library_save_args(params, 3)))
  manager.close()
  values = config.to_dict()
  del values["glf"]["encoder_variance"]
  with open(os.path.join(workdir, checkpoint_format.CONFIG_FILE), "w") as f:
    json.dump(values, f)
  return model


def test_an_old_flow_prior_run_names_the_change_and_converts(tmp_path,
                                                              capsys):
  workdir = str(tmp_path)
  model = old_run(workdir)
  with pytest.raises(parametrisations.OutdatedConfigError,
                     match=r"variance head changed .* softplus \(commit "
                     r"484a464.*trained with glf.encoder_variance='hardtanh'"
                     r".*Retrain the run, or .*python -m "
                     rf"train.convert_checkpoint {workdir}"):
    checkpoint_loading.load_checkpoint(workdir)

  convert_checkpoint.main(["convert_checkpoint", workdir])
  assert capsys.readouterr().out.startswith(
      "recorded glf.encoder_variance='hardtanh' in ")
  loaded, params, config = checkpoint_loading.load_checkpoint(workdir)
  assert config.glf.encoder_variance == "hardtanh"
  x = np.full((2, *model.event_shape), 3.5, np.float32)
  _, log_variance = loaded.posterior(params, x)
  np.testing.assert_array_equal(log_variance, 2.0)    # clipped, as trained

  # Loading (or resuming) it with today's softplus config is refused.
  with pytest.raises(config_fields.ConfigError,
                     match="--config.glf.encoder_variance=hardtanh"):
    checkpoint_loading.load_checkpoint(
        workdir, config=vae_flowprior_digits.get_config("quick"))
