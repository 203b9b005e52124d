"""Speed benchmarks of nbflows' jobs, each one JSON line on stdout.

  python -m train.benchmark knn --n 60000 --d 128 --k 10 --vs-peer --rounds 3

Each subcommand times one job and prints
`{"job", "value", "unit", ...}`; with `--vs-peer` it also times the same job
with the peer tool a user would pick instead (the scripts in
`../shared/bench/`, run in the same invocation, so on the same machine and
load) and adds `peer_value` and `speedup` (peer time / nbflows time).

Subcommands:
  knn  exact k nearest neighbours of every row of a random [n, d] float32
       matrix among the others (the neighbour index build,
       `nbflows.neighbours.knn.knn`, `train.benchmarks.knn`) in `--rounds`
       rounds; peer: faiss IndexFlatL2 (`faiss_knn.py`, needs `pip install
       faiss-cpu`, not a requirement of nbflows), one run before each of
       nbflows' rounds. Also reports the peak resident memory of the process
       and, for contrast, the size an N x N float32 distance matrix would
       take.
  index    the neighbour index (PCA(99%) + exact kNN) of synthetic uint8
           images at a dataset's shape (`train.benchmarks.knn`):
           seconds per phase, kept dimension, peak RSS.
  train    training throughput (images/s) of the peer's RealNVP
           (`--arch conv|mlp`, peer torch_realnvp.py with `--vs-peer`) or of
           a library model (`--model ncl|nct|rnvp --data digits|mnist5k`,
           with XLA's temp memory and the peak RSS); compile time apart.
  logprob  evaluation throughput (jitted log p(x) of a batch).
  sample   sampling throughput (prior draw and inverse pass of a batch).
  compile  the conv arch's train-step compile time at 8, 16, 32 couplings,
           scanned (`--no-scan` to unroll).
  matmul   the float32 matmul rate that the floors divide by.
  resume   seconds for the input pipeline to start at a resumed step
           (`--steps 10 100000`), against the replay it replaced.
  exemplar_prior  the Exemplar VAE's trainer step against the number of
           exemplars N (`--n 1000,5000,20000,50000`), exact prior against
           the kNN prior of Alg. 1 / eq. 15, every N and prior in turn
           (`train.benchmarks.exemplar_prior`), a line per N and prior.
  suite    every job above in one command, each in its own process
           (`train.benchmarks.suite`), one JSON line per job.

  python -m train.benchmark train --arch conv --steps 5 --rounds 3 --vs-peer
  python -m train.benchmark train --model ncl --data mnist5k
  python -m train.benchmark compile --arch conv
  python -m train.benchmark index --dataset-shape 202599,12288
See PERFORMANCE.md for the figures and what each optimisation changed.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from nbflows.bijectors import couplers
from train.benchmarks import device as benchmark_device
from train.benchmarks import exemplar_prior as benchmark_exemplar_prior
from train.benchmarks import flows as benchmark_flows
from train.benchmarks import knn as benchmark_index
from train.benchmarks import peer_models as benchmark_models
from train.benchmarks import resume as benchmark_resume
from train.benchmarks import suite as benchmark_suite

MODELS = ("ncl", "nct", "rnvp")
DATASETS = ("digits", "mnist5k")


def _conv_impl_arg(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--conv-impl", choices=couplers.CONV_IMPLS,
                      default="xla", help="the conv arch's ConvCoupler."
                      "conv_impl (checked against xla's on the same params)")


def _flow_target_args(parser: argparse.ArgumentParser, steps: int) -> None:
  """The options that pick what a flow job runs: an arch or a config model."""
  parser.add_argument("--arch", choices=benchmark_models.ARCHS,
                      default="conv",
                      help="the peer's RealNVP (../shared/bench/"
                      "torch_realnvp.py); ignored with --model")
  parser.add_argument("--layers", type=int, default=8,
                      help="couplings of the arch")
  parser.add_argument("--scan", action="store_true",
                      help="stack pairs of couplings with nn.scan")
  _conv_impl_arg(parser)
  parser.add_argument("--model", choices=MODELS, default=None,
                      help="a library model from configs/{model}_{data}.py")
  parser.add_argument("--data", choices=DATASETS, default="digits")
  parser.add_argument("--quick", action="store_true",
                      help="the config's quick (tiny) variant")
  parser.add_argument("--batch", type=int, default=0,
                      help="batch size; 0: the peer's or the config's")
  parser.add_argument("--steps", type=int, default=steps,
                      help="timed calls (per round for train)")
  parser.add_argument("--warmup", type=int, default=2,
                      help="untimed calls after compiling")


def _train_job(args: argparse.Namespace) -> Dict[str, Any]:
  if args.model:
    return benchmark_flows.train_model_job(args)
  return benchmark_flows.train_arch_job(args)


def _add_flow_jobs(jobs) -> None:
  """Subcommands train, logprob, sample, compile and matmul."""
  train = jobs.add_parser("train", help="training throughput (images/s)")
  _flow_target_args(train, steps=10)
  train.add_argument("--rounds", type=int, default=1,
                     help="blocks of --steps, each after one peer or "
                     "baseline run")
  train.add_argument("--vs-peer", action="store_true",
                     help="also run torch_realnvp.py (--arch only)")
  train.add_argument("--vs-baseline", action="store_true",
                     help="also run the step of the baseline commit "
                     "(train.benchmarks.baseline; --model only)")
  train.set_defaults(run=_train_job)
  for name, run in (("logprob", benchmark_flows.logprob_job),
                    ("sample", benchmark_flows.sample_job)):
    parser = jobs.add_parser(name, help=f"{name} throughput (images/s)")
    _flow_target_args(parser, steps=10)
    parser.set_defaults(run=run)
  compile_parser = jobs.add_parser(
      "compile", help="train-step compile time against depth")
  compile_parser.add_argument("--arch", choices=benchmark_models.ARCHS,
                              default="conv")
  compile_parser.add_argument("--depths", type=int, nargs="+",
                              default=[8, 16, 32])
  compile_parser.add_argument("--no-scan", dest="scan", action="store_false",
                              help="unroll the couplings instead")
  compile_parser.add_argument("--batch", type=int, default=0)
  _conv_impl_arg(compile_parser)
  compile_parser.set_defaults(run=benchmark_flows.compile_job)
  matmul = jobs.add_parser("matmul", help="float32 matmul rate (GFLOP/s)")
  matmul.add_argument("--n", type=int, default=1024)
  matmul.add_argument("--steps", type=int, default=10)
  matmul.set_defaults(run=benchmark_flows.matmul_job)


def build_parser() -> argparse.ArgumentParser:
  """The command line: one subcommand per job."""
  parser = argparse.ArgumentParser(
      prog="python -m train.benchmark", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  jobs = parser.add_subparsers(dest="job", required=True)

  benchmark_index.add_knn_job(jobs)
  benchmark_index.add_index_job(jobs)
  _add_flow_jobs(jobs)
  benchmark_resume.add_resume_job(jobs)
  benchmark_exemplar_prior.add_exemplar_prior_job(jobs)
  benchmark_suite.add_suite_job(jobs)
  return parser


def main(argv: Optional[List[str]] = None) -> None:
  """Parses the subcommand and prints its one JSON line."""
  args = build_parser().parse_args(argv)
  result = args.run(args)
  if "device" not in result:     # the suite's line names it, without JAX
    result["device"] = benchmark_device.describe()
  print(json.dumps(result), flush=True)
  if result.get("failed"):
    sys.exit(f"train.benchmark {args.job}: failed {result['failed']}")
