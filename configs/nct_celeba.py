"""NCT on celeb_a with paper 1's settings (configs/paper1.py).

Expected (paper 1, Table 3): about 2.934 test bits/dim (eval.json `test_bpd`).
"""
from configs import nct_digits
from configs import paper1


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = nct_digits.get_config(arg)
  return paper1.for_dataset(config, "celeb_a", arg)
