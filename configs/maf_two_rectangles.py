"""MAF on two disjoint rectangles (paper 2, Fig. 1 and App. D.2): the baseline.

Ten autoregressive layers of MADEs with 4 hidden layers of 51 units (the
paper's 4 x 50 widened by one unit so that the baseline has at least as many
parameters as configs/lgf_maf_two_rectangles.py: 83,170 against 80,810), a
standard-normal prior, trained by maximum likelihood. The training settings
here (batch, steps, optimiser, no early stopping) are shared by every
2-D config, MAF and LGF-MAF alike, so the pairs compare like with like.

Expected: a test log-likelihood (eval.json `test_bpd` * -2 ln 2 nats) below
LGF-MAF's on the same data and steps, and a density that smears mass over
the gap between the rectangles (paper 2, Fig. 1, left).
"""
from configs import default


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = default.get_config(arg)
  with config.unlocked():
    config.model = "maf"
    config.dataset = "two_rectangles"
    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_train_steps = 16000         # ~300 epochs of 7,000 points (App. D.2)
    config.eval_every_steps = 2000
    config.checkpoint_every_steps = 2000
    config.early_stopping_patience = 0     # same number of steps for both
    config.num_sample_images = 1000        # points of the samples' scatter
    config.optimizer.learning_rate = 1e-3  # Adam's default (paper 2, Sec. 5)
    config.optimizer.weight_decay = 0.0    # "no weight decay"
    config.flow.num_layers = 10            # App. D.2, Fig. 1
    config.flow.mlp_hidden = (51,) * 4
    if arg == "quick":
      config.num_train_steps = 20
      config.eval_every_steps = 10
      config.checkpoint_every_steps = 10
      config.num_sample_images = 16
      config.flow.num_layers = 2
      config.flow.mlp_hidden = (8,)
  config.lock()
  return config
