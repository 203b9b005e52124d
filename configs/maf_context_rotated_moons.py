"""MAF on rotated moons given each point's context c = (cos theta, sin theta).

configs/maf_rotated_moons.py with config.context.dim = 2: every MADE takes
c, unmasked, into its first hidden layer (Papamakarios et al. 2017, Sec.
3.4), so the flow models p(x | c), two moons at the angle c gives, where
the baseline models the marginal over all angles. The command that trains
both and the figures measured: README, "Conditioning on a context vector".
"""
from configs import maf_rotated_moons


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = maf_rotated_moons.get_config(arg)
  config.context.dim = 2
  return config
