"""NIF-16: configs/nif_digits.py with a k = 16 dimensional latent.

Expected: test bits/dim within 2% of the unit-prior RealNVP's
(configs/default.py) on the same data and steps (paper 4, Table 2).
"""
from configs import nif_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  return nif_digits.get_config(arg, latent_size=16)
