"""VAE with a latent-flow prior (paper 5, eq. 3) on mnist5k."""
from configs import glf_mnist5k


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = glf_mnist5k.get_config(arg)
  config.model = "vae_flowprior"
  config.glf.objective = "vae"
  config.glf.beta = 1.0
  return config
