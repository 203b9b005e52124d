"""KDE on mnist5k (the offline 5,000-image MNIST subset).

configs/kde_digits.py at MNIST size; see that file for what the run should
show.
"""
from configs import kde_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = kde_digits.get_config(arg)
  config.dataset = "mnist5k"
  return config
