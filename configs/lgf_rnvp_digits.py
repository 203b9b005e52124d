"""LGF-RealNVP on digits (paper 2, Sec. 5.2).

RealNVP's multi-scale architecture of configs/default.py with a mixing
variable u_l after every affine coupling, u_l one channel of z_l (eq. 6);
as in the paper the couplers are half as deep as the baseline's (one
residual block instead of two) to pay for the p(u | z), q(u | z) networks
(two 3x3 convolutions of 24 channels; 338,475 parameters against the
baseline's 390,181) and the (s, t) network (two of 8).
Trained on the single-sample ELBO in bits/dim; validated with 10
importance samples and tested with 1,000.

Expected: test bits/dim (eval.json `test_bpd`, from the importance-sampled
`test_log_likelihood`) below the RealNVP baseline's (configs/default.py) on
the same data and steps (paper 2, Table 2 ordering).
"""
from configs import default
from configs import lgf_maf_two_rectangles


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = default.get_config(arg)
  with config.unlocked():
    config.model = "lgf_rnvp"
    config.lgf = lgf_maf_two_rectangles.lgf_settings(arg)
    config.lgf.u_dim = 0                 # images: u is one channel of z
    if arg != "quick":
      config.flow.num_res_blocks = 1
      config.lgf.st_hidden = (8, 8)
      config.lgf.pq_hidden = (24, 24)
  config.lock()
  return config
