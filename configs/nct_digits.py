"""NCT (paper 1, eq. 8) on digits: neighbourhood-conditioned couplings.

RealNVP of configs/paper1.py's CPU size whose couplers also see the
neighbourhood of k = 5 nearest same-class training images (App. B.2),
summarised by its per-pixel mean and standard deviation in logit space
("pool", any k; "concat" is the paper's concatenation of the k images).

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
    config.nct.condition = "pool"          # or "concat" (fixed k)
  paper1.cpu_sized(config, arg)
  config.lock()
  return config
