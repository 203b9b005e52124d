"""MAF on three concentric rings (paper 2, Fig. 4 and App. D.2).

Twenty autoregressive layers of MADEs with 4 hidden layers of 50 units
(160,080 parameters, against LGF-MAF's 119,910 in configs/lgf_maf_rings.py);
training settings of configs/maf_two_rectangles.py.

Expected: a test log-likelihood below LGF-MAF's on the same data and steps,
with mass bridging the rings (paper 2, Fig. 4, left).
"""
from configs import maf_two_rectangles


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = maf_two_rectangles.get_config(arg)
  with config.unlocked():
    config.dataset = "rings"
    if arg != "quick":
      config.flow.num_layers = 20
      config.flow.mlp_hidden = (50,) * 4
  config.lock()
  return config
