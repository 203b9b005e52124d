"""CC-RNVP on mnist5k (the offline 5,000-image MNIST subset).

configs/ccrnvp_digits.py at MNIST size; see that file for what the run should
show.
"""
from configs import ccrnvp_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = ccrnvp_digits.get_config(arg)
  config.dataset = "mnist5k"
  return config
