"""Exemplar VAE on binarised mnist5k, no leave-one-out (paper 3, Table 1)."""
from configs import evae_mnist5k


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = evae_mnist5k.get_config(arg)
  config.vae.exemplar.leave_one_out = False
  return config
