"""Generative data augmentation with a trained Exemplar VAE (paper 3, eq. 16).

  python -m train.augment --workdir DIR --weight 0.5 --steps 2000 --compare

where DIR is a finished `python -m train.main` run of an Exemplar VAE config
(e.g. configs/evae_digits.py). The command line of
`train.experiments.augment.augment`, which writes DIR/augment.json. JAX
loads only once the flags parse, so --help is quick.
"""
from absl import flags

from train import cli
from train import runtime


def define_flags() -> None:
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string("workdir", None, "A finished Exemplar VAE run.")
  flags.DEFINE_float("weight", 0.5, "lambda of eq. 16 (1: no augmentation).")
  flags.DEFINE_integer("steps", 2000, "Classifier training steps.")
  flags.DEFINE_bool("compare", True, "Also train with lambda = 1.")
  flags.DEFINE_list("hidden", ["1024", "1024"], "MLP hidden widths.")
  flags.DEFINE_integer("seed", 0, "Seed of the classifier runs.")
  runtime.define_flags()
  flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  from train.experiments import augment  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  with runtime.entry_point(f):
    augment.augment(f.workdir, f.weight, f.steps, f.compare,
                    [int(w) for w in f.hidden], f.seed)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
