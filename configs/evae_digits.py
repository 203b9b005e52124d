"""Exemplar VAE on binarised digits (paper 3), exact exemplar prior.

`configs/vae_digits.py` with the exemplar prior: leave-one-out (eq. 4) and
exemplar subsampling M/N = 0.5 (eq. 5) in training, all training exemplars
at evaluation.

Expected: `test_iwae` above vae_digits' (Table 3 ordering) and above
evae_noloo_digits' (Table 1 ordering), same networks and steps.
"""
from configs import vae_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = vae_digits.get_config(arg)
  config.model = "evae"
  return config
