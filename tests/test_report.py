"""train.evaluate's --metrics, train.compare and train.report on quick runs.

The runs here and the command lines compile with XLA's optimisations off
(`fast_compiles`, tests/conftest.py, and JAX_DISABLE_MOST_OPTIMIZATIONS):
quick runs are compile-bound, and the command lines still find the report's
programs in the session's compilation cache (the same options on both
sides), so their numbers are those of the report's run.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import ccrnvp_digits
from configs import default
from configs import glf_digits
from configs import lgf_maf_two_rectangles
from configs import ncl_digits
from configs import vae_digits
from nbflows import checkpoint_loading
from nbflows import compilation_cache
from nbflows.data import sources
from nbflows.metrics import feature_net
from nbflows.metrics import frechet
from nbflows.models import registry
from train.evaluation import requested_metrics
from train.evaluation import sample_quality
from train.experiments import compare
from train.experiments import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUALITY_KEYS = {"frechet_distance", "prd_f8", "prd_f1_8",
                "sample_quality_samples", "sample_quality_features"}
# Applied to the report's quick runs (and to the commands that reuse them):
# one coupling per scale, for a fast compile.
OVERRIDES = ("flow.couplings_per_scale=1",)

pytestmark = pytest.mark.usefixtures("fast_compiles")   # conftest.py


def run_module(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
             PYTHONPATH=REPO, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory, compilation_cache_dir):
  """report() on quick RNVP and CC-RNVP, with one novelty.json present."""
  root = str(tmp_path_factory.mktemp("report"))
  os.makedirs(os.path.join(root, "novelty_ncl_digits"))
  with open(os.path.join(root, "novelty_ncl_digits", "novelty.json"),
            "w") as f:
    json.dump({"per_class": {"0": 0.9, "1": 0.7}, "mean_auroc": 0.8}, f)
  with compilation_cache.reused_compilations(compilation_cache_dir):
    results = report.report(root, ["digits"], rows=("rnvp", "ccrnvp"),
                            overrides=OVERRIDES, quick=True, command="test")
  return root, results


def test_report_tables_hold_every_runs_eval_json(quick_report):
  root, results = quick_report
  rows = results["tables"]["digits"]
  assert [row["model"] for row in rows] == ["rnvp", "ccrnvp"]
  with open(os.path.join(root, "report.md")) as f:
    markdown = f.read()
  with open(os.path.join(root, "report.json")) as f:
    assert json.load(f)["tables"] == results["tables"]
  for row, name in zip(rows, ("rnvp", "ccrnvp")):
    with open(os.path.join(root, "digits", name, "eval.json")) as f:
      saved = json.load(f)
    assert {k: row[k] for k in saved} == saved   # the table is eval.json's
    assert f"| {saved['test_bpd']:.4f} | {saved['test_marginal_bpd']:.4f} |" \
        in markdown
    assert f"| {saved['frechet_distance']:.2f} |" in markdown
  assert "Frechet distance (classifier features)" in markdown
  assert "FID" not in markdown
  # The novelty table, from novelty_*/novelty.json.
  assert "| ncl_digits | 0.900 | 0.700 | 0.800 |" in markdown
  from matplotlib import image
  assert image.imread(os.path.join(root, "report.png")).shape[0] > 100


def test_unconditional_marginal_is_the_test_bpd(quick_report):
  rnvp = quick_report[1]["tables"]["digits"][0]
  assert rnvp["marginal_method"] == "unconditional"
  assert rnvp["test_marginal_bpd"] == pytest.approx(rnvp["test_bpd"],
                                                    abs=1e-5)


def test_label_marginal_is_bounded_by_the_conditional(quick_report):
  # p(x) = sum_c pi_c p(x | c) >= pi_y p(x | y): per example the marginal
  # bits/dim is at most the conditional one + log2(1 / pi_y) / D; and it
  # is strictly below log2 of the number of levels (better than uniform)
  # only if the sum is right.
  row = quick_report[1]["tables"]["digits"][1]
  splits = sources.load("digits")
  counts = np.bincount(splits.train.labels)
  worst = math.log2(len(splits.train.labels) / counts.min()) / 64
  assert row["marginal_method"] == "exact"
  assert row["marginal_description"] == "exact over 10 labels"
  assert row["test_marginal_bpd"] <= row["test_bpd"] + worst
  assert row["test_marginal_bpd"] >= row["test_bpd"] - math.log2(10) / 64


def test_evaluate_command_line_writes_the_chosen_metrics(quick_report):
  workdir = os.path.join(quick_report[0], "digits", "ccrnvp")
  os.remove(os.path.join(workdir, "eval.json"))
  # XLA's default flags, as in this process: the report's programs serve it
  # from the session's compilation cache.
  run = run_module("train.evaluate", "--config",
                   "configs/ccrnvp_digits.py:quick", "--workdir", workdir,
                   *[f"--config.{o}" for o in OVERRIDES],
                   "--metrics", "bpd,marginal_bpd,fd", "--nofast_cpu_flags")
  assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
  with open(os.path.join(workdir, "eval.json")) as f:
    saved = json.load(f)
  assert saved["metrics"] == ["bpd", "marginal_bpd", "fd"]
  assert {"test_bpd", "test_marginal_bpd", "marginal_method",
          "frechet_distance"} <= set(saved)
  assert "prd_f8" not in saved
  row = quick_report[1]["tables"]["digits"][1]
  # Same checkpoint and keys: the same numbers as the report's run.
  for key in ("test_bpd", "test_marginal_bpd", "frechet_distance"):
    assert saved[key] == pytest.approx(row[key], rel=1e-6)


def test_frechet_distance_is_of_marginal_samples_against_the_test_split(
    quick_report, compilation_cache_dir):
  workdir = os.path.join(quick_report[0], "digits", "ccrnvp")
  row = quick_report[1]["tables"]["digits"][1]
  model, params, config = checkpoint_loading.load_checkpoint(workdir)
  splits = sources.load("digits")
  info = splits.info
  with compilation_cache.reused_compilations(compilation_cache_dir):
    samples = sample_quality.draw_marginal_samples(
        model, params, jax.random.fold_in(jax.random.key(config.seed),
                                          requested_metrics.QUALITY_SALT),
        config.eval.num_samples, splits.train, None, config.eval_batch_size)
    net = feature_net.load_or_train(
        "digits", splits.train.images, splits.train.labels, info.num_levels,
        info.num_classes,
        os.path.expanduser(sample_quality.FEATURE_NET_CACHE_DIR),
        feature_net.ClassifierSettings(
            num_steps=config.eval.feature_net_steps))
    expected = frechet.frechet_distance(net(splits.test.images),
                                        net(samples))
  assert row["frechet_distance"] == pytest.approx(expected, rel=1e-6)
  assert row["sample_quality_samples"] == len(samples) == 64
  assert 0 <= row["prd_f1_8"] <= 1 and 0 <= row["prd_f8"] <= 1
  # Against the training split instead, the number would differ.
  assert expected != pytest.approx(frechet.frechet_distance(
      net(splits.train.images), net(samples)), rel=1e-3)


def test_unknown_metric_raises_listing_the_valid_ones():
  with pytest.raises(ValueError, match="unknown metrics.*marginal_bpd"):
    requested_metrics.parse_metrics("bpd,fid")
  assert requested_metrics.parse_metrics(" bpd , prd ") == ("bpd", "prd")
  run = run_module("train.evaluate", "--config", "configs/default.py:quick",
                   "--workdir", "/nonexistent", "--metrics", "fid")
  assert run.returncode != 0
  assert "unknown metrics ['fid']" in run.stderr


def test_sample_quality_on_vector_data_raises():
  config = lgf_maf_two_rectangles.get_config("quick")
  model = registry.build_model(config)
  info = sources.dataset_info(config.dataset)
  with pytest.raises(ValueError, match="fd and prd need images"):
    requested_metrics.chosen_metrics(config, model, info,
                                     "log_likelihood,fd")


@pytest.mark.parametrize("module, expected", [
    (vae_digits, ("iwae", "fd")),
    (glf_digits, ("fd",)),
    (ncl_digits, ("bpd", "marginal_bpd", "fd", "prd")),
    (lgf_maf_two_rectangles, ("log_likelihood",)),
])
def test_default_metrics_per_model_family(module, expected):
  config = module.get_config("quick")
  config.eval.metrics = ""                  # the family's default set
  model = registry.build_model(config)
  info = sources.dataset_info(config.dataset)
  assert requested_metrics.chosen_metrics(config, model, info) == expected
  config.eval.metrics = "bpd"
  assert requested_metrics.chosen_metrics(config, model, info) == ("bpd",)


def test_paper1_cpu_configs_report_conditional_and_marginal_bpd():
  config = ncl_digits.get_config()        # the main job's final report
  model = registry.build_model(config)
  info = sources.dataset_info(config.dataset)
  assert requested_metrics.chosen_metrics(config, model, info) == (
      "bpd", "marginal_bpd")


def test_log_likelihood_and_its_standard_error():
  values = {"bpd": np.array([1.0, 2.0, 4.0])}
  config = default.get_config("quick")
  model = registry.build_model(config)      # rnvp on digits, D = 64
  results = requested_metrics.requested_results(
      model, None, config, None, None, values, ("log_likelihood",))
  log_likelihood = -values["bpd"] * 64 * math.log(2.0)
  assert results["test_log_likelihood"] == pytest.approx(
      log_likelihood.mean())
  assert results["test_log_likelihood_stderr"] == pytest.approx(
      log_likelihood.std(ddof=1) / math.sqrt(3))
  # LGF reports its importance-sampled estimate and S.
  lgf_config = lgf_maf_two_rectangles.get_config("quick")
  lgf_model = registry.build_model(lgf_config)
  results = requested_metrics.requested_results(
      lgf_model, None, lgf_config, None, None,
      {"log_likelihood": np.array([-1.0, -3.0]), "bpd": np.zeros(2)},
      ("log_likelihood",))
  assert results == {"test_log_likelihood": -2.0,
                     "test_log_likelihood_stderr": pytest.approx(1.0),
                     "log_likelihood_samples": lgf_config.lgf.test_samples}
  with pytest.raises(ValueError, match="needs the per-example 'iwae'"):
    requested_metrics.requested_results(model, None, config, None, None,
                                        values, ("iwae",))


def test_compare_tabulates_conditional_and_marginal_bpd(
    quick_report, compilation_cache_dir):
  # A copy of the report's finished quick RNVP run (the same config), so
  # compare only re-tests it, with the programs the report compiled.
  root = os.path.join(quick_report[0], "compare")
  shutil.copytree(os.path.join(quick_report[0], "digits", "rnvp"),
                  os.path.join(root, "rnvp_digits"))
  with compilation_cache.reused_compilations(compilation_cache_dir):
    rows = compare.compare(["configs/rnvp_digits.py:quick"], list(OVERRIDES),
                           root)
  expected = quick_report[1]["tables"]["digits"][0]
  assert rows[0]["steps_trained"] == expected["steps_trained"]
  assert rows[0]["test_bpd"] == pytest.approx(expected["test_bpd"])
  assert rows[0]["test_marginal_bpd"] == pytest.approx(expected["test_bpd"],
                                                       abs=1e-5)
  table = compare.format_table(rows + [dict(rows[0], num_params=10 ** 9)])
  assert table.splitlines()[2].endswith(
      f"| {rows[0]['test_bpd']:.4f} | {rows[0]['test_marginal_bpd']:.4f} | "
      "unconditional |")
  assert "(!)" in table.splitlines()[3] and "(!)" not in table.splitlines()[2]


def test_overrides_are_literals_or_strings():
  config = compare.apply_overrides(
      ccrnvp_digits.get_config("quick"),
      ["num_train_steps=7", "neighbours.kind=kmeans", "flow.mlp_hidden=(4,)"])
  assert config.num_train_steps == 7 and config.neighbours.kind == "kmeans"
  assert tuple(config.flow.mlp_hidden) == (4,)
  with pytest.raises(ValueError, match="expected field=value"):
    compare.apply_overrides(config, ["num_train_steps"])
  with pytest.raises(ValueError, match="configs/<name>.py"):
    compare.load_config("default.py")
