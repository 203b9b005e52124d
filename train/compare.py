r"""Trains several configs under the same settings and prints one table.

  python -m train.compare --workdir_root workdirs/compare \
      --configs configs/default.py,configs/ccrnvp_digits.py,configs/ncl_digits.py,configs/nct_digits.py \
      --set flow.hidden_channels=16 --set flow.num_res_blocks=1 \
      --set num_train_steps=1500

Every config gets the same `--set` overrides (so RNVP, CC-RNVP, NCL and NCT
train for the same steps with the same flow), is trained and evaluated by
`train.trainer.train_and_evaluate` in ``<workdir_root>/<config name>``
(rerunning resumes or reuses a finished run), and then the marginal
likelihood of eq. 4 is computed on the same dequantised test points as the
conditional bits/dim (`nbflows.marginal.marginal_over_training_set`: exact
for NCL and CC-RNVP, sampled with M = config.eval.marginal_neighbourhoods for
NCT unless --exact_marginal; an unconditional model's marginal is its test
bits/dim). The table
(Markdown) is printed and written with the raw numbers to
``<workdir_root>/compare.json``; parameter counts more than 10% away from
the first config's are flagged.
"""
from __future__ import annotations

import ast
import importlib
import json
import math
import os
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np

from nbflows import checkpoint_loading
from nbflows import marginal
from nbflows.data import pipeline
from nbflows.data import sources
from train import evaluate as evaluate_lib
from train import trainer

flags.DEFINE_list("configs", None, "Comma-separated config files, e.g. "
                  "configs/default.py,configs/ncl_digits.py (a ':quick' "
                  "suffix passes the argument to get_config).")
flags.DEFINE_multi_string("set", [], "An override field=value applied to "
                          "every config, e.g. num_train_steps=1500.")
flags.DEFINE_string("workdir_root", None, "Each run goes to "
                    "<workdir_root>/<config file stem>.")
flags.DEFINE_bool("exact_marginal", False, "Sum eq. 4 over every training "
                  "neighbourhood for every model (NCT: N conditional passes "
                  "per test point) instead of sampling M of them.")
flags.mark_flags_as_required(["configs", "workdir_root"])
FLAGS = flags.FLAGS
PARAMETER_TOLERANCE = 0.10


def load_config(spec: str, overrides: Sequence[str]
                ) -> ml_collections.ConfigDict:
  """`configs/<name>.py[:arg]` with `field=value` overrides applied.

  Raises:
    ValueError: for a file outside configs/, or an override that is not
      `field=value` (an unknown field raises from the locked config).
  """
  path, _, arg = spec.partition(":")
  directory, filename = os.path.split(os.path.normpath(path))
  if os.path.basename(directory) != "configs" or not filename.endswith(".py"):
    raise ValueError(f"config {spec!r}; expected configs/<name>.py[:arg]")
  module = importlib.import_module(f"configs.{filename[:-3]}")
  config = module.get_config(arg or None)
  for override in overrides:
    field, sep, text = override.partition("=")
    if not sep:
      raise ValueError(f"--set {override!r}; expected field=value")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text                          # a bare string, e.g. kmeans
    node = config
    *parents, leaf = field.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def test_marginal(config: ml_collections.ConfigDict, workdir: str,
                  exact: bool = False) -> marginal.TrainingSetMarginal:
  """Eq. 4 on the test split for the best checkpoint of a finished run."""
  model, params, config = checkpoint_loading.load_checkpoint(workdir, config)
  splits, index = evaluate_lib.load_data(config, model)
  x = np.concatenate([batch["x"] for batch in pipeline.eval_iterator(
      splits, index, "test", config.eval_batch_size)])
  if model.condition_kind == "none":
    log_prob = np.concatenate([
        np.asarray(model.log_prob(params, x[i:i + config.eval_batch_size]))
        for i in range(0, len(x), config.eval_batch_size)])
    return marginal.TrainingSetMarginal(log_prob, "unconditional")
  return marginal.marginal_over_training_set(
      model, params, x, splits.train, index,
      num_neighbourhoods=config.eval.marginal_neighbourhoods,
      key=jax.random.key(config.seed), exact=exact)


def compare(specs: Sequence[str], overrides: Sequence[str],
            workdir_root: str, exact_marginal: bool = False
            ) -> List[Dict[str, Any]]:
  """Trains every config (same overrides) and collects one row each.

  Returns:
    Rows {"config", "model", "num_params", "steps_trained", "test_bpd",
    "test_marginal_bpd", "marginal_method"}.
  """
  rows = []
  for spec in specs:
    config = load_config(spec, overrides)
    name = os.path.splitext(os.path.basename(spec.partition(":")[0]))[0]
    workdir = os.path.join(workdir_root, name)
    results = trainer.train_and_evaluate(config, workdir)
    result = test_marginal(config, workdir, exact_marginal)
    num_dims = math.prod(sources.dataset_info(config.dataset).event_shape)
    rows.append({
        "config": spec, "model": config.model,
        "num_params": int(results["num_params"]),
        "steps_trained": int(results["steps_trained"]),
        "test_bpd": float(results["test_bpd"]),
        "test_marginal_bpd": float(np.mean(marginal.to_bits_per_dim(
            result.log_prob, num_dims))),
        "marginal_method": result.method})
  return rows


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
  """A Markdown table of `compare`'s rows."""
  reference = rows[0]["num_params"]
  lines = ["| config | model | params | steps | test bpd (conditional) | "
           "test marginal bpd (eq. 4) | marginal |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for row in rows:
    ratio = row["num_params"] / reference - 1
    flag = "" if abs(ratio) <= PARAMETER_TOLERANCE else " (!)"
    lines.append(
        f"| {row['config']} | {row['model']} | {row['num_params']:,} "
        f"({ratio:+.1%}){flag} | {row['steps_trained']} | "
        f"{row['test_bpd']:.4f} | {row['test_marginal_bpd']:.4f} | "
        f"{row['marginal_method']} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  rows = compare(FLAGS.configs, FLAGS.set, FLAGS.workdir_root,
                 FLAGS.exact_marginal)
  table = format_table(rows)
  with open(os.path.join(FLAGS.workdir_root, "compare.json"), "w") as f:
    json.dump({"overrides": FLAGS.set, "rows": rows, "table": table}, f,
              indent=2)
  print(table)


if __name__ == "__main__":
  app.run(main)
