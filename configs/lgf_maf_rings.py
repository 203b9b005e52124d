"""LGF-MAF on three concentric rings (paper 2, Fig. 4 and App. D.2).

Five MAF layers with MADEs of 4 hidden layers of 50 units, a scalar u per
layer, the (s, t) and p, q networks of configs/lgf_maf_two_rectangles.py
(119,910 parameters, against the MAF baseline's 160,080); training settings
of configs/maf_two_rectangles.py.

Expected: a test log-likelihood (eval.json `test_log_likelihood`) above the
MAF baseline's, with the rings kept apart (paper 2, Fig. 4, right).
"""
from configs import lgf_maf_two_rectangles
from configs import maf_rings


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = maf_rings.get_config(arg)
  with config.unlocked():
    config.model = "lgf_maf"
    config.lgf = lgf_maf_two_rectangles.lgf_settings(arg)
    config.flow.num_layers = 5 if arg != "quick" else 2
  config.lock()
  return config
