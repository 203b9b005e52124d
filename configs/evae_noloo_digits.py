"""Exemplar VAE on binarised digits without leave-one-out (paper 3, Table 1).

`configs/evae_digits.py` with each point's own exemplar kept in its prior.
Expected: a lower `test_iwae` than evae_digits (it overfits, Fig. 2).
"""
from configs import evae_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = evae_digits.get_config(arg)
  config.vae.exemplar.leave_one_out = False
  return config
