r"""The README's results: paper 1's models on the offline data, one command.

  python -m train.report --workdir_root workdirs/report \
      --datasets digits,mnist5k

For every dataset and row (`ROWS`: RNVP, CC-RNVP, NCL, NCT, KDE) the run in
``<workdir_root>/<dataset>/<row>`` is trained and tested by
`train.compare.run_config` (rerunning resumes or reuses finished runs) with
the test metrics `REPORT_METRICS` of `train.evaluate`: conditional bits/dim,
marginal bits/dim (paper 1, eq. 4), and the Frechet distance and PRD
(F_8 recall-like, F_1/8 precision-like) of `config.eval.num_samples`
samples against the test split, on the offline classifier's features (not
Inception's, so not FIDs). Each row uses `configs/<row>_<dataset>.py`
(`configs/<row>_digits.py` with `dataset=<dataset>` where there is none);
RNVP is sized by `configs.paper1.cpu_sized` like the other flows, so it is
their like-for-like baseline (same flow, same steps). The one-class
novelty table is added from ``<workdir_root>/novelty_*/novelty.json``
(`train.novelty`) where such files exist.

Writes ``<workdir_root>/report.md`` (Markdown tables, the command and wall
times), ``report.json`` (every number) and ``report.png`` (bits/dim and
Frechet distance per model).
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import app
from absl import flags
import ml_collections

from configs import paper1
from train import compare

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = ("rnvp", "ccrnvp", "ncl", "nct", "kde")
REPORT_METRICS = "bpd,marginal_bpd,fd,prd"
COLUMNS = compare.COLUMNS + (
    ("Frechet distance (classifier features)", "frechet_distance", "{:.2f}"),
    ("PRD F8 (recall)", "prd_f8", "{:.3f}"),
    ("PRD F1/8 (precision)", "prd_f1_8", "{:.3f}"),
    ("wall time (s)", "wall_time_s", "{:.0f}"))


def row_config(row: str, dataset: str, overrides: Sequence[str] = (),
               quick: bool = False
               ) -> Tuple[str, List[str], ml_collections.ConfigDict]:
  """The config spec, overrides and config of one row of the report.

  Args:
    row: one of `ROWS`.
    dataset: e.g. "digits" or "mnist5k".
    overrides: `field=value` settings applied after the row's own.
    quick: use each config's "quick" (smoke-test) version.

  Returns:
    (spec, overrides applied, locked config with eval.metrics =
    `REPORT_METRICS`).

  Raises:
    ValueError: for a row outside `ROWS`.
  """
  if row not in ROWS:
    raise ValueError(f"row {row!r}; expected one of {', '.join(ROWS)}")
  path = f"configs/{row}_{dataset}.py"
  applied = []
  if not os.path.exists(os.path.join(REPO, path)):
    path = f"configs/{row}_digits.py"
    applied.append(f"dataset={dataset}")
  spec = path + (":quick" if quick else "")
  config = compare.load_config(spec)
  if row == "rnvp":  # before the overrides, which may change the steps
    paper1.cpu_sized(config, "quick" if quick else None)
    applied.insert(0, "configs.paper1.cpu_sized")
  applied += list(overrides)
  config = compare.apply_overrides(
      config, [o for o in applied if o != "configs.paper1.cpu_sized"])
  config.eval.metrics = REPORT_METRICS
  return spec, applied, config


def novelty_results(workdir_root: str) -> Dict[str, Dict[str, Any]]:
  """{run name: novelty.json} for every `<workdir_root>/novelty_*/`."""
  results = {}
  pattern = os.path.join(workdir_root, "novelty_*", "novelty.json")
  for path in sorted(glob.glob(pattern)):
    with open(path) as f:
      results[os.path.basename(os.path.dirname(path))[len("novelty_"):]] = (
          json.load(f))
  return results


def novelty_table(results: Mapping[str, Mapping[str, Any]]) -> str:
  """A Markdown table of one-class novelty AUROC: a row per run.

  Example:
    >>> print(novelty_table({"rnvp": {"per_class": {"0": 0.5, "1": 0.75},
    ...                               "mean_auroc": 0.625}}))
    | run | class 0 | class 1 | mean AUROC |
    | --- | --- | --- | --- |
    | rnvp | 0.500 | 0.750 | 0.625 |
  """
  classes = sorted({c for r in results.values() for c in r["per_class"]},
                   key=int)
  lines = ["| run | " + " | ".join(f"class {c}" for c in classes) +
           " | mean AUROC |",
           "| " + " | ".join(["---"] * (len(classes) + 2)) + " |"]
  for name, result in results.items():
    cells = [f"{result['per_class'][c]:.3f}" if c in result["per_class"]
             else "n/a" for c in classes]
    lines.append(f"| {name} | " + " | ".join(cells) +
                 f" | {result['mean_auroc']:.3f} |")
  return "\n".join(lines)


def plot(tables: Mapping[str, Sequence[Mapping[str, Any]]],
         path: str) -> None:
  """Bits/dim (conditional and marginal) and Frechet distance per model."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(len(tables), 2, squeeze=False,
                           figsize=(10, 3.2 * len(tables)))
  for (dataset, rows), (left, right) in zip(tables.items(), axes):
    names = [row["model"] for row in rows]
    position = np.arange(len(rows))
    for offset, key, label in ((-0.2, "test_bpd", "conditional"),
                               (0.2, "test_marginal_bpd", "marginal (eq. 4)")):
      left.bar(position + offset, [row.get(key, np.nan) for row in rows],
               0.4, label=label)
    left.set(xticks=position, xticklabels=names, ylabel="test bits/dim",
             title=dataset)
    left.legend(fontsize=8)
    right.bar(position, [row.get("frechet_distance", np.nan) for row in rows])
    right.set(xticks=position, xticklabels=names,
              ylabel="Frechet distance (classifier features)", title=dataset)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def report(workdir_root: str, datasets: Sequence[str],
           rows: Sequence[str] = ROWS, overrides: Sequence[str] = (),
           quick: bool = False,
           command: Optional[str] = None) -> Dict[str, Any]:
  """Trains and tests every (dataset, row); writes report.md/.json/.png.

  Args:
    workdir_root: runs go to `<workdir_root>/<dataset>/<row>`; the report
      files to `<workdir_root>`.
    datasets: dataset names.
    rows: names from `ROWS`.
    overrides: `field=value` settings applied to every run.
    quick: use the configs' quick (smoke-test) versions.
    command: the command line recorded in the report.

  Returns:
    report.json's contents: {"command", "tables": {dataset: rows},
    "wall_time_s": {dataset: seconds}, "novelty", "markdown"}.
  """
  tables: Dict[str, List[Dict[str, Any]]] = {}
  wall_times = {}
  for dataset in datasets:
    start = time.time()
    tables[dataset] = []
    for row in rows:
      spec, applied, config = row_config(row, dataset, overrides, quick)
      result = compare.run_config(
          config, os.path.join(workdir_root, dataset, row), spec)
      tables[dataset].append(dict(result, overrides=applied))
    wall_times[dataset] = time.time() - start
  novelty = novelty_results(workdir_root)
  lines = ["# Results on the offline data", "",
           f"Produced by `{command}`." if command else "", ""]
  for dataset, table in tables.items():
    lines += [f"## {dataset} (all rows: {wall_times[dataset]:.0f} s)", "",
              compare.format_table(table, COLUMNS), ""]
    lines += [f"- {row['config']}: overrides {row['overrides'] or 'none'}; "
              f"marginal {row.get('marginal_method', 'n/a')}; "
              f"{row.get('sample_quality_samples', 0)} samples on "
              f"{row.get('sample_quality_features', 'n/a')}"
              for row in table] + [""]
  if novelty:
    lines += ["## One-class novelty detection (AUROC)", "",
              novelty_table(novelty), ""]
  lines += ["![bits/dim and Frechet distance per model](report.png)", ""]
  markdown = "\n".join(lines)
  os.makedirs(workdir_root, exist_ok=True)
  plot(tables, os.path.join(workdir_root, "report.png"))
  with open(os.path.join(workdir_root, "report.md"), "w") as f:
    f.write(markdown)
  results = {"command": command, "tables": tables, "wall_time_s": wall_times,
             "novelty": novelty, "markdown": markdown}
  with open(os.path.join(workdir_root, "report.json"), "w") as f:
    json.dump(results, f, indent=2)
  return results


def define_flags() -> None:
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string("workdir_root", None, "Runs go to <workdir_root>/"
                      "<dataset>/<row>; report.md/.json/.png to "
                      "<workdir_root>.")
  flags.DEFINE_list("datasets", ["digits", "mnist5k"], "Datasets, e.g. "
                    "digits,mnist5k.")
  flags.DEFINE_list("rows", list(ROWS), f"Rows, from {', '.join(ROWS)}.")
  flags.DEFINE_multi_string("set", [], "An override field=value applied to "
                            "every run, e.g. num_train_steps=200.")
  flags.DEFINE_bool("quick", False, "Smoke test: the configs' quick "
                    "versions.")
  flags.mark_flags_as_required(["workdir_root"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  args = flags.FLAGS
  results = report(args.workdir_root, args.datasets, args.rows, args.set,
                   args.quick, " ".join(["python -m train.report"] +
                                        sys.argv[1:]))
  print(results["markdown"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
