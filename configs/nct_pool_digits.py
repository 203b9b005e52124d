"""NCT-pool on digits: NCT whose couplers see pooled neighbourhoods.

configs/nct_digits.py with `config.nct.condition = "pool"`: instead of eq. 8's
k neighbour images side by side, every coupling's s and t see the per-pixel
mean and standard deviation over the k neighbours (in logit space), resized
to each scale. A variant, not the paper's model: it ignores the order of the
neighbours and takes any k at test time.

Expected: test bits/dim given the neighbourhood (eval.json `test_bpd`) below
RNVP's on the same data and steps, as NCT's.
"""
from configs import nct_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = nct_digits.get_config(arg)
  config.nct.condition = "pool"
  return config
