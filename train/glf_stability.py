r"""Trains GLF and regularised GLF on digits; plots and tabulates Fig. 4.

  python -m train.glf_stability --workdir_root workdirs/glf_stability

The command line of `train.experiments.glf_stability`, which says what the
curves and the table hold; writes ``<workdir_root>/glf_stability.json`` and
the plot (``--plot``, by default docs/figures/glf_vs_regularised_digits.png).
"""
import json
import os

from absl import app
from absl import flags

from train import cli
from train import runtime

PLOT = os.path.join("docs", "figures", "glf_vs_regularised_digits.png")


def define_flags() -> None:
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_integer("num_train_steps", 3000, "Steps per model (the "
                       "constant-rate steps of train.experiments."
                       "glf_stability).")
  flags.DEFINE_multi_string("set", [], "Another override field=value for "
                            "both runs, e.g. optimizer.learning_rate=1e-2.")
  flags.DEFINE_string("plot", PLOT, "Where the plot goes.")
  flags.DEFINE_string("workdir_root", None, "The runs go to "
                      "<workdir_root>/glf and <workdir_root>/glf_regularised.")
  runtime.define_flags()
  flags.mark_flags_as_required(["workdir_root"])


def main(argv):
  args = flags.FLAGS
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from train.experiments import glf_stability  # pylint: disable=g-import-not-at-top
  with runtime.entry_point(args):
    rows, curves = glf_stability.run(args.workdir_root, args.set,
                                     args.num_train_steps)
    glf_stability.plot(curves, args.plot)
  table = glf_stability.format_table(rows)
  with open(os.path.join(args.workdir_root, "glf_stability.json"), "w") as f:
    json.dump({"overrides": args.set, "num_train_steps": args.num_train_steps,
               "rows": rows, "table": table, "plot": args.plot}, f, indent=2)
  print(table)
  print(f"plot: {args.plot}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
