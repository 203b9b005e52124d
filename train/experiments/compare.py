r"""Trains several configs under the same settings and prints one table.

  python -m train.compare --workdir_root workdirs/compare \
      --configs configs/default.py,configs/ccrnvp_digits.py,configs/ncl_digits.py,configs/nct_digits.py \
      --set flow.hidden_channels=16 --set flow.num_res_blocks=1 \
      --set num_train_steps=1500

Every config gets the same `--set` overrides (so RNVP, CC-RNVP, NCL and NCT
train for the same steps with the same flow), is trained and evaluated by
`train.loop.trainer.train_and_evaluate` in ``<workdir_root>/<config name>``
(rerunning resumes or reuses a finished run) with the test metrics
"bpd,marginal_bpd" of `train.evaluate`: the marginal likelihood of eq. 4 on
the same dequantised test points as the conditional bits/dim
(`nbflows.marginal.marginal_over_training_set`: exact for NCL and CC-RNVP,
sampled with M = config.eval.marginal_neighbourhoods for NCT unless
--exact_marginal; an unconditional model's marginal is its test bits/dim).
`train.report` builds the README's tables on `run_config` and
`format_table`. The table (Markdown) is printed and written with the raw numbers to
``<workdir_root>/compare.json``; parameter counts more than 10% away from
the first config's are flagged. VAEs have no bits/dim: compare them with
`--metrics iwae` (test IWAE bound in nats, with its standard error); 2-D
and context-conditioned flows with `--metrics bpd,log_likelihood` (test
log-likelihood in nats, with its standard error).
"""
from __future__ import annotations

import ast
import importlib
import os
import time
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import ml_collections

from nbflows import config_fields
from train.experiments import defaults
from train.loop import trainer

PARAMETER_TOLERANCE = 0.10
COMPARE_METRICS = defaults.COMPARE_METRICS
# (header, eval.json key, format) of the columns after config, model,
# params and steps.
COLUMNS = (("test bpd (conditional)", "test_bpd", "{:.4f}"),
           ("test marginal bpd (eq. 4)", "test_marginal_bpd", "{:.4f}"),
           ("marginal", "marginal_method", "{}"))
IWAE_COLUMNS = (("test IWAE (nats)", "test_iwae", "{:.3f}"),
                ("+- s.e.", "test_iwae_stderr", "{:.3f}"),
                ("S", "iwae_samples", "{}"))
LOG_LIKELIHOOD_COLUMNS = (
    ("test bpd", "test_bpd", "{:.4f}"),
    ("test log-likelihood (nats)", "test_log_likelihood", "{:.4f}"),
    ("+- s.e.", "test_log_likelihood_stderr", "{:.4f}"))


def table_columns(metrics: str) -> Tuple[Tuple[str, str, str], ...]:
  """The table's columns for `--metrics`: the IWAE bound's with "iwae",
  the test log-likelihood's with "log_likelihood" (2-D and context
  models), else the conditional and marginal bits/dim.

  Example:
    >>> [header for header, _, _ in table_columns("bpd,log_likelihood")][1]
    'test log-likelihood (nats)'
  """
  if "iwae" in metrics:
    return IWAE_COLUMNS
  if "log_likelihood" in metrics:
    return LOG_LIKELIHOOD_COLUMNS
  return COLUMNS


def load_config(spec: str, overrides: Sequence[str] = ()
                ) -> ml_collections.ConfigDict:
  """`configs/<name>.py[:arg]` with `field=value` overrides applied.

  Raises:
    ConfigError: for a file outside configs/ or one that does not exist,
      or an override `apply_overrides` refuses.
  """
  path, _, arg = spec.partition(":")
  directory, filename = os.path.split(os.path.normpath(path))
  if os.path.basename(directory) != "configs" or not filename.endswith(".py"):
    raise config_fields.ConfigError(
        f"config {spec!r}; expected configs/<name>.py[:arg]")
  # The file is imported from the `configs` package, wherever the cwd is
  # (a notebook runs in notebooks/): look for it there.
  package_dir = os.path.dirname(importlib.import_module("configs").__file__)
  config_fields.check_config_file(os.path.join(package_dir, filename))
  module = importlib.import_module(f"configs.{filename[:-3]}")
  return apply_overrides(module.get_config(arg or None), overrides)


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """Sets each `field=value` (value a Python literal, else a string).

  Example:
    >>> from configs import default
    >>> config = apply_overrides(default.get_config(),
    ...                          ["flow.hidden_channels=16", "dataset=mnist5k"])
    >>> config.flow.hidden_channels, config.dataset
    (16, 'mnist5k')

  Raises:
    ConfigError: for an override that is not `field=value`, an unknown
      field (with the closest real ones) or a value of the wrong type.
  """
  for override in overrides:
    field, sep, text = override.partition("=")
    if not sep:
      raise config_fields.ConfigError(
          f"--set {override!r}; expected field=value")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text                          # a bare string, e.g. kmeans
    config_fields.set_field(config, field, value)
  return config


