"""One-class novelty detection with NCL with contrastive training on mnist5k.

configs/novelty_ncl_contrastive_digits.py on mnist5k (`novelty_rnvp_digits.for_mnist5k`
gives the sizes); the digits configs state the expected ordering.
"""
from configs import novelty_ncl_contrastive_digits
from configs import novelty_rnvp_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  return novelty_rnvp_digits.for_mnist5k(
      novelty_ncl_contrastive_digits.get_config(arg), arg)
