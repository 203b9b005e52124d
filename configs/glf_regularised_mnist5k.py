"""Regularised GLF (eq. 4) on mnist5k; see glf_regularised_digits."""
from configs import glf_mnist5k


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = glf_mnist5k.get_config(arg)
  config.glf.objective = "regularised"
  config.glf.beta = 50.0
  return config
