"""NCT on fashion_mnist with paper 1's settings (configs/paper1.py).

Expected: no figure in paper 1's Table 3; Table B.1 gives NCL 1.082 test
bits/dim on Fashion-MNIST (eval.json `test_bpd`).
"""
from configs import nct_digits
from configs import paper1


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = nct_digits.get_config(arg)
  return paper1.for_dataset(config, "fashion_mnist", arg)
