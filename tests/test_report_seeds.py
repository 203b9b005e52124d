"""train.report over seeds: mean +- sd per cell, claims, k-means NCT."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from nbflows import compilation_cache
from train.experiments import report

NUM_CLUSTERS = 20     # k-means clusters of the quick runs (the config's 100)


@pytest.fixture(scope="module")
def seeds_report(tmp_path_factory, compilation_cache_dir):
  """Quick k-means NCT (App. B.5) over seeds 0 and 1: one coupling per
  scale and 20 clusters (a fast compile and exact marginal); the second
  seed's programs come from the compilation cache."""
  root = str(tmp_path_factory.mktemp("seeds"))
  with compilation_cache.reused_compilations(compilation_cache_dir):
    return root, report.report(
        root, ["digits"], rows=("nct_kmeans",),
        overrides=("flow.couplings_per_scale=1",
                   f"neighbours.num_clusters={NUM_CLUSTERS}"),
        quick=True, command="test", seeds=(0, 1))


def test_cells_are_mean_and_sd_of_the_per_seed_eval_json(seeds_report):
  root, results = seeds_report
  (row,) = results["tables"]["digits"]
  runs = []
  for seed in (0, 1):
    with open(os.path.join(root, "digits", "nct_kmeans", f"seed_{seed}",
                           "eval.json")) as f:
      runs.append(json.load(f))
  assert row["seeds"] == [0, 1] and row["row"] == "nct_kmeans"
  assert [run["test_bpd"] for run in row["runs"]] == [
      run["test_bpd"] for run in runs]
  for key in ("test_bpd", "test_bpd_label_free", "test_marginal_bpd",
              "frechet_distance", "prd_f8"):
    values = [run[key] for run in runs]
    assert row[key] == pytest.approx(np.mean(values), rel=1e-12)
    assert row[key + "_sd"] == pytest.approx(np.std(values, ddof=1),
                                             rel=1e-9)
  # Different seeds train different models.
  assert runs[0]["test_bpd"] != runs[1]["test_bpd"]
  assert row["num_params"] == runs[0]["num_params"]   # not averaged
  with open(os.path.join(root, "report.md")) as f:
    markdown = f.read()
  cell = (f"| {row['test_bpd_label_free']:.4f} +- "
          f"{row['test_bpd_label_free_sd']:.4f} | {row['test_bpd']:.4f} +- "
          f"{row['test_bpd_sd']:.4f} | {row['test_marginal_bpd']:.4f} +- "
          f"{row['test_marginal_bpd_sd']:.4f} | exact |")
  assert cell in markdown
  assert "mean +- standard deviation over seeds [0, 1]" in markdown
  assert "Wall time of the report:" in markdown


def test_kmeans_nct_marginal_is_exact_beside_its_conditional(seeds_report):
  root, results = seeds_report
  (row,) = results["tables"]["digits"]
  for run in row["runs"]:
    assert run["marginal_method"] == "exact"
    assert run["marginal_description"].startswith("exact over")
    assert "k-means neighbourhoods" in run["marginal_description"]
    assert run["marginal_num_neighbourhoods"] <= NUM_CLUSTERS
    assert "test_marginal_bpd_stderr" not in run
    # k-means neighbourhoods use no label: one protocol.
    assert run["test_bpd_label_free"] == run["test_bpd"]
    assert "k-means" in run["conditional_bpd_protocol"]
  with open(os.path.join(root, "report.md")) as f:
    markdown = f.read()
  gap = row["test_marginal_bpd"] - row["test_bpd"]
  assert (f"| digits | {row['test_bpd']:.4f} +- {row['test_bpd_sd']:.4f} | "
          f"{row['test_marginal_bpd']:.4f} +- "
          f"{row['test_marginal_bpd_sd']:.4f} (exact) | {gap:+.4f}"
          ) in markdown
  assert "No two rows to order." in markdown


def test_ordering_is_claimed_only_beyond_twice_the_larger_sd():
  table = [
      {"model": "ncl", "row": "ncl", "test_bpd": 1.80, "test_bpd_sd": 0.01,
       "test_marginal_bpd": 2.00, "test_marginal_bpd_sd": 0.05,
       "marginal_method": "exact"},
      {"model": "nct", "row": "nct", "test_bpd": 1.83, "test_bpd_sd": 0.02,
       "test_marginal_bpd": 2.20, "test_marginal_bpd_sd": 0.06,
       "marginal_method": "sampled"},
      {"model": "rnvp", "row": "rnvp", "test_bpd": 2.12,
       "test_bpd_sd": 0.01},
      {"model": "kde", "row": "kde", "test_bpd": 3.3}]      # one seed
  lines = report.ordering_claims(table)
  assert ("- NCL < RNVP in conditional bpd (same-class) "
          "(gap 0.3200 > 2 x sd 0.0100)") in lines
  assert ("- NCT < RNVP in conditional bpd (same-class) "
          "(gap 0.2900 > 2 x sd 0.0200)") in lines
  # 0.03 <= 2 x 0.02: not ordered, and said so.
  assert not any(line.startswith("- NCL < NCT in conditional") for line in
                 lines)
  assert ("- not ordered in conditional bpd (same-class): NCL vs NCT "
          "(gap 0.0300 <= 2 x sd 0.0200)") in lines
  # The marginal names its estimator; 0.20 > 2 x 0.06.
  assert ("- NCL (exact) < NCT (sampled) in marginal bpd "
          "(gap 0.2000 > 2 x sd 0.0600)") in lines
  assert not any("KDE" in line for line in lines)


def test_aggregate_keeps_equal_values_and_lists_differing_ones():
  runs = [{"model": "nct", "num_params": 10, "steps_trained": 20,
           "test_bpd": 1.0}, {"model": "nct", "num_params": 10,
                              "steps_trained": 18, "test_bpd": 3.0}]
  row = report.aggregate(runs)
  assert row == {"model": "nct", "num_params": 10, "steps_trained": [20, 18],
                 "test_bpd": 2.0, "test_bpd_sd": pytest.approx(np.sqrt(2))}
  assert report.aggregate(runs[:1]) == runs[0]
