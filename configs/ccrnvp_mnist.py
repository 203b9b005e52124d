"""CC-RNVP on mnist with paper 1's settings (configs/paper1.py).

Expected (paper 1, Table 3): about 0.415 test bits/dim (eval.json `test_bpd`).
"""
from configs import ccrnvp_digits
from configs import paper1


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = ccrnvp_digits.get_config(arg)
  return paper1.for_dataset(config, "mnist", arg)
