"""Rewrites a workdir's old-layout checkpoints into the current layout.

  python -m train.convert_checkpoint WORKDIR

The command line of `train.loop.checkpoint_conversion.convert`, which says
what it rewrites.
"""
import sys
from typing import Sequence

from nbflows import checkpoint as checkpoint_format
from train.loop import checkpoint_conversion


def main(argv: Sequence[str]) -> None:
  """`python -m train.convert_checkpoint WORKDIR`."""
  if len(argv) == 2 and argv[1] in ("-h", "--help"):
    print(__doc__)
    return
  if len(argv) != 2:
    raise SystemExit(f"usage: {checkpoint_format.CONVERT_COMMAND} WORKDIR")
  for path in checkpoint_conversion.convert(argv[1]):
    print(f"converted {path}")


if __name__ == "__main__":
  main(sys.argv)
