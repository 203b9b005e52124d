"""LGF-MAF on two disjoint rectangles (paper 2, Fig. 1 and App. D.2).

Five MAF layers with MADEs of 2 hidden layers of 10 units, each followed by
G(z; u) = exp(s(u)) * g(z) + t(u) with a scalar u (eq. 6); the (s, t) net
has 2 hidden layers of 10 units and the p(u | z), q(u | z) nets 4 of 50
(80,810 parameters, as in App. D.2, against the MAF baseline's 83,170).
Trained on the single-sample ELBO (Alg. 1) with the training settings of
configs/maf_two_rectangles.py (batch 1,000, Adam at a constant 1e-3, 7,200
steps); validated with 10 importance samples and tested with 1,000 (paper
2, Sec. 5).

`lgf_settings` is the `config.lgf` section every LGF config starts from.

Measured in one run with the MAF baseline (17 min on 2 shared CPU cores with
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
which runs these small steps about 35% faster than XLA's default threads):

  python -m train.compare --workdir_root DIR \
      --configs configs/maf_two_rectangles.py,configs/lgf_maf_two_rectangles.py

test log-likelihood -2.2464 +- 0.0046 nats per point (eval.json
`test_log_likelihood` and its standard error over the 2,000 test points,
1,000 importance samples; test_bpd 1.6204) against the MAF's -2.2712 +-
0.0076 (true density -ln 9 = -2.1972). Best validation (10 samples) -2.2438
at step 6912; from step 2,880 on it is above the MAF's best validation
(exact, -2.2639). Its density leaves the gap between the rectangles
(almost) empty, the MAF's bridges it (paper 2, Fig. 1). The standard
errors come from `python -m train.evaluate --config CONFIG --workdir
DIR/<config name> --metrics log_likelihood` on each run (1 min), the
README's figure of both densities (70 s) from the same DIR:

  python -m nbflows.plotting --titles=MAF,LGF-MAF --dpi=64 --num_points=1000 \
      --workdirs=DIR/maf_two_rectangles,DIR/lgf_maf_two_rectangles \
      --out=docs/figures/two_rectangles_maf_vs_lgf.png
"""
import ml_collections

from configs import maf_two_rectangles


def lgf_settings(arg=None) -> ml_collections.ConfigDict:
  """The `config.lgf` section (paper 2, App. D.1-D.2)."""
  lgf = ml_collections.ConfigDict()
  lgf.u_dim = 1                 # du; 0 means a quarter of the data dimension
  lgf.st_hidden = (10, 10)      # the (s, t) network of eq. 6
  lgf.pq_hidden = (50,) * 4     # the p(u | z) and q(u | z) networks
  lgf.eval_samples = 10         # importance samples at validation
  lgf.test_samples = 1000       # and at test
  lgf.sample_chunk = 100        # importance samples evaluated at once
  if arg == "quick":
    lgf.st_hidden = (4,)
    lgf.pq_hidden = (8,)
    lgf.eval_samples = 2
    lgf.test_samples = 4
    lgf.sample_chunk = 2
  return lgf


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = maf_two_rectangles.get_config(arg)
  with config.unlocked():
    config.model = "lgf_maf"
    config.flow.num_layers = 5
    config.flow.mlp_hidden = (10, 10)
    config.lgf = lgf_settings(arg)
    if arg == "quick":
      config.flow.num_layers = 2
      config.flow.mlp_hidden = (8,)
  config.lock()
  return config
