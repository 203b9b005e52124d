r"""Evaluates the best checkpoint of a finished run: writes eval.json.

  python -m train.evaluate --config configs/ncl_digits.py --workdir DIR \
      --metrics bpd,marginal_bpd,fd,prd

The command line of `train.evaluation.evaluate.evaluate`, which says what
eval.json holds. JAX and the evaluation load only once the flags parse, so
--help is quick.
"""
from absl import flags
from ml_collections import config_flags

from train import cli
from train import runtime
from train.evaluation import metric_names


def define_flags() -> None:
  """The command line's flags (defined only when run as a program)."""
  config_flags.DEFINE_config_file(
      "config", None, "Config file, e.g. configs/default.py:quick.",
      lock_config=True)
  flags.DEFINE_string("workdir", None, "The training run's directory.")
  flags.DEFINE_list("metrics", None, "Metrics to evaluate, from "
                    f"{', '.join(metric_names.METRICS)} (default: "
                    "config.eval.metrics, "
                    "else the model family's default).")
  flags.DEFINE_bool("rebuild_index", False, "Build the neighbour indices "
                    "again, overwriting a stale or damaged cached one.")
  runtime.define_flags()
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  from train.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  with runtime.entry_point(flags.FLAGS):
    evaluate.evaluate(flags.FLAGS.config, flags.FLAGS.workdir,
                      flags.FLAGS.metrics, flags.FLAGS.rebuild_index)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
