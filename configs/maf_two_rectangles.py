"""MAF on two disjoint rectangles (paper 2, Fig. 1 and App. D.2): the baseline.

Ten autoregressive layers of MADEs with 4 hidden layers of 51 units (the
paper's 4 x 50 widened by one unit so that the baseline has at least as many
parameters as configs/lgf_maf_two_rectangles.py: 83,170 against 80,810), a
standard-normal prior, trained by maximum likelihood. The training settings
here are shared by every 2-D config, MAF and LGF-MAF alike, so the pairs
compare like with like: Adam at a constant 1e-3 without weight decay (paper
2, Sec. 5: "default hyperparameters and no weight decay"), batches of 1,000
(the authors' code for these targets), 1,000 epochs of the 7,200 training
points (7,200 steps), no early stopping, and the checkpoint with the best
validation likelihood (evaluated every 20 epochs) tested.

Measured (one run of both configs, 17 min on 2 shared CPU cores with
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
which runs these small steps about 35% faster than XLA's default threads):

  python -m train.compare --workdir_root DIR \
      --configs configs/maf_two_rectangles.py,configs/lgf_maf_two_rectangles.py

test bits/dim 1.6383, i.e. a test log-likelihood of -2.2712 +- 0.0076 nats
per point (-test_bpd * 2 ln 2), below LGF-MAF's -2.2464 +- 0.0046 (true
density: -ln 9 = -2.1972); best validation -2.2639 at step 7056. Its
density bridges the gap between the rectangles (paper 2, Fig. 1, left;
docs/figures/two_rectangles_maf_vs_lgf.png, command in
configs/lgf_maf_two_rectangles.py).
"""
from configs import default


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = default.get_config(arg)
  with config.unlocked():
    config.model = "maf"
    config.dataset = "two_rectangles"
    config.batch_size = 1000
    config.eval_batch_size = 500
    config.num_train_steps = 7200          # 1,000 epochs of 7,200 points
    config.log_every_steps = 144
    config.eval_every_steps = 144          # every 20 epochs
    config.checkpoint_every_steps = 1440
    config.early_stopping_patience = 0     # same number of steps for both
    config.num_sample_images = 1000        # points of the samples' scatter
    config.optimizer.learning_rate = 1e-3  # Adam's default (paper 2, Sec. 5)
    config.optimizer.schedule = "constant"
    config.optimizer.warmup_steps = 0
    config.optimizer.weight_decay = 0.0    # "no weight decay"
    config.flow.num_layers = 10            # App. D.2, Fig. 1
    config.flow.mlp_hidden = (51,) * 4
    if arg == "quick":
      config.batch_size = 16
      config.log_every_steps = 5
      config.num_train_steps = 20
      config.eval_every_steps = 10
      config.checkpoint_every_steps = 10
      config.num_sample_images = 16
      config.flow.num_layers = 2
      config.flow.mlp_hidden = (8,)
  config.lock()
  return config
