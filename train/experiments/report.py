r"""The README's results: paper 1's models on the offline data, one command.

  python -m train.report --workdir_root workdirs/report \
      --datasets digits,mnist5k --seeds 0,1,2

For every dataset, row (`ROWS`: RNVP, CC-RNVP, NCL, NCT, k-means NCT, KDE)
and seed s the run in ``<workdir_root>/<dataset>/<row>/seed_<s>``
(config.seed = s; without seeds, the config's own seed in
``<workdir_root>/<dataset>/<row>``) is trained and tested by
`train.experiments.compare.run_config` (rerunning resumes or reuses
finished runs) with the test metrics `REPORT_METRICS` of `train.evaluate`: conditional bits/dim
(with the paper's same-class test neighbourhoods, App. B.2, and label-free
ones), marginal bits/dim (paper 1, eq. 4, the estimator named), and the
Frechet distance and PRD (F_8 recall-like, F_1/8 precision-like) of
`config.eval.num_samples` samples against the test split, on the offline
classifier's features (not Inception's, so not FIDs). NCT on the datasets
of `--marginal_bias` also measures the sampled marginal (M = 100) against
the exact one over all training neighbourhoods ("marginal_bias"). Each row
uses `configs/<row>_<dataset>.py` (`configs/<row>_digits.py` with
`dataset=<dataset>` where there is none); RNVP is sized by
`configs.paper1.cpu_sized` like the other flows, so it is their
like-for-like baseline (same flow, same steps). The one-class novelty
table is added from ``<workdir_root>/novelty_*/novelty.json``
(`train.novelty`) where such files exist.

A cell is the mean over seeds +- their standard deviation (ddof 1). The
text claims that one model is below another in a metric only where the gap
between their means exceeds twice the larger of their standard deviations
(`ordering_claims`); other pairs are listed as not ordered, and one seed
per row orders nothing. k-means NCT's conditional and exact marginal
bits/dim are set side by side (paper 1, App. B.5, Tables B.1 and B.2).

Writes ``<workdir_root>/report.md`` (Markdown tables, the command and wall
times), ``report.json`` (every number, the per-seed eval.json of every
cell in its row's "runs") and ``report.png`` (bits/dim and Frechet
distance per model).
"""
from __future__ import annotations

import glob
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import ml_collections
import numpy as np

from configs import paper1
from train.experiments import compare
from train.experiments import defaults

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
ROWS = defaults.REPORT_ROWS
NAMES = {"rnvp": "RNVP", "ccrnvp": "CC-RNVP", "ncl": "NCL", "nct": "NCT",
         "nct_kmeans": "NCT (k-means)", "kde": "KDE"}
REPORT_METRICS = "bpd,marginal_bpd,fd,prd"
COLUMNS = (
    ("test bpd, label-free N(x)", "test_bpd_label_free", "{:.4f}"),
    ("test bpd, same-class N(x) (test label used)", "test_bpd", "{:.4f}"),
    ("test marginal bpd (eq. 4)", "test_marginal_bpd", "{:.4f}"),
    ("marginal estimator", "marginal_method", "{}"),
    ("Frechet distance (classifier features)", "frechet_distance", "{:.2f}"),
    ("PRD F8 (recall)", "prd_f8", "{:.3f}"),
    ("PRD F1/8 (precision)", "prd_f1_8", "{:.3f}"),
    ("wall time (s)", "wall_time_s", "{:.0f}"))
# (what, eval.json key, format): the metrics `ordering_claims` orders,
# lower is better.
CLAIMED = (("conditional bpd (same-class)", "test_bpd", "{:.4f}"),
           ("conditional bpd (label-free)", "test_bpd_label_free", "{:.4f}"),
           ("marginal bpd", "test_marginal_bpd", "{:.4f}"),
           ("Frechet distance", "frechet_distance", "{:.2f}"))
KMEANS_TOLERANCE = 0.02   # Table B.1: marginal within 2% of conditional


