"""Masked autoregressive flow on the 8x8 digits as 64-dimensional vectors.

8 MAF layers (config.flow.num_layers) with alternating forward / reversed
orders, MADEs with two hidden layers of 256 (config.flow.mlp_hidden), after
the same rescale + logit preprocessing as the image flows, so its bits/dim
compare directly with configs/rnvp_digits.py.

Expected: validation bits/dim about 2.37 at its best (step 500), then it
overfits (2.61 at step 1500); the early-stopped result is about 2.4
bits/dim, worse than RealNVP's 2.1, as the flat MAF ignores the image's
spatial structure. Measured with a plain AdamW loop using this config's
optimiser settings.

  python -m train.main --config configs/maf_digits.py --workdir /tmp/maf
"""
from configs import default


def get_config(arg=None):
  """Returns the MAF-on-digits config; `arg="quick"` for a smoke test."""
  config = default.get_config(arg)
  config.model = "maf"
  config.dataset = "digits"
  return config
