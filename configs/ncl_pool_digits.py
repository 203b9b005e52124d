"""NCL-pool on digits: NCL whose g_mu and g_sigma pool the neighbours.

configs/ncl_digits.py with `config.ncl.statistics = "pool"`: after the three
shared conv layers the neighbours' features are pooled by their mean and
maximum over the k neighbours instead of concatenated in order of distance
(App. B.1). A variant, not the paper's model: it ignores the order of the
neighbours and takes any k at test time.

Expected: test bits/dim of x given its neighbourhood (eval.json `test_bpd`)
below RNVP's on the same data and steps, and an exact marginal bits/dim
(eq. 4, `test_marginal_bpd`) close to it, as NCL's.
"""
from configs import ncl_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = ncl_digits.get_config(arg)
  config.ncl.statistics = "pool"
  return config
