"""`train.benchmark suite`: every benchmark job in one command.

  python -m train.benchmark suite      # its wall time: PERFORMANCE.md
  python -m train.benchmark suite --out suite.jsonl --vs-baseline
  python -m train.benchmark suite --only knn train-ncl --quick

Runs the jobs of `SUITE` one after the other, each in a fresh
`python -m train.benchmark ...` process (so one job's compile caches, memory
and threads do not leak into the next, and each gets the entry point's own
XLA defaults), and prints each job's JSON line as it ends, tagged with
`suite_job` (the name below), `argv`, `wall_s` (the whole process: start-up,
compiles and steps) and the device the job ran on. A last line
(`"job": "suite"`) gives the total time and any failed jobs. With `--out`
the same lines are appended to a file.

The architecture jobs compare with their peers (torch, faiss-flat) in
alternating rounds; the peers run on the CPU, so on an accelerator the
suite leaves them out (the ratio would compare devices, not libraries)
unless `--peers always`. `--quick` shrinks every job to a smoke-test size:
it checks that the suite runs, its figures mean nothing.

The suite process itself never starts JAX: on a GPU, JAX would reserve most
of the device memory that the jobs need.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from typing import Any, Dict, List, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class SuiteJob:
  """One job: its name, its `train.benchmark` arguments and smoke size.

  peer: the arguments that add the peer comparison (left out with
  `--peers never`, or on an accelerator with `--peers cpu`).
  """
  name: str
  argv: Tuple[str, ...]
  quick_argv: Tuple[str, ...]
  peer: Tuple[str, ...] = ()
  library_model: bool = False


_TINY_FLOW = ("--steps", "1", "--warmup", "0")
_TINY_ARCH = ("--layers", "2", "--batch", "4") + _TINY_FLOW
_TINY_MODEL = ("--data", "digits", "--quick", "--batch", "4") + _TINY_FLOW


def _model_jobs() -> List[SuiteJob]:
  jobs = []
  for model in ("ncl", "nct", "rnvp"):
    jobs.append(SuiteJob(
        f"train-{model}",
        ("train", "--model", model, "--data", "mnist5k", "--steps", "5"),
        ("train", "--model", model) + _TINY_MODEL, library_model=True))
  for job in ("logprob", "sample"):
    jobs.append(SuiteJob(
        f"{job}-ncl", (job, "--model", "ncl", "--data", "mnist5k"),
        (job, "--model", "ncl") + _TINY_MODEL))
  return jobs


SUITE: Tuple[SuiteJob, ...] = (
    SuiteJob("matmul", ("matmul",), ("matmul", "--n", "128", "--steps", "1")),
    SuiteJob("train-conv", ("train", "--arch", "conv", "--steps", "5",
                            "--rounds", "3"),
             ("train", "--arch", "conv", "--conv-impl", "im2col")
             + _TINY_ARCH, peer=("--vs-peer",)),
    SuiteJob("train-mlp", ("train", "--arch", "mlp", "--steps", "30",
                           "--rounds", "3"),
             ("train", "--arch", "mlp") + _TINY_ARCH, peer=("--vs-peer",)),
    SuiteJob("logprob-conv", ("logprob", "--arch", "conv"),
             ("logprob", "--arch", "conv", "--conv-impl", "im2col")
             + _TINY_ARCH),
    SuiteJob("sample-conv", ("sample", "--arch", "conv"),
             ("sample", "--arch", "conv", "--conv-impl", "im2col")
             + _TINY_ARCH),
    SuiteJob("compile-conv", ("compile", "--arch", "conv"),
             ("compile", "--arch", "mlp", "--depths", "2", "4")),
    *_model_jobs(),
    SuiteJob("knn", ("knn", "--n", "60000", "--d", "128", "--k", "10"),
             ("knn", "--n", "512", "--d", "8", "--k", "3"),
             peer=("--vs-peer",)),
    SuiteJob("exemplar_prior", ("exemplar_prior",),
             ("exemplar_prior", "--n", "50,100", "--k", "3", "--batch", "4",
              "--steps", "1", "--rounds", "1", "--quick")),
)
JOB_NAMES = tuple(job.name for job in SUITE)


def job_argv(job: SuiteJob, quick: bool, peers: bool,
             vs_baseline: bool) -> List[str]:
  """The `train.benchmark` arguments of `job` under the suite's options."""
  argv = list(job.quick_argv if quick else job.argv)
  if peers:
    argv += job.peer
  if vs_baseline and job.library_model:
    argv.append("--vs-baseline")
  return argv


