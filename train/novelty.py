r"""One-class novelty detection (paper 1, Sec. 3.2, Table 4), one command.

  python -m train.novelty --config configs/novelty_ncl_contrastive_mnist5k.py \
      --workdir /tmp/novelty_nclc --classes 0,1,2
  python -m train.novelty --workdir DIR \
      --configs configs/novelty_rnvp_digits.py,configs/novelty_ncl_digits.py

The command line of `train.experiments.novelty` (`run_novelty` for one
config, `run_side_by_side` for several), which says what novelty.json holds.
JAX and the experiments load only once the flags parse, so --help is quick.
"""
import os

from absl import app
from absl import flags
from ml_collections import config_flags

from train import cli
from train import runtime


def define_flags() -> None:
  """The command line's flags (defined only when run as a program)."""
  config_flags.DEFINE_config_file(
      "config", None, "A novelty config, e.g. "
      "configs/novelty_ncl_contrastive_digits.py (or ...:quick).",
      lock_config=True)
  flags.DEFINE_list("configs", None, "Instead of --config: several novelty "
                    "configs of one dataset, run side by side class by class "
                    "(`run_side_by_side`), each in <workdir>/<config name>.")
  flags.DEFINE_string("workdir", None, "Directory for novelty.json and the "
                      "per-class runs.")
  flags.DEFINE_list("classes", None, "Normal classes to run, e.g. 0,1,2 "
                    "(default: all).")
  runtime.define_flags()
  flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config, specs = flags.FLAGS.config, flags.FLAGS.configs
  if (config is None) == (not specs):
    raise app.UsageError("expected --config or --configs, not both")
  with runtime.entry_point(flags.FLAGS):
    print(_table(config, specs))


def _table(config, specs) -> str:
  """Runs `--config` (or `--configs`) and formats its table."""
  # pylint: disable=g-import-not-at-top
  from train.experiments import compare
  from train.experiments import novelty
  from train.experiments import report
  # pylint: enable=g-import-not-at-top
  if config is not None:
    return novelty.format_table(novelty.run_novelty(
        config, flags.FLAGS.workdir, flags.FLAGS.classes))
  runs = {os.path.join(flags.FLAGS.workdir, os.path.splitext(
      os.path.basename(spec.partition(":")[0]))[0]): compare.load_config(
          spec) for spec in specs}
  results = novelty.run_side_by_side(runs, flags.FLAGS.classes)
  return report.novelty_table({os.path.basename(workdir): result
                               for workdir, result in results.items()})


if __name__ == "__main__":
  define_flags()
  cli.run(main)
