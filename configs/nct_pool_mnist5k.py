"""NCT-pool on mnist5k (the offline 5,000-image MNIST subset).

configs/nct_mnist5k.py with the pooled condition of configs/nct_pool_digits.py
(see that file for what the variant is and what the run should show).
"""
from configs import nct_mnist5k


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = nct_mnist5k.get_config(arg)
  config.nct.condition = "pool"
  return config
