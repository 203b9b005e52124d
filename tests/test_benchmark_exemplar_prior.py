"""`train.benchmark exemplar_prior` at tiny N: a line per (N, prior), the kNN
step takes the kNN path, the summary is built from those lines. No timing
assertions."""
import json

import pytest

from train.benchmarks import jobs as benchmark

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_exemplar_prior_job_prints_a_line_per_size_and_prior(capsys):
  benchmark.main(["exemplar_prior", "--n", "40", "--k", "3", "--batch",
                  "4", "--steps", "1", "--rounds", "2", "--quick"])
  lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  *records, summary = lines
  assert [(r["n"], r["prior"]) for r in records] == [(40, "exact"),
                                                     (40, "knn")]
  for record in records:
    assert record["unit"] == "ms/step" and len(record["step_ms"]) == 2
    assert record["value"] > 0 and record["device"]["platform"] == "cpu"
    assert record["subsample"] == record["n"] // 2        # M/N = 0.5 (eq. 5)
    # The kNN step's prior is the k-term mixture of eq. 15; the exact
    # step's has no such metric.
    assert record["prior_components"] == (3 if record["prior"] == "knn"
                                          else None)
  exact, knn = (record["value"] for record in records)
  assert summary["exact_ms"] == [exact] and summary["knn_ms"] == [knn]
  assert summary["value"] == pytest.approx(exact / knn, abs=0.01)
  assert summary["exact_growth"] == summary["knn_growth"] == 1.0


@pytest.mark.parametrize("sizes", ["1000,500", "1000,x", "1"])
def test_exemplar_counts_must_increase(sizes, capsys):
  with pytest.raises(SystemExit):
    benchmark.build_parser().parse_args(["exemplar_prior", "--n", sizes])
  assert "expected increasing exemplar counts >= 2" in capsys.readouterr().err
