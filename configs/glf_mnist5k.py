"""Generative latent flow (paper 5, eq. 5) on mnist5k, 20-D codes (Sec. 4)."""
from configs import glf_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = glf_digits.get_config(arg)
  config.dataset = "mnist5k"
  config.glf.latent_dim = 20
  return config
