r"""One-class novelty detection (paper 1, Sec. 3.2, Table 4).

For every chosen class c (after Perera et al. 2019, as in the paper):

  1. keep the training and validation examples of class c only; the test
     split stays whole;
  2. build the neighbour index from those class-c training images alone, so
     the neighbourhood N(x) of every test point, normal or novel, is searched
     among the class-c training images (the detector never sees a test label:
     configs must set `neighbours.same_class=False`, which only matters for
     test points, since every training point is of class c);
  3. train the model on them (`train.loop.trainer.train`: early stopping on the
     class-c validation examples), in `workdir/class_{c}`;
  4. score every test example by log p(x | N(x)) (log p(x) for models without
     a condition), in nats, with the best checkpoint by validation bits/dim;
  5. AUROC of "x is of class c" (positives: test label == c), higher scores
     meaning more normal (`nbflows.metrics.roc.auroc`; ties count one half).

`run_novelty` writes `workdir/novelty.json` (rewritten after every class, so
an interrupted run keeps the finished classes; rerunning resumes each class
from its checkpoints) and each class's scores to
`workdir/class_{c}/scores.npz`.

  python -m train.novelty --config configs/novelty_ncl_contrastive_mnist5k.py \
      --workdir /tmp/novelty_nclc --classes 0,1,2

With ``--configs a.py,b.py`` instead of ``--config``, several models run side
by side, class by class, each in ``<workdir>/<config name>``
(`run_side_by_side`), so that one run compares them on the same classes.
Every class after the first reuses the first's compilations
(`nbflows.compilation_cache.reused_compilations`).

Example:
  >>> from nbflows.data import sources
  >>> splits = one_class_splits(sources.load("digits"), 3)
  >>> set(splits.train.labels.tolist()), len(set(splits.test.labels.tolist()))
  ({3}, 10)
  >>> one_class_auroc([0.9, 0.1, 0.8], [3, 5, 1], normal_class=3)
  1.0
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any, Dict, Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np
from numpy.typing import ArrayLike

from nbflows import checkpoint_loading
from nbflows import compilation_cache
from nbflows.data import pipeline
from nbflows.data import sources
from nbflows.metrics import roc
from nbflows.models import base as model_base
from nbflows.models import protocols
from nbflows.models import registry
from nbflows.neighbours import index as index_lib
from train.evaluation import evaluate as evaluate_lib
from train.loop import sharding
from train.loop import trainer
from train.loop import workdir_lock

NOVELTY_FILE = "novelty.json"
SCORES_FILE = "scores.npz"
INDEX_FILE = "neighbours.npz"
COMPILATION_CACHE_DIR = "compilation_cache"


def class_dir(workdir: str, normal_class: int) -> str:
  """The training run of class `normal_class`: `workdir/class_{c}`."""
  return os.path.join(workdir, f"class_{normal_class}")


def one_class_splits(splits: sources.Splits,
                     normal_class: int) -> sources.Splits:
  """The training and validation examples of one class; the whole test split.

  Args:
    splits: the dataset.
    normal_class: the class the detector learns as normal.

  Returns:
    `Splits` whose train and validation splits hold only `normal_class`
    (in their original order) and whose test split is `splits.test`.

  Raises:
    ValueError: if the class has no training, validation or test examples.
  """
  def keep(split: sources.Split) -> sources.Split:
    rows = split.labels == normal_class
    return sources.Split(split.images[rows], split.labels[rows])

  train, validation = keep(splits.train), keep(splits.validation)
  for name, split in (("train", train), ("validation", validation),
                      ("test", keep(splits.test))):
    if not len(split.labels):
      raise ValueError(
          f"class {normal_class} has no examples in the {name} split of "
          f"{splits.info.name!r}; expected a class in "
          f"{sorted(set(splits.train.labels.tolist()))}")
  return sources.Splits(train, validation, splits.test, splits.info)


def one_class_auroc(scores: ArrayLike, test_labels: ArrayLike,
                    normal_class: int) -> float:
  """AUROC of "normal" (test label == normal_class) against the rest.

  Args:
    scores: [N] log-likelihoods (higher = more normal).
    test_labels: [N] the test examples' class labels.
    normal_class: the class the model was trained on.

  Returns:
    The AUROC (1.0: every normal example outscores every novel one).
  """
  labels = np.asarray(test_labels) == normal_class
  return roc.auroc(scores, labels.astype(np.int32))


def check_novelty_config(config: ml_collections.ConfigDict,
                         model: protocols.Trainable) -> None:
  """Raises for a model without a density or settings that leak test labels.

  A label-conditioned model (CC-RNVP) would be scored given the test
  label; with `neighbours.same_class`, a test point's neighbours would be
  picked by its label, which a novelty detector must not know (and a novel
  test point has no training neighbours of its own class at all).

  Raises:
    TypeError: if the model does not offer `protocols.Density` (the score
      is log p(x | N(x))).
    ValueError: for the label-leaking settings.
  """
  protocols.require(model, protocols.Density,
                    "novelty detection (scores log p(x | N(x)))")
  if model.condition_kind == "label":
    raise ValueError(
        f"model {config.model!r} is conditioned on the class label; novelty "
        "detection expected a model that scores x without its test label")
  if (model.condition_kind == "neighbours" and config.neighbours.kind == "knn"
      and config.neighbours.same_class):
    raise ValueError(
        "config.neighbours.same_class=True; novelty detection expected False: "
        "test neighbourhoods are searched among the normal class's training "
        "images without looking at the test label")


def test_log_likelihoods(model: model_base.DensityModel, params: Any,
                         splits: sources.Splits, index: Any,
                         batch_size: int, seed: int,
                         mesh: sharding.Mesh) -> np.ndarray:
  """log p(x | N(x)) in nats of every test example, in test order.

  Args:
    model: the model (neighbours come from `index` when it is conditioned
      on them).
    params: its parameters, replicated over `mesh`.
    splits: the data; its test split is scored.
    index: the neighbour index (test neighbours index `splits.train`), or None.
    batch_size: evaluation batch size.
    seed: seed of the evaluation keys.
    mesh: the device mesh.

  Returns:
    float64 [N_test].
  """
  def log_prob(params, batch, key):
    del key
    return {"log_prob": model.module.apply(
        params, batch["x"], model.condition(batch), method="log_prob")}

  values = evaluate_lib.split_values(
      model, params, pipeline.eval_iterator(splits, index, "test", batch_size),
      mesh, batch_size, seed, evaluate_lib.make_eval_step(model, mesh,
                                                          log_prob))
  return values["log_prob"]


def run_class(config: ml_collections.ConfigDict, workdir: str,
              splits: sources.Splits, normal_class: int,
              mesh: sharding.Mesh) -> Dict[str, Any]:
  """Trains on one class and scores the whole test split (steps 1-5 above).

  Returns:
    {"auroc", "steps_trained", "checkpoint_step", "seconds",
    "num_train", "num_validation", "mean_log_prob_normal",
    "mean_log_prob_novel"}; the scores and test labels are saved in
    `class_dir(workdir, normal_class)/scores.npz`.
  """
  start = time.time()
  directory = class_dir(workdir, normal_class)
  data = one_class_splits(splits, normal_class)
  model = registry.build_model(config)
  check_novelty_config(config, model)
  index = None
  if model.condition_kind == "neighbours":
    index = index_lib.build_or_load(
        data, config.neighbours, path=os.path.join(directory, INDEX_FILE),
        progress=False)
  results = trainer.train(config, directory, model, data, index, mesh)
  if results["preempted"]:
    raise RuntimeError(f"class {normal_class} was preempted; rerun to resume")
  _, params, _ = checkpoint_loading.load_checkpoint(directory, config)
  params = jax.device_put(params, sharding.replicated(mesh))
  scores = test_log_likelihoods(model, params, data, index,
                                config.eval_batch_size, config.seed, mesh)
  labels = data.test.labels
  normal = labels == normal_class
  if jax.process_index() == 0:
    np.savez(os.path.join(directory, SCORES_FILE), log_prob=scores,
             test_labels=labels)
  return {"auroc": one_class_auroc(scores, labels, normal_class),
          "steps_trained": results["steps_trained"],
          "checkpoint_step": results["checkpoint_step"],
          "seconds": time.time() - start,
          "num_train": len(data.train.labels),
          "num_validation": len(data.validation.labels),
          "mean_log_prob_normal": float(np.mean(scores[normal])),
          "mean_log_prob_novel": float(np.mean(scores[~normal]))}


def run_novelty(config: ml_collections.ConfigDict, workdir: str,
                classes: Optional[Sequence[int]] = None) -> Dict[str, Any]:
  """One-class novelty detection for each class of `classes` (Table 4).

  Args:
    config: a novelty config (configs/novelty_*.py); its model, dataset and
      training settings are used for every class.
    workdir: where `novelty.json` and the per-class runs `class_{c}/` go.
    classes: the normal classes to run, e.g. (0, 1, 2); None for every
      class of the dataset.

  Returns:
    novelty.json's contents: {"model", "dataset", "classes" (list of int),
    "per_class" {str(c): AUROC}, "mean_auroc" (mean over the classes run),
    "details" {str(c): `run_class`'s dict without the AUROC},
    "num_train_steps", "config" (the full config as a dict)}.

  Raises:
    ValueError: for an unknown class, a dataset without labels, or a config
      that leaks test labels (`check_novelty_config`).
  """
  return run_side_by_side({workdir: config}, classes)[workdir]


def run_side_by_side(runs: Mapping[str, ml_collections.ConfigDict],
                     classes: Optional[Sequence[int]] = None
                     ) -> Dict[str, Dict[str, Any]]:
  """`run_novelty` for several configs of one dataset, class by class.

  Class c is run for every config before class c + 1, so a run stopped at
  any point holds the same finished classes for every model: the models
  are compared in one run, on the same classes. Each config's
  `novelty.json` is rewritten after each of its classes. The jitted steps
  of every class after the first reuse the first's compilations (the
  shapes are the same for every class): the persistent compilation cache
  in use, else one in `<common workdir>/compilation_cache` while it runs
  (`nbflows.compilation_cache.reused_compilations`).

  Args:
    runs: {workdir: novelty config}, all of one dataset.
    classes: as `run_novelty`.

  Returns:
    {workdir: that run's novelty.json contents}.

  Raises:
    ValueError: as `run_novelty`, or for configs of different datasets.
    workdir_lock.WorkdirLockedError: if another run holds one of the
      workdirs (each is locked while it runs).
  """
  configs = list(runs.values())
  data_settings = sorted({
      (run_config.dataset, run_config.data_dir,
       run_config.data.validation_fraction, run_config.data.test_fraction)
      for run_config in configs})
  if len(data_settings) != 1:
    raise ValueError(f"configs with (dataset, data_dir, validation_fraction, "
                     f"test_fraction) {data_settings}; expected the same data")
  for run_config in configs:
    trainer.validate_config(run_config)
  config = configs[0]
  info = sources.dataset_info(config.dataset)
  if not info.num_classes or info.num_classes < 2:
    raise ValueError(f"dataset {config.dataset!r} has num_classes="
                     f"{info.num_classes}; novelty detection needs labels")
  classes = list(range(info.num_classes)) if classes is None else [
      int(c) for c in classes]
  bad = [c for c in classes if not 0 <= c < info.num_classes]
  if bad or not classes:
    raise ValueError(f"classes={classes}; expected a non-empty list from 0 "
                     f"to {info.num_classes - 1}")
  mesh = sharding.make_mesh()
  for run_config in configs:
    sharding.check_batch_size(run_config.batch_size, mesh)
  splits = sources.load(
      config.dataset, config.data_dir or None,
      validation_fraction=config.data.validation_fraction,
      test_fraction=config.data.test_fraction)
  results = {workdir: {
      "model": run_config.model, "dataset": run_config.dataset,
      "classes": classes, "per_class": {}, "mean_auroc": None, "details": {},
      "num_train_steps": run_config.num_train_steps,
      "config": run_config.to_dict()} for workdir, run_config in runs.items()}
  with contextlib.ExitStack() as stack:
    for workdir in runs:
      stack.enter_context(workdir_lock.hold(workdir))
    stack.enter_context(compilation_cache.reused_compilations(os.path.join(
        os.path.commonpath([os.path.abspath(w) for w in runs]),
        COMPILATION_CACHE_DIR)))
    for c in classes:
      for workdir, run_config in runs.items():
        details = run_class(run_config, workdir, splits, c, mesh)
        result = results[workdir]
        result["per_class"][str(c)] = details.pop("auroc")
        result["details"][str(c)] = details
        result["mean_auroc"] = float(np.mean(list(
            result["per_class"].values())))
        if jax.process_index() == 0:
          _write_json(result, os.path.join(workdir, NOVELTY_FILE))
  return results


def format_table(results: Dict[str, Any]) -> str:
  """novelty.json as a one-row text table: the AUROC of each class and mean."""
  classes = list(results["per_class"])
  header = f"{'model':<24}" + "".join(f"{c:>7}" for c in classes) + "   mean"
  name = results["model"] + (
      "+contrastive" if results["config"]["contrastive"]["enabled"] else "")
  row = f"{name + '/' + results['dataset']:<24}" + "".join(
      f"{results['per_class'][c]:7.3f}" for c in classes)
  return f"{header}\n{row}{results['mean_auroc']:7.3f}"


def _write_json(results: Dict[str, Any], path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=2, default=_json_default)
  os.replace(path + ".tmp", path)


def _json_default(value: Any) -> Any:
  """Config values json cannot write (tuples are fine; numpy scalars not)."""
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"cannot write {type(value).__name__} {value!r} to JSON")
