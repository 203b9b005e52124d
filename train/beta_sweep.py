r"""Trains the VAE + flow prior at several beta; prints Fig. 3b's table.

  python -m train.beta_sweep --workdir_root workdirs/beta_sweep \
      --data digits --betas 1,10,100,400,4000,19200

The command line of `train.experiments.beta_sweep`, which says what the
table holds; writes ``<workdir_root>/beta_sweep.json``. JAX and the
trainer load only once the flags parse, so --help is quick.
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
  flags.DEFINE_enum("data", "digits", ["digits", "mnist5k"], "Trains "
                    "configs/vae_flowprior_<data>.py.")
  flags.DEFINE_list("betas", [f"{b:g}" for b in defaults.BETAS],
                    "The reconstruction weights beta of eq. 3.")
  flags.DEFINE_integer("num_train_steps", defaults.BETA_SWEEP_STEPS,
                       "Steps per beta (the default was chosen on digits' "
                       "validation loss).")
  flags.DEFINE_multi_string("set", [], "Another override field=value for "
                            "every run, e.g. glf.latent_dim=16.")
  flags.DEFINE_string("workdir_root", None, "Each beta's run goes to "
                      "<workdir_root>/beta_<beta>.")
  runtime.define_flags()
  flags.mark_flags_as_required(["workdir_root"])


def main(argv):
  from train.experiments import beta_sweep  # pylint: disable=g-import-not-at-top
  args = flags.FLAGS
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    betas = [float(b) for b in args.betas]
  except ValueError as error:
    raise app.UsageError(f"--betas={','.join(args.betas)}; expected numbers "
                         "separated by commas") from error
  overrides = [f"num_train_steps={args.num_train_steps}", *args.set]
  with runtime.entry_point(args):
    rows = beta_sweep.sweep(betas, args.data, args.workdir_root, overrides)
  table = beta_sweep.format_table(rows)
  falling = beta_sweep.monotone_falling(rows)
  with open(os.path.join(args.workdir_root, "beta_sweep.json"), "w") as f:
    json.dump({"data": args.data, "overrides": overrides, "rows": rows,
               "table": table, "variance_falls_with_beta": falling}, f,
              indent=2)
  print(table)
  print(f"posterior variance falls with every larger beta: {falling}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
