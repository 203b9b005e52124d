"""`train.benchmark suite`: every job's arguments are valid commands, a job
runs in its own process and its line names the device, a failed job fails
the suite. No timing assertions."""
import json

import pytest

from train.benchmarks import jobs as benchmark
from train.benchmarks import suite


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("peers", [False, True])
def test_every_suite_job_is_a_valid_benchmark_command(quick, peers):
  parser = benchmark.build_parser()
  for job in suite.SUITE:
    args = parser.parse_args(suite.job_argv(job, quick, peers, False))
    assert args.job == job.argv[0]
    assert getattr(args, "vs_peer", False) == (peers and bool(job.peer))


def test_the_suite_covers_architectures_library_models_compile_and_knn():
  commands = {job.argv[0] for job in suite.SUITE}
  assert commands == {"matmul", "train", "logprob", "sample", "compile", "knn",
                      "exemplar_prior"}
  models = {job.argv[job.argv.index("--model") + 1] for job in suite.SUITE
            if "--model" in job.argv}
  assert models == {"ncl", "nct", "rnvp"}
  assert len(set(suite.JOB_NAMES)) == len(suite.SUITE)


def test_a_suite_job_runs_in_a_child_and_names_the_device(tmp_path, capsys):
  out = tmp_path / "suite.jsonl"
  benchmark.main(["suite", "--only", "matmul", "--quick", "--out", str(out)])
  lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert [line.get("suite_job") for line in lines] == ["matmul", None]
  job, summary = lines
  assert job["job"] == "matmul" and job["value"] > 0 and job["wall_s"] > 0
  assert job["device"]["platform"] == "cpu" and job["device"]["count"] >= 1
  assert summary["job"] == "suite" and summary["failed"] == []
  assert summary["device"]["platform"] == "cpu" and summary["peers"]
  assert [json.loads(line) for line in out.read_text().splitlines()] == lines


def test_a_failed_job_is_reported_and_fails_the_suite(monkeypatch, capsys):
  monkeypatch.setattr(suite, "probe_device", lambda: {"platform": "gpu"})
  monkeypatch.setattr(suite, "_run_job",
                      lambda argv, timeout_s: {"error": "exit code 1: boom"})
  with pytest.raises(SystemExit, match="knn"):
    benchmark.main(["suite", "--only", "knn"])
  job, summary = [json.loads(line)
                  for line in capsys.readouterr().out.splitlines()]
  assert job["error"] == "exit code 1: boom"
  assert "--vs-peer" not in job["argv"]     # peers are CPU tools: not on GPU
  assert summary["failed"] == ["knn"] and not summary["peers"]
