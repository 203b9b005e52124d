"""One-class novelty detection with NCL, no contrastive training, on digits.

configs/ncl_digits.py trained on one class (see configs/novelty_rnvp_digits.py
for the shared settings); scores log p(x | N(x)) with N(x) the 5 nearest
training digits of the normal class in PCA space.

Expected (paper 1, Table 4, full MNIST): mean AUROC about RNVP's (0.621 vs
0.641): the conditional likelihood alone does not separate novel digits.
"""
from configs import ncl_digits
from configs import novelty_rnvp_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  return novelty_rnvp_digits.for_novelty(ncl_digits.get_config(arg), arg)
