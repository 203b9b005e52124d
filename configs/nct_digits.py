"""NCT (paper 1, eq. 8) on digits: neighbourhood-conditioned couplings.

RealNVP of configs/paper1.py's CPU size whose couplers also see the
neighbourhood of k = 5 nearest same-class training images (App. B.2): the
k images concatenated along channels with x_A, nearest first, resized to
each scale (`config.nct.condition = "concat"`, eq. 8). The pooled variant,
NCT-pool, is configs/nct_pool_digits.py.

Expected: test bits/dim given the neighbourhood (eval.json `test_bpd`) below
RNVP's on the same data and steps (paper 1, Table 3 ordering).
"""
import ml_collections

from configs import default
from configs import paper1


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = default.get_config(arg)
  with config.unlocked():
    config.model = "nct"
    config.neighbours.k = 5                # App. B.2
    config.nct = ml_collections.ConfigDict()
    # "concat": eq. 8, the k neighbours in order (k fixed); "pool": NCT-pool.
    config.nct.condition = "concat"
  paper1.cpu_sized(config, arg)
  config.lock()
  return config