def _run_job(argv: Sequence[str], timeout_s: float) -> Dict[str, Any]:
  """One `python -m train.benchmark ARGV` process: its last JSON line."""
  start = time.perf_counter()
  try:
    completed = subprocess.run(
        [sys.executable, "-m", "train.benchmark", *argv], check=False,
        capture_output=True, text=True, timeout=timeout_s)
  except subprocess.TimeoutExpired:
    return {"error": f"no result within --job-timeout-s {timeout_s:g} s",
            "wall_s": round(time.perf_counter() - start, 1)}
  wall_s = round(time.perf_counter() - start, 1)
  lines = completed.stdout.strip().splitlines()
  if completed.returncode != 0 or not lines:
    tail = completed.stderr.strip().splitlines()[-3:]
    return {"error": f"exit code {completed.returncode}: " + " | ".join(tail),
            "wall_s": wall_s}
  return {**json.loads(lines[-1]), "wall_s": wall_s}


def probe_device(timeout_s: float = 120.0) -> Dict[str, Any]:
  """`device.describe()` of a child process (this one must not start JAX)."""
  completed = subprocess.run(
      [sys.executable, "-c", "import json; from train.benchmarks import "
       "device; print(json.dumps(device.describe()))"],
      check=True, capture_output=True, text=True, timeout=timeout_s)
  return json.loads(completed.stdout.strip().splitlines()[-1])


def _peers_wanted(policy: str, platform: str) -> bool:
  """Whether the peer comparisons run: the peers are CPU libraries."""
  if policy == "cpu":
    return platform == "cpu"
  return policy == "always"


def run_suite(args: argparse.Namespace) -> Dict[str, Any]:
  """Runs the selected jobs, printing one JSON line each; returns the last."""
  selected = [job for job in SUITE if not args.only or job.name in args.only]
  start, failed = time.perf_counter(), []
  if args.dry_run:
    device, platform = "not probed (dry run)", "cpu"
  else:
    device = probe_device()
    platform = device["platform"]
  peers = _peers_wanted(args.peers, platform)
  for job in selected:
    argv = job_argv(job, args.quick, peers, args.vs_baseline)
    if args.dry_run:
      _emit(args, {"suite_job": job.name, "argv": argv})
      continue
    result = {"suite_job": job.name, "argv": argv,
              **_run_job(argv, args.job_timeout_s)}
    if "error" in result:
      failed.append(job.name)
    _emit(args, result)
  summary = {"job": "suite", "value": round(time.perf_counter() - start, 1),
             "unit": "s", "jobs": [job.name for job in selected],
             "failed": failed, "peers": peers, "quick": args.quick,
             "dry_run": args.dry_run, "device": device}
  if args.out:
    _append(args.out, summary)
  return summary


def _emit(args: argparse.Namespace, line: Dict[str, Any]) -> None:
  print(json.dumps(line), flush=True)
  if args.out:
    _append(args.out, line)


def _append(path: str, line: Dict[str, Any]) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(line) + "\n")


def add_suite_job(jobs) -> None:
  """The `suite` subcommand: prints each job's line as it ends; its own
  (summary) line is printed by `train.benchmark` like any job's."""
  parser = jobs.add_parser(
      "suite", help="every job in one command, one JSON line each",
      description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", nargs="+", choices=JOB_NAMES, default=None,
                      help="run these jobs only")
  parser.add_argument("--quick", action="store_true",
                      help="smoke-test sizes (figures mean nothing)")
  parser.add_argument("--peers", choices=("cpu", "always", "never"),
                      default="cpu", help="run the torch/faiss comparisons: "
                      "on the CPU only (default), always, or never")
  parser.add_argument("--vs-baseline", action="store_true",
                      help="library model train jobs also time the "
                      "baseline commit's step")
  parser.add_argument("--job-timeout-s", type=float, default=900.0)
  parser.add_argument("--out", default=None,
                      help="also append the JSON lines to this file")
  parser.add_argument("--dry-run", action="store_true",
                      help="print each job's arguments without running it")
  parser.set_defaults(run=run_suite)
