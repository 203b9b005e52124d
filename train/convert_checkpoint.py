"""Rewrites a workdir's old checkpoints and config.json into the current ones.

  python -m train.convert_checkpoint WORKDIR

Two conversions, each a no-op where there is nothing to convert:
`nbflows.parametrisations.record_old_values` writes into config.json the
parametrisations the run was trained with but did not record (a latent-flow
run from before its encoder variance head became softplus), and
`train.loop.checkpoint_conversion.convert` rewrites old-layout checkpoints
(it says what it rewrites). JAX and orbax load only after the arguments
are read, so --help is quick.
"""
import os
import sys
from typing import Sequence

from nbflows import parametrisations


def main(argv: Sequence[str]) -> None:
  """`python -m train.convert_checkpoint WORKDIR`."""
  if len(argv) == 2 and argv[1] in ("-h", "--help"):
    print(__doc__)
    return
  if len(argv) != 2:
    raise SystemExit(f"usage: {parametrisations.CONVERT_COMMAND} WORKDIR")
  workdir = argv[1]
  config_file = os.path.join(workdir, parametrisations.CONFIG_FILE)
  for field in parametrisations.record_old_values(workdir):
    print(f"recorded {field} in {config_file}")
  from train.loop import checkpoint_conversion  # pylint: disable=g-import-not-at-top
  for path in checkpoint_conversion.convert(workdir):
    print(f"converted {path}")


if __name__ == "__main__":
  main(sys.argv)
