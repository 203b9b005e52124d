r"""The README's results: paper 1's models on the offline data, one command.

  python -m train.report --workdir_root workdirs/report \
      --datasets digits,mnist5k --seeds 0,1,2

The command line of `train.experiments.report`, which says what each table
holds; writes report.md, report.json and report.png to --workdir_root.
JAX and the trainer load only once the flags parse, so --help is quick.
"""
import sys

from absl import app
from absl import flags

from train import cli
from train import runtime
from train.experiments import defaults


def define_flags() -> None:
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string("workdir_root", None, "Runs go to <workdir_root>/"
                      "<dataset>/<row>/seed_<s>; report.md/.json/.png to "
                      "<workdir_root>.")
  flags.DEFINE_list("datasets", ["digits", "mnist5k"], "Datasets, e.g. "
                    "digits,mnist5k.")
  flags.DEFINE_list("rows", list(defaults.REPORT_ROWS),
                    f"Rows, from {', '.join(defaults.REPORT_ROWS)}.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "config.seed of each row's "
                    "runs; cells are mean +- sd over them. Empty: one run "
                    "per row with the config's seed, in <dataset>/<row>.")
  flags.DEFINE_list("marginal_bias", ["digits"], "Datasets on which NCT "
                    "also measures its sampled marginal (M = 100) against "
                    "the exact one over all training neighbourhoods.")
  flags.DEFINE_multi_string("set", [], "An override field=value applied to "
                            "every run, e.g. num_train_steps=200.")
  flags.DEFINE_bool("quick", False, "Smoke test: the configs' quick "
                    "versions.")
  runtime.define_flags()
  flags.mark_flags_as_required(["workdir_root"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from train.experiments import report  # pylint: disable=g-import-not-at-top
  args = flags.FLAGS
  seeds = [int(seed) for seed in args.seeds] or None
  with runtime.entry_point(args):
    results = report.report(
        args.workdir_root, args.datasets, args.rows, args.set, args.quick,
        " ".join(["python -m train.report"] + sys.argv[1:]), seeds,
        args.marginal_bias)
  print(results["markdown"])
  print(f"wall time: {results['wall_time_s']['total']:.0f} s")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
