"""NCL (paper 1, eq. 7 and 9) on digits: the default neighbourhood flow.

RealNVP q of configs/paper1.py's CPU size (so "rnvp" at that size is its
like-for-like baseline: same flow, same steps, parameter counts within
10%), conditioned on the k = 5 nearest same-class training images in
PCA(99%) space (App. B.2). The head g_mu, g_sigma (App. B.1) has 8 hidden
channels and concatenates the neighbours' features along channels, nearest
first, after its three shared layers (`config.ncl.statistics = "concat"`,
so k is fixed). The pooled variant, NCL-pool, is configs/ncl_pool_digits.py.

Expected: test bits/dim of x given its neighbourhood (eval.json `test_bpd`)
below RNVP's on the same data and steps (paper 1, Table 3 ordering), and a
marginal bits/dim (eq. 4, `test_marginal_bpd`) close to it (Table B.1).
"""
import ml_collections

from configs import default
from configs import paper1


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = default.get_config(arg)
  with config.unlocked():
    config.model = "ncl"
    config.neighbours.k = 5                # App. B.2
    config.ncl = ml_collections.ConfigDict()
    config.ncl.hidden_channels = 8         # g_mu and g_sigma's conv layers
    config.ncl.max_log_scale = 3.0         # |log g_sigma| < 3
    # "concat": App. B.1, the k neighbours in order (k fixed); "pool": NCL-pool.
    config.ncl.statistics = "concat"
    if arg == "quick":
      config.ncl.hidden_channels = 4
  paper1.cpu_sized(config, arg)
  config.lock()
  return config
