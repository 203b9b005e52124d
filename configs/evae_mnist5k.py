"""Exemplar VAE on binarised mnist5k (paper 3), exact exemplar prior."""
from configs import vae_mnist5k


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = vae_mnist5k.get_config(arg)
  config.model = "evae"
  return config
