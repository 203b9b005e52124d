r"""Trains and evaluates a model from a config file.

  python -m train.main --config configs/default.py --workdir workdirs/default
  python -m train.main --config configs/default.py:quick --workdir /tmp/quick \
      --config.num_train_steps=40

Rerunning with the same --workdir resumes from its latest checkpoint. On a
multi-host system (TPU pod, several GPU hosts) add --distributed, which calls
`jax.distributed.initialize()` (it reads the cluster from the environment),
and run the same command on every host.

A misspelt field, a missing config file or a bad value is one line on stderr
with exit code 2, and only WARNINGs of other libraries are shown unless
--verbosity=1 (`train.cli`); JAX and the trainer load after the flags parse,
so --help is quick.
"""
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from train import cli
from train import runtime

config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/default.py or "
    "configs/default.py:quick; override fields with --config.<field>=<value>.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, "
                    "samples and eval.json.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() "
                  "first (multi-host training).")
flags.DEFINE_bool("rebuild_index", False, "Build the neighbour indices "
                  "again, overwriting a stale or damaged cached one.")
runtime.define_flags()
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax  # pylint: disable=g-import-not-at-top
  from train.loop import trainer  # pylint: disable=g-import-not-at-top
  with runtime.entry_point(FLAGS):
    if FLAGS.distributed:
      jax.distributed.initialize()
    logging.info("process %d of %d, %d devices", jax.process_index(),
                 jax.process_count(), jax.device_count())
    results = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                                         FLAGS.rebuild_index)
  if results["preempted"]:
    logging.warning("stopped by SIGTERM after %d steps; rerun to resume",
                    results["steps_trained"])


if __name__ == "__main__":
  cli.run(main)
