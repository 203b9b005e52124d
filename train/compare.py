r"""Trains several configs under the same settings and prints one table.

  python -m train.compare --workdir_root workdirs/compare \
      --configs configs/default.py,configs/ncl_digits.py \
      --set num_train_steps=1500

The command line of `train.experiments.compare`, which says what the table
holds; writes ``<workdir_root>/compare.json``. JAX and the trainer load
only once the flags parse, so --help is quick.
"""
import json
import os

from absl import app
from absl import flags

from train import cli
from train import runtime
from train.experiments import defaults


def define_flags() -> None:
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_list("configs", None, "Comma-separated config files, e.g. "
                    "configs/default.py,configs/ncl_digits.py (a ':quick' "
                    "suffix passes the argument to get_config).")
  flags.DEFINE_multi_string("set", [], "An override field=value applied to "
                            "every config, e.g. num_train_steps=1500.")
  flags.DEFINE_string("workdir_root", None, "Each run goes to "
                      "<workdir_root>/<config file stem>.")
  flags.DEFINE_bool("exact_marginal", False, "Sum eq. 4 over every training "
                    "neighbourhood for every model (NCT: N conditional "
                    "passes per test point) instead of sampling M of them.")
  flags.DEFINE_string("metrics", defaults.COMPARE_METRICS, "Test metrics of "
                      "every run (train.evaluate's names); 'iwae' for VAEs, "
                      "whose table then shows the test IWAE bound; "
                      "'bpd,log_likelihood' for 2-D and context flows, the "
                      "test log-likelihood.")
  runtime.define_flags()
  flags.mark_flags_as_required(["configs", "workdir_root"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from train.experiments import compare  # pylint: disable=g-import-not-at-top
  args = flags.FLAGS
  with runtime.entry_point(args):
    rows = compare.compare(args.configs, args.set, args.workdir_root,
                           args.exact_marginal, args.metrics)
  table = compare.format_table(rows, compare.table_columns(args.metrics))
  with open(os.path.join(args.workdir_root, "compare.json"), "w") as f:
    json.dump({"overrides": args.set, "rows": rows, "table": table}, f,
              indent=2)
  print(table)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