def run_config(config: ml_collections.ConfigDict, workdir: str,
               label: str) -> Dict[str, Any]:
  """Trains (or resumes, or reuses) and tests one run; returns its row.

  Args:
    config: the run's config; `config.eval.metrics` chooses what the test
      report holds (see `train.evaluate`).
    workdir: the run's directory.
    label: how the row names the run (e.g. the config spec).

  Returns:
    eval.json's contents with "config": label and "wall_time_s", the
    seconds this call took.

  Raises:
    RuntimeError: if the run was preempted (SIGTERM) before its test.
  """
  start = time.time()
  results = trainer.train_and_evaluate(config, workdir)
  if results["preempted"]:
    raise RuntimeError(f"{label} was preempted at step "
                       f"{results['steps_trained']} in {workdir}; rerun to "
                       "resume")
  row = {k: v for k, v in results.items() if k != "preempted"}
  return {"config": label, **row, "wall_time_s": time.time() - start}


def compare(specs: Sequence[str], overrides: Sequence[str],
            workdir_root: str, exact_marginal: bool = False,
            metrics: str = COMPARE_METRICS) -> List[Dict[str, Any]]:
  """Trains every config (same overrides) and collects one row each.

  Each run is tested with `metrics` (default `COMPARE_METRICS`: conditional
  and marginal bits/dim; "iwae" for VAEs); the marginal is exact for every
  model if `exact_marginal`.

  Returns:
    `run_config` rows: "config", "model", "num_params", "steps_trained",
    "test_bpd", "test_marginal_bpd", "marginal_method", ...
  """
  rows = []
  for spec in specs:
    config = load_config(spec, overrides)
    config.eval.metrics = metrics
    config.eval.exact_marginal = exact_marginal
    name = os.path.splitext(os.path.basename(spec.partition(":")[0]))[0]
    rows.append(run_config(config, os.path.join(workdir_root, name), spec))
  return rows


def format_cell(row: Dict[str, Any], key: str, fmt: str = "{:.4f}") -> str:
  """`row[key]` in `fmt`, "+- sd" if the row has `<key>_sd`; "n/a" if absent.

  Example:
    >>> format_cell({"test_bpd": 1.5, "test_bpd_sd": 0.25}, "test_bpd",
    ...             "{:.2f}")
    '1.50 +- 0.25'
  """
  if key not in row:
    return "n/a"
  sd = row.get(f"{key}_sd")
  return fmt.format(row[key]) + ("" if sd is None else
                                 " +- " + fmt.format(sd))


def markdown_table(rows: Sequence[Mapping[str, Any]],
                   columns: Sequence[Tuple[str, str, str]]) -> str:
  """A Markdown table: a row per `rows`, a column per (header, key, format).

  Example:
    >>> print(markdown_table([{"beta": 4.0}], [("beta", "beta", "{:g}")]))
    | beta |
    | --- |
    | 4 |
  """
  lines = ["| " + " | ".join(header for header, _, _ in columns) + " |",
           "|" + " --- |" * len(columns)]
  for row in rows:
    lines.append("| " + " | ".join(fmt.format(row[key])
                                   for _, key, fmt in columns) + " |")
  return "\n".join(lines)


def format_table(rows: Sequence[Dict[str, Any]],
                 columns: Sequence[Tuple[str, str, str]] = COLUMNS) -> str:
  """A Markdown table of rows: config, model, params, steps, `columns`.

  Parameter counts more than `PARAMETER_TOLERANCE` away from the first
  row's are flagged "(!)"; a value a row lacks shows as "n/a", one with a
  standard deviation `<key>_sd` as "mean +- sd" (`format_cell`).

  Example:
    >>> print(format_table([{"config": "a", "model": "rnvp",
    ...                      "num_params": 100, "steps_trained": 5,
    ...                      "test_bpd": 2.0}], [("bpd", "test_bpd", "{:.2f}")]))
    | config | model | params | steps | bpd |
    | --- | --- | --- | --- | --- |
    | a | rnvp | 100 (+0.0%) | 5 | 2.00 |
  """
  reference = rows[0]["num_params"]
  lines = ["| " + " | ".join(["config", "model", "params", "steps"] +
                             [header for header, _, _ in columns]) + " |",
           "| " + " | ".join(["---"] * (4 + len(columns))) + " |"]
  for row in rows:
    ratio = row["num_params"] / reference - 1
    flag = "" if abs(ratio) <= PARAMETER_TOLERANCE else " (!)"
    cells = [row["config"], row["model"],
             f"{row['num_params']:,} ({ratio:+.1%}){flag}",
             str(row["steps_trained"])]
    cells += [format_cell(row, key, fmt) for _, key, fmt in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)
