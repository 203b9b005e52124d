"""Resume cost against the step resumed at: `python -m train.benchmark resume`.

What a resumed run does that depends on its step is put the input pipeline
where the interrupted run was (restoring the checkpoint reads a state whose
size does not depend on the step). The pipeline computes batch s from the
seed and s (`nbflows.data.pipeline.train_iterator(start_step=s)`), so this
job times, on digits with the main job's config, the seconds from asking for
the iterator at each step to holding its first batch, and, for contrast, the
cost of the replay a resumed run used to do (every consumed batch through the
map), measured over `--replay` batches and scaled to each step.
"""
from __future__ import annotations

import argparse
import itertools
import time
from typing import Any, Dict

from configs import ncl_digits
from nbflows.data import pipeline
from nbflows.data import sources
from nbflows.neighbours import index as index_lib


def _seconds_to_first_batch(splits, index, config, step: int) -> float:
  start = time.perf_counter()
  next(pipeline.train_iterator(splits, index, config, config.seed,
                               start_step=step))
  return time.perf_counter() - start


def resume_job(args: argparse.Namespace) -> Dict[str, Any]:
  """Times the pipeline's start at each of `args.steps`."""
  config = ncl_digits.get_config()
  splits = sources.load(config.dataset)
  index = index_lib.build_or_load(splits, config.neighbours, None)
  _seconds_to_first_batch(splits, index, config, 0)      # warm TensorFlow up
  starts = {str(step): round(_seconds_to_first_batch(splits, index, config,
                                                     step), 3)
            for step in args.steps}
  iterator = pipeline.train_iterator(splits, index, config, config.seed)
  next(iterator)
  start = time.perf_counter()
  for _ in itertools.islice(iterator, args.replay):
    pass
  per_batch = (time.perf_counter() - start) / args.replay
  return {
      "job": "resume", "value": starts[str(max(args.steps))], "unit": "s",
      "dataset": config.dataset, "model": config.model,
      "batch_size": config.batch_size,
      "start_at_step": starts,
      "extra_at_largest_step": round(starts[str(max(args.steps))] -
                                     starts[str(min(args.steps))], 3),
      "replay_seconds_per_batch": round(per_batch, 6),
      "replay_at_step": {str(step): round(per_batch * step, 1)
                         for step in args.steps},
  }


def add_resume_job(jobs) -> None:
  """The `resume` subcommand."""
  parser = jobs.add_parser(
      "resume", help="input-pipeline start time against the resumed step")
  parser.add_argument("--steps", type=int, nargs="+", default=[10, 100_000])
  parser.add_argument("--replay", type=int, default=200,
                      help="batches timed to estimate the old replay's cost")
  parser.set_defaults(run=resume_job)