def row_config(row: str, dataset: str, overrides: Sequence[str] = (),
               quick: bool = False, seed: Optional[int] = None,
               metrics: str = REPORT_METRICS
               ) -> Tuple[str, List[str], ml_collections.ConfigDict]:
  """The config spec, overrides and config of one row of the report.

  Args:
    row: one of `ROWS`.
    dataset: e.g. "digits" or "mnist5k".
    overrides: `field=value` settings applied after the row's own.
    quick: use each config's "quick" (smoke-test) version.
    seed: config.seed, or None for the config's own.
    metrics: config.eval.metrics.

  Returns:
    (spec, overrides applied, locked config).

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
  config.eval.metrics = metrics
  if seed is not None:
    config.seed = int(seed)
  return spec, applied, config


def aggregate(runs: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
  """One row from the runs of one config over seeds.

  A float (a measured value) becomes the mean over the runs, with its
  standard deviation (ddof 1) under `<key>_sd` when there are two runs or
  more; another value is kept where every run has it, else listed per run.

  Example:
    >>> row = aggregate([{"model": "ncl", "test_bpd": 1.0},
    ...                  {"model": "ncl", "test_bpd": 2.0}])
    >>> row["model"], row["test_bpd"], round(row["test_bpd_sd"], 4)
    ('ncl', 1.5, 0.7071)
  """
  row: Dict[str, Any] = {}
  for key in runs[0]:
    values = [run.get(key) for run in runs]
    if len(runs) > 1 and all(isinstance(v, float) for v in values):
      row[key] = float(np.mean(values))
      row[key + "_sd"] = float(np.std(values, ddof=1))
    elif all(v == values[0] for v in values):
      row[key] = values[0]
    else:
      row[key] = values
  return row


def _name(row: Mapping[str, Any], key: str) -> str:
  name = NAMES.get(row.get("row"), row["model"])
  if key == "test_marginal_bpd" and "marginal_method" in row:
    name += f" ({row['marginal_method']})"
  return name


def ordering_claims(table: Sequence[Mapping[str, Any]]) -> List[str]:
  """report.md's claims: A < B only where the gap exceeds 2 x the larger sd.

  For each metric of `CLAIMED` (lower is better) and each pair of rows with
  a standard deviation over seeds: "A < B in <metric> (gap g > 2 x sd s)"
  if mean_B - mean_A > 2 max(sd_A, sd_B); the other pairs are listed as
  not ordered. Rows of one seed (no sd) order nothing.

  Example:
    >>> print("\\n".join(ordering_claims([
    ...     {"model": "ncl", "row": "ncl", "test_bpd": 1.80,
    ...      "test_bpd_sd": 0.01},
    ...     {"model": "rnvp", "row": "rnvp", "test_bpd": 2.12,
    ...      "test_bpd_sd": 0.02}])))
    - NCL < RNVP in conditional bpd (same-class) (gap 0.3200 > 2 x sd 0.0200)
  """
  lines = []
  for what, key, fmt in CLAIMED:
    rows = sorted((r for r in table if f"{key}_sd" in r),
                  key=lambda r: r[key])
    unordered = []
    for i, low in enumerate(rows):
      for high in rows[i + 1:]:
        gap = high[key] - low[key]
        sd = max(low[f"{key}_sd"], high[f"{key}_sd"])
        if gap > 2 * sd:
          lines.append(f"- {_name(low, key)} < {_name(high, key)} in {what} "
                       f"(gap {fmt.format(gap)} > 2 x sd {fmt.format(sd)})")
        else:
          unordered.append(f"{_name(low, key)} vs {_name(high, key)} (gap "
                           f"{fmt.format(gap)} <= 2 x sd {fmt.format(sd)})")
    if unordered:
      lines.append(f"- not ordered in {what}: " + "; ".join(unordered))
  return lines


def kmeans_table(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
  """k-means NCT's conditional next to its exact marginal, per dataset."""
  lines = ["| dataset | conditional bpd | exact marginal bpd (eq. 4) | "
           "marginal - conditional | within 2% |",
           "| --- | --- | --- | --- | --- |"]
  for dataset, table in tables.items():
    for row in table:
      if row.get("row") != "nct_kmeans" or "test_marginal_bpd" not in row:
        continue
      gap = row["test_marginal_bpd"] - row["test_bpd"]
      within = abs(gap) <= KMEANS_TOLERANCE * row["test_bpd"]
      lines.append(
          f"| {dataset} | {compare.format_cell(row, 'test_bpd')} | "
          f"{compare.format_cell(row, 'test_marginal_bpd')} ({row['marginal_method']}) | "
          f"{gap:+.4f} ({gap / row['test_bpd']:+.1%}) | "
          f"{'yes' if within else 'no'} |")
  return "\n".join(lines) if len(lines) > 2 else ""


