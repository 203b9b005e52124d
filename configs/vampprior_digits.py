"""VAE with a VampPrior on binarised digits (paper 3, Table 3 baseline).

`configs/vae_digits.py` with the prior replaced by a mixture over
`config.vae.num_pseudo_inputs` learned pseudo-inputs (Tomczak & Welling).
"""
from configs import vae_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = vae_digits.get_config(arg)
  config.model = "vampprior"
  return config
