"""RealNVP with a Gaussian NIF prior on digits (paper 4, Sec. 4.3): NIF-32.

The flow of configs/default.py ("rnvp" on digits: same transform, same
steps) with its N(0, I_64) prior replaced by the closed-form Gaussian NIF
N(b, A A^T + Sigma) with a k = 32 dimensional latent: A is the
nearest-neighbour up-sampling of a 4 x 4 x 2 latent image to the 8 x 8 x 1
z (Sec. 4.1), so A^T Sigma^-1 A is block diagonal. `nif{k}_digits.py` change
only k.

Measured in one run with the unit-prior flow, every config with the same
smaller flow (RealNVP with 16-channel couplers of one residual block, the
README's RNVP row) and 1,000 steps (16 min on 2 shared CPU cores):

  python -m train.compare --workdir_root DIR \
      --configs configs/rnvp_digits.py,configs/nif16_digits.py,configs/nif_digits.py,configs/nif48_digits.py \
      --set flow.hidden_channels=16 --set flow.num_res_blocks=1 \
      --set num_train_steps=1000

test bits/dim: unit prior 2.1231 (56,565 parameters); NIF k = 16 2.1264
(+0.15%), k = 32 2.1267 (+0.17%), k = 48 2.1529 (+1.4%), all within 2%
of it (paper 4, Table 2: "similar or slightly better"). Samples with
`noise_scale=0` lie on the flow's image of the 32-dimensional hyperplane;
the README's figure of s = 0 against s = 1 (columns share their latent):

  python -m nbflows.plotting --workdirs=DIR/nif_digits --noise_scales=0,1 \
      --out=docs/figures/nif_digits_samples.png
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
