"""MAF on the spirals target (paper 2, Fig. 4 and App. D.2).

The architecture and training settings of configs/maf_rings.py on another
target whose support a Gaussian cannot be bent into continuously.

Expected: a test log-likelihood below LGF-MAF's (configs/lgf_maf_spirals.py)
on the same data and steps.
"""
from configs import maf_rings


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = maf_rings.get_config(arg)
  config.dataset = "spirals"
  return config
