"""Models fitted to the data in closed form instead of trained by gradients.

The kernel density estimate of paper 1 (eq. 2, `nbflows.models.kde`) has no
loss to descend: its centres are the whole training split and its bandwidth
is the candidate with the highest validation log-likelihood.
`train.loop.trainer` hands any model offering `protocols.Fitted` (a ``fit(key, train_images,
validation_points)`` method) to `fit_and_evaluate`, which

  1. fits it on ``splits.train.images`` (every training image, not a batch)
     and the validation points the trainer's own validation pass scores
     (`pipeline.eval_iterator`, dequantised with its fixed seed);
  2. saves the result as step 0 (no gradient steps), both the latest and the
     best checkpoint of its parameters (no optimizer state), with
     `config.json`, so that
     `nbflows.load_checkpoint` and ``python -m train.evaluate`` read it like
     any run;
  3. logs the validation bits/dim and the bandwidth, and writes the test
     report (`evaluate.write_test_report`: eval.json, samples.png).

Example:
  >>> from configs import kde_digits
  >>> from train.loop import trainer
  >>> results = trainer.train_and_evaluate(  # doctest: +SKIP
  ...     kde_digits.get_config(), "/tmp/kde_digits")
  >>> results["test_bpd"]  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Dict

from absl import logging
import jax
import ml_collections
import numpy as np

from nbflows import checkpoint as checkpoint_format
from nbflows import units
from nbflows.data import pipeline
from nbflows.data import sources
from nbflows.models import protocols
from train.evaluation import evaluate as evaluate_lib
from train.loop import checkpoint as checkpoint_lib
from train.loop import metric_writer
from train.loop import sharding


def validation_points(splits: sources.Splits, batch_size: int) -> np.ndarray:
  """The dequantised validation split the trainer's validation pass scores.

  Returns:
    float32 [N_validation, *event] in data units, in split order.
  """
  return np.concatenate([batch["x"] for batch in pipeline.eval_iterator(
      splits, None, "validation", batch_size)])


def fit_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                     model: protocols.Fitted, splits: sources.Splits,
                     index: Any, mesh: sharding.Mesh) -> Dict[str, Any]:
  """Fits `model` (steps 1-3 of the module docstring) and tests it.

  Args:
    config: a validated config.
    workdir: where config.json, the checkpoint, metrics and eval.json go.
    model: a `protocols.Fitted` and `protocols.Trainable` model:
      ``fit(key, train, validation) -> (params, fit)``, `fit` having
      `sigma` and `validation_log_prob` (`kde.BandwidthFit`).
    splits: the dataset.
    index: the neighbour index (None for an unconditional model).
    mesh: the device mesh.

  Returns:
    eval.json's contents plus "preempted": False, as `trainer.train`.
  """
  init_key, _ = jax.random.split(jax.random.key(config.seed))
  params, fit = model.fit(init_key, splits.train.images,
                          validation_points(splits, config.eval_batch_size))
  validation_bpd = units.bits_per_dim(float(np.max(fit.validation_log_prob)),
                                      model.num_dims)
  checkpoint_format.save_config(config, workdir)
  checkpointer = checkpoint_lib.Checkpointer(workdir, config.keep_checkpoints)
  # No optimizer, so no "opt_state" item: the library's items and the loop.
  checkpointer.save(0, {"params": params, "step": 0}, {
      "best_value": validation_bpd, "best_step": 0,
      "evals_without_improvement": 0, "stopped_early": False}, best=True)
  checkpointer.close()
  writer = metric_writer.MetricWriter(workdir)
  writer.write(0, "validation", {"bpd": validation_bpd,
                                 "bandwidth": float(fit.sigma)})
  logging.info("fitted: validation bits/dim %.4f (bandwidth %.4g)",
               validation_bpd, float(fit.sigma))
  results = evaluate_lib.write_test_report(
      config, workdir, model,
      jax.device_put(params, sharding.replicated(mesh)), splits, index, mesh,
      steps_trained=0, checkpoint_step=0, skipped_nonfinite_steps=0)
  writer.write(0, "test", {name[len("test_"):]: value
                           for name, value in results.items()
                           if name.startswith("test_")})
  writer.close()
  return dict(results, preempted=False)
