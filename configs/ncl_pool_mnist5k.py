"""NCL-pool on mnist5k (the offline 5,000-image MNIST subset).

configs/ncl_mnist5k.py with the pooled g_mu and g_sigma of
configs/ncl_pool_digits.py (see that file for what the variant is and what
the run should show).
"""
from configs import ncl_mnist5k


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = ncl_mnist5k.get_config(arg)
  config.ncl.statistics = "pool"
  return config
