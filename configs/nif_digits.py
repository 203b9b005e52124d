"""RealNVP with a Gaussian NIF prior on digits (paper 4, Sec. 4.3): NIF-32.

The flow of configs/default.py ("rnvp" on digits: same transform, same
steps) with its N(0, I_64) prior replaced by the closed-form Gaussian NIF
N(b, A A^T + Sigma) with a k = 32 dimensional latent: A is the
nearest-neighbour up-sampling of a 4 x 4 x 2 latent image to the 8 x 8 x 1
z (Sec. 4.1), so A^T Sigma^-1 A is block diagonal. `nif{k}_digits.py` change
only k.

Expected: test bits/dim (eval.json `test_bpd`) within 2% of the unit-prior
flow's on the same data and steps (paper 4, Table 2: "similar or slightly
better"); samples with `noise_scale=0` lie on the flow's image of the
32-dimensional hyperplane.
"""
import ml_collections

from configs import default


def get_config(arg=None, latent_size: int = 32):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = default.get_config(arg)
  with config.unlocked():
    config.model = "nif_flow"
    config.nif = ml_collections.ConfigDict()
    config.nif.base_model = "rnvp"        # the flow whose prior is replaced
    config.nif.latent_size = latent_size  # k < d = 64
    config.nif.upsample_factor = 2        # 0: a dense A instead (Sec. 4)
  config.lock()
  return config
