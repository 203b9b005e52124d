"""NCT on celeb_a with paper 1's settings (configs/paper1.py).

Expected (paper 1, Table 3): about 2.934 test bits/dim (eval.json `test_bpd`).
Neighbours come from PCA by default; paper 1's (App. B.2) come from a
beta-VAE's encoder means: train configs/vae_beta_celeba.py into VAE_DIR and
add --config.neighbours.features=VAE_DIR to this run.
"""
from configs import nct_digits
from configs import paper1


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = nct_digits.get_config(arg)
  return paper1.for_dataset(config, "celeb_a", arg)
