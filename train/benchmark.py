"""Speed benchmarks, one JSON line per job.

  python -m train.benchmark knn --n 60000 --d 128 --k 10 --vs-peer
  python -m train.benchmark train --model ncl --data digits

The command line of `train.benchmarks.jobs` (whose docstring lists the
subcommands; each job module adds its own subcommand's arguments, so the
parser is built there).
"""
from train.benchmarks import jobs

if __name__ == "__main__":
  jobs.main()
