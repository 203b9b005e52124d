"""Speed benchmarks, one JSON line per job.

  python -m train.benchmark knn --n 60000 --d 128 --k 10 --vs-peer
  python -m train.benchmark train --model ncl --data digits

The command line of `train.benchmarks.jobs` (whose docstring lists the
subcommands; each job module adds its own subcommand's arguments, so the
parser is built there). On the CPU it runs with `train.runtime`'s fast XLA
flags unless XLA_FLAGS is set (`XLA_FLAGS= python -m train.benchmark ...`
for XLA's defaults); the JSON line records the flags.
"""
from train import runtime
from train.benchmarks import jobs

if __name__ == "__main__":
  runtime.set_fast_cpu_flags()
  jobs.main()
