"""MAF on rotated moons without their context: the unconditional baseline.

The target "rotated_moons" (`nbflows.data.toy2d`) is two moons turned by
an angle theta ~ U[0, 2 pi) that each point's context c = (cos theta,
sin theta) gives. This MAF ignores c, so it models the marginal over
every rotation, a rotationally symmetric blur of the moons;
configs/maf_context_rotated_moons.py is the same MAF given c
(`condition_kind="context"`). Both take the 2-D settings of
configs/maf_two_rectangles.py (ten MADEs of 4 x 51 units, Adam at a
constant 1e-3, batches of 1,000, no early stopping) for 200 epochs of the
7,200 training points, so the gap in test log-likelihood is what the
context is worth. The command and the figures measured: README,
"Conditioning on a context vector".
"""
from configs import maf_two_rectangles


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = maf_two_rectangles.get_config(arg)
  config.dataset = "rotated_moons"
  if arg != "quick":
    config.num_train_steps = 1440          # 200 epochs of 7,200 points
    config.checkpoint_every_steps = 720
  return config