def marginal_bias_lines(dataset: str,
                        table: Sequence[Mapping[str, Any]]) -> List[str]:
  """Sampled minus exact marginal bits/dim where a row measured it."""
  lines = []
  for row in table:
    if "marginal_sampled_minus_exact_bpd" not in row:
      continue
    stderr = row["marginal_sampled_minus_exact_bpd_stderr"]
    lines.append(
        f"- {_name(row, '')} on {dataset}: sampled marginal (M="
        f"{row['marginal_sampled_neighbourhoods']}) "
        f"{compare.format_cell(row, 'test_marginal_bpd_sampled')}, exact over all "
        f"training neighbourhoods {compare.format_cell(row, 'test_marginal_bpd_exact')}; "
        f"sampled - exact = {compare.format_cell(row, 'marginal_sampled_minus_exact_bpd')}"
        f" bits/dim (standard error per run "
        f"{np.mean(np.atleast_1d(stderr)):.4f}: row draw and test points)")
  return lines


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
  """Bits/dim and Frechet distance per model; error bars: sd over seeds."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(len(tables), 2, squeeze=False,
                           figsize=(10, 3.2 * len(tables)))
  for (dataset, rows), (left, right) in zip(tables.items(), axes):
    names = [NAMES.get(row.get("row"), row["model"]) for row in rows]
    position = np.arange(len(rows))
    for offset, key, label in ((-0.2, "test_bpd", "conditional"),
                               (0.2, "test_marginal_bpd", "marginal (eq. 4)")):
      left.bar(position + offset, [row.get(key, np.nan) for row in rows],
               0.4, label=label,
               yerr=[row.get(f"{key}_sd", 0.0) for row in rows])
    left.set(xticks=position, xticklabels=names, ylabel="test bits/dim",
             title=dataset)
    left.legend(fontsize=8)
    right.bar(position, [row.get("frechet_distance", np.nan) for row in rows],
              yerr=[row.get("frechet_distance_sd", 0.0) for row in rows])
    right.set(xticks=position, xticklabels=names,
              ylabel="Frechet distance (classifier features)", title=dataset)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def report(workdir_root: str, datasets: Sequence[str],
           rows: Sequence[str] = ROWS, overrides: Sequence[str] = (),
           quick: bool = False, command: Optional[str] = None,
           seeds: Optional[Sequence[int]] = None,
           marginal_bias_datasets: Sequence[str] = ()) -> Dict[str, Any]:
  """Trains and tests every (dataset, row, seed); writes report.md/.json/.png.

  Args:
    workdir_root: runs go to `<workdir_root>/<dataset>/<row>/seed_<s>` (to
      `<workdir_root>/<dataset>/<row>` without seeds); the report files to
      `<workdir_root>`.
    datasets: dataset names.
    rows: names from `ROWS`.
    overrides: `field=value` settings applied to every run.
    quick: use the configs' quick (smoke-test) versions.
    command: the command line recorded in the report.
    seeds: config.seed of each row's runs; None: one run, the config's
      seed.
    marginal_bias_datasets: datasets whose NCT row also measures the
      sampled marginal against the exact one ("marginal_bias").

  Returns:
    report.json's contents: {"command", "seeds", "tables": {dataset:
    rows}, "wall_time_s": {dataset: seconds, "total": seconds}, "novelty",
    "markdown"}; a row is `aggregate` of its runs, with "row" (its name in
    `ROWS`), "seeds" and, over two seeds or more, "runs" (the eval.json
    rows).
  """
  start_all = time.time()
  tables: Dict[str, List[Dict[str, Any]]] = {}
  wall_times = {}
  for dataset in datasets:
    start = time.time()
    tables[dataset] = []
    for row in rows:
      metrics = REPORT_METRICS + (",marginal_bias" if row == "nct" and
                                  dataset in marginal_bias_datasets else "")
      runs = []
      for seed in (seeds or [None]):
        spec, applied, config = row_config(row, dataset, overrides, quick,
                                           seed, metrics)
        workdir = os.path.join(workdir_root, dataset, row)
        if seed is not None:
          workdir = os.path.join(workdir, f"seed_{seed}")
        runs.append(dict(compare.run_config(config, workdir, spec),
                         overrides=applied, seed=config.seed))
      cell = aggregate(runs)
      cell.update(row=row, seeds=[run["seed"] for run in runs])
      if len(runs) > 1:
        cell["runs"] = runs
      tables[dataset].append(cell)
    wall_times[dataset] = time.time() - start
  wall_times["total"] = time.time() - start_all
  novelty = novelty_results(workdir_root)
  markdown = report_markdown(tables, wall_times, seeds, novelty, command)
  os.makedirs(workdir_root, exist_ok=True)
  plot(tables, os.path.join(workdir_root, "report.png"))
  with open(os.path.join(workdir_root, "report.md"), "w") as f:
    f.write(markdown)
  results = {"command": command, "seeds": list(seeds or []),
             "tables": tables, "wall_time_s": wall_times,
             "novelty": novelty, "markdown": markdown}
  with open(os.path.join(workdir_root, "report.json"), "w") as f:
    json.dump(results, f, indent=2)
  return results


def report_markdown(tables: Mapping[str, Sequence[Mapping[str, Any]]],
                    wall_times: Mapping[str, float],
                    seeds: Optional[Sequence[int]],
                    novelty: Mapping[str, Any],
                    command: Optional[str]) -> str:
  """report.md: per dataset the table, the orderings the seeds support, the
  sampled marginal's measured bias; k-means NCT; novelty; wall time."""
  spread = (f"mean +- standard deviation over seeds {list(seeds)}"
            if seeds and len(seeds) > 1 else "one seed per row")
  lines = ["# Results on the offline data", "",
           f"Produced by `{command}`." if command else "", "",
           f"Cells: {spread}. Test neighbourhoods: same-class (the test "
           "label picks the training images searched, paper 1 App. B.2) or "
           "label-free (all training images). An ordering is claimed only "
           "where the gap between two means exceeds twice the larger "
           "standard deviation.", ""]
  for dataset, table in tables.items():
    lines += [f"## {dataset} (all rows: {wall_times[dataset]:.0f} s)", "",
              compare.format_table(table, COLUMNS), ""]
    claims = ordering_claims(table)
    if claims:
      lines += ["Orderings (gap > 2 x the larger sd over seeds):", ""] + claims
    else:
      lines.append("One seed per row: no ordering is claimed."
                   if spread == "one seed per row" else "No two rows to order.")
    lines += [""] + marginal_bias_lines(dataset, table) + [""]
    lines += [f"- {row['config']}: overrides {row['overrides'] or 'none'}; "
              f"marginal {row.get('marginal_description', 'n/a')}; "
              f"{row.get('sample_quality_samples', 0)} samples on "
              f"{row.get('sample_quality_features', 'n/a')}"
              for row in table] + [""]
  kmeans = kmeans_table(tables)
  if kmeans:
    lines += ["## k-means NCT: conditional and exact marginal (paper 1, "
              "App. B.5, Tables B.1 and B.2)", "", kmeans, ""]
  if novelty:
    lines += ["## One-class novelty detection (AUROC)", "",
              novelty_table(novelty), ""]
  lines += ["![bits/dim and Frechet distance per model](report.png)", "",
            f"Wall time of the report: {wall_times['total']:.0f} s.", ""]
  return "\n".join(lines)
