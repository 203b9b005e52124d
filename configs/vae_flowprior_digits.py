"""VAE with a latent-flow prior on digits (paper 5, eq. 3).

GLF's networks with a stochastic encoder and the ELBO of eq. 3, with the
reconstruction weighted by beta (beta = 1: the usual ELBO; the paper shows
sample quality improves as beta grows). Measured on digits, Frechet
distance of 2000 samples: 1594 at beta = 1 (with a unit-variance decoder on
64 grey pixels the posterior collapses), 30.6 with
`--config.glf.beta=100`, close to glf_digits' 32.5 (paper 5, Fig. 3). The posterior variance
against beta (Fig. 3b): `python -m train.beta_sweep` (README).
"""
from configs import glf_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = glf_digits.get_config(arg)
  config.model = "vae_flowprior"
  config.glf.objective = "vae"
  config.glf.beta = 1.0
  return config
