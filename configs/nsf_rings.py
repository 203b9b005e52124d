"""Neural spline flow (autoregressive) on three concentric rings.

The MAF of configs/maf_rings.py with rational-quadratic spline transformers
(Durkan et al. 2019, Sec. 3.2: each MADE returns 3 * 8 + 1 spline
parameters per dimension): 10 layers of MADEs with 2 hidden layers of 64
units, 8 bins on [-4, 4] (the rings reach radius about 3.4, so the
splines cover the data and the tails are the identity); the training
settings of configs/maf_two_rectangles.py, which every 2-D config shares.

Measured on a short run, 720 steps (100 epochs, a tenth of the configs'
7,200) of both configs, one seed, on 2 CPU cores shared with other jobs
(load average 15-18; 4.4 min for this run, 4.8 for MAF):

  python -m train.compare --workdir_root DIR \
      --configs configs/maf_rings.py,configs/nsf_rings.py \
      --set num_train_steps=720

test bits/dim 2.0622 (a test log-likelihood of -2.859 nats per point,
-test_bpd * 2 ln 2; best validation at step 576) with 76,020 parameters,
against MAF's 2.3767 (-3.295 nats) with 160,080. The full 7,200 steps were
not run.
"""
from configs import maf_rings


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = maf_rings.get_config(arg)
  with config.unlocked():
    config.flow.transformer = "spline"
    config.flow.spline_bound = 4.0
    if arg != "quick":
      config.flow.num_layers = 10
      config.flow.mlp_hidden = (64, 64)
  config.lock()
  return config
