r"""Paper 5, Fig. 3b: the VAE + flow prior's posterior variance against beta.

  python -m train.beta_sweep --workdir_root DIR --data digits \
      --betas 1,10,100,400,4000,19200

trains `configs/vae_flowprior_<data>.py` (eq. 3: -(beta log p(x | z) +
log p_f(z) - log q(z | x))) once per beta in ``<workdir_root>/beta_<beta>``
with the same overrides (`num_train_steps`, then `--set`), and reports for the checkpoint with the
best validation loss, on the test split:

  * posterior variance: the mean of Lambda(x) over the test images and the
    latent dimensions (paper 5, Sec. 4.2.1: ~1e-4 at beta = 400 on CIFAR-10,
    "effectively we are training an AE");
  * relative variance: the same divided by the mean variance of mu(x)
    over the test images (the flow prior fixes no scale for the codes, so
    the absolute variance could shrink by the codes shrinking);
  * reconstruction: L_recon(x, G(mu(x))) = 0.5 ||x - G(mu(x))||^2 summed
    over the pixels (grey levels in [0, 1]), the test mean;
  * Frechet distance of the samples (eval.json's, the model's default
    metric; Fig. 3a has the FID falling as beta grows).

The encoder is `GaussianEncoder(variance="softplus")`: no floor under the
variance (`nbflows.models.vae.posterior_log_variance`), so it can fall as
beta grows; paper 3's hardtanh would stop it at e^-6 ~ 2.5e-3.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

import jax.numpy as jnp
import numpy as np

from nbflows import checkpoint_loading
from nbflows.data import sources
from nbflows.objectives import latent_flow
from nbflows.models import vae
from train.experiments import compare
from train.experiments import defaults
from train.loop import trainer

BETAS = defaults.BETAS
NUM_TRAIN_STEPS = defaults.BETA_SWEEP_STEPS
COLUMNS = (("beta", "beta", "{:g}"), ("steps", "steps_trained", "{}"),
           ("best step", "checkpoint_step", "{}"),
           ("posterior variance", "posterior_variance", "{:.2e}"),
           ("relative variance", "relative_variance", "{:.2e}"),
           ("reconstruction", "reconstruction", "{:.3f}"),
           ("Frechet distance", "frechet_distance", "{:.1f}"))


def posterior_statistics(model: Any, params: Any,
                         images: np.ndarray) -> Dict[str, float]:
  """Mean posterior variance, relative variance and L_recon over `images`.

  Args:
    model: a trained `glf.GLFModel` with the "vae" objective.
    params: its parameters.
    images: uint8 [N, *event] images.

  Returns:
    {"posterior_variance", "relative_variance", "reconstruction"}, floats
    (see the module docstring).
  """
  x = jnp.asarray(images, jnp.float32) + 0.5          # data units
  mean, log_variance = model.posterior(params, x)     # [N, d] each
  variance = float(jnp.mean(jnp.exp(log_variance)))
  decoded = model.module.apply(params, mean, method="decode")
  reconstruction = latent_flow.reconstruction_loss(
      vae.grey_levels(x, model.num_levels), decoded)
  return {"posterior_variance": variance,
          "relative_variance": variance / float(jnp.mean(jnp.var(mean, 0))),
          "reconstruction": float(jnp.mean(reconstruction))}


def run_beta(beta: float, data: str, workdir_root: str,
             overrides: Sequence[str] = ()) -> Dict[str, Any]:
  """Trains (or resumes, or reuses) one beta; returns its table row."""
  config = compare.load_config(f"configs/vae_flowprior_{data}.py",
                               [f"glf.beta={float(beta)}", *overrides])
  workdir = os.path.join(workdir_root, f"beta_{beta:g}")
  results = trainer.train_and_evaluate(config, workdir)
  model, params, config = checkpoint_loading.load_checkpoint(workdir)
  splits = sources.load(config.dataset, config.data_dir or None,
                        validation_fraction=config.data.validation_fraction,
                        test_fraction=config.data.test_fraction)
  return dict(beta=float(beta), workdir=workdir,
              steps_trained=results["steps_trained"],
              checkpoint_step=results["checkpoint_step"],
              frechet_distance=results.get("frechet_distance", float("nan")),
              **posterior_statistics(model, params, splits.test.images))


def sweep(betas: Sequence[float], data: str, workdir_root: str,
          overrides: Sequence[str] = ()) -> List[Dict[str, Any]]:
  """`run_beta` for each beta, in the order given."""
  if not betas or any(not b > 0 for b in betas):
    raise ValueError(f"betas={list(betas)}; expected one or more values > 0")
  return [run_beta(beta, data, workdir_root, overrides) for beta in betas]


def monotone_falling(rows: Sequence[Dict[str, Any]]) -> bool:
  """Whether the posterior variance falls with every larger beta."""
  ordered = sorted(rows, key=lambda row: row["beta"])
  variances = [row["posterior_variance"] for row in ordered]
  return all(b < a for a, b in zip(variances, variances[1:]))


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
  """The Markdown table of `COLUMNS`, one row per beta."""
  return compare.markdown_table(rows, COLUMNS)

