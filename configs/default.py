"""Default configuration: every other config imports and overrides this one.

Fields every config has (the conventions `train.main` and `train.evaluate`
rely on): model, dataset, batch_size, num_train_steps, seed,
eval_every_steps, checkpoint_every_steps. Override any from the command line,
e.g. ``--config.num_train_steps=200``. The config is locked, so a misspelt
field is an error rather than a silently ignored setting.

``get_config("quick")`` shrinks the run to a smoke test of a few steps.
"""
import ml_collections


def get_config(arg=None):
  """Returns the default config; `arg="quick"` gives a smoke-test version."""
  config = ml_collections.ConfigDict()
  config.model = "rnvp"
  config.dataset = "digits"
  config.data_dir = ""          # TFDS data_dir and neighbour-index cache; "" = default
  config.batch_size = 64
  config.eval_batch_size = 256
  config.num_train_steps = 3000
  config.seed = 0
  config.log_every_steps = 50
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 2
  config.early_stopping_patience = 4  # evaluations without validation gain
  config.num_sample_images = 64
  # Added by the trainer (train/loop/trainer.py): a step whose loss or
  # gradient is NaN/inf is skipped; this many skipped steps in a row stop the
  # run.
  config.max_consecutive_nonfinite_steps = 10

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.optimizer.grad_clip_norm = 100.0
  config.optimizer.weight_decay = 5e-5
  config.optimizer.schedule = "cosine"  # "cosine" or "constant"

  config.data = ml_collections.ConfigDict()
  config.data.validation_fraction = 0.1  # of the training split, offline sets
  config.data.test_fraction = 0.2        # offline sets without a test split

  config.flow = ml_collections.ConfigDict()
  config.flow.num_scales = 2           # multi-scale levels (RealNVP)
  config.flow.couplings_per_scale = 3  # checkerboard couplings per level
  config.flow.hidden_channels = 32
  config.flow.num_res_blocks = 2
  config.flow.logit_alpha = 0.05       # RealNVP's alpha for the logit transform
  config.flow.mlp_hidden = (256, 256)  # vector flows (MAF, MLP couplings)
  config.flow.num_layers = 8           # vector flows
  # The elementwise map of the couplings (rnvp, rnvp_mlp) and MAF layers:
  # "affine" or "spline" (rational-quadratic, Durkan et al. 2019) with
  # num_bins bins on [-spline_bound, spline_bound], the identity outside.
  # 3.0 covers the logit-preprocessed data, |logit| <= log((1 - alpha) /
  # alpha) = 2.94 for logit_alpha = 0.05, and standardised vectors.
  config.flow.transformer = "affine"
  config.flow.num_bins = 8
  config.flow.spline_bound = 3.0

  config.neighbours = ml_collections.ConfigDict()
  config.neighbours.k = 5
  config.neighbours.same_class = True
  config.neighbours.exclude_self = True
  config.neighbours.pca_variance = 0.99
  # "pca", or the workdir of a VAE trained by train.main: neighbours on its
  # encoder means (paper 1, App. B.2 for CelebA; configs/vae_beta_celeba.py).
  config.neighbours.features = "pca"
  config.neighbours.kind = "knn"        # "knn" or "kmeans" (App. B.5)
  # "exact", or "approx": jax.lax.approx_max_k, for TPUs (exact on CPU/GPU).
  config.neighbours.search = "exact"
  # "jax", or "faiss": faiss IndexFlatL2 (on its GPUs if it sees any), the
  # same neighbours; needs `pip install faiss-cpu` or faiss-gpu.
  config.neighbours.knn_backend = "jax"
  config.neighbours.num_clusters = 100
  config.neighbours.num_prototypes = 5
  # >0: a random subset of the k at train time; only for NCL-pool and
  # NCT-pool (NCL and NCT concatenate all k in order of distance).
  config.neighbours.train_subset_k = 0

  # A context vector c [B, C] for the flows to condition on (rnvp,
  # rnvp_mlp, glow, maf; condition_kind "context", batch["context"]); C
  # must be the dataset's context width (rotated_moons: 2). 0 = none.
  # ncl and nct take it with their neighbours: cond {"neighbours": N,
  # "context": c} (no image dataset has contexts: the caller's).
  config.context = ml_collections.ConfigDict()
  config.context.dim = 0

  config.sharding = ml_collections.ConfigDict()
  config.sharding.fsdp = False  # shard large parameters/optimizer state too

  config.contrastive = ml_collections.ConfigDict()
  config.contrastive.enabled = False
  config.contrastive.margin_bpd = 0.5   # paper 1, Sec. 3.2
  config.contrastive.weight = 1.0

  config.eval = ml_collections.ConfigDict()
  config.eval.marginal_neighbourhoods = 100  # M of App. B.3
  config.eval.exact_marginal = False  # eq. 4 over all N neighbourhoods (NCT)
  # e.g. "bpd,marginal_bpd,fd,prd" (names: train.evaluation.
  # metric_names.METRICS); "" = the model's default_metrics
  config.eval.metrics = ""
  config.eval.num_samples = 2000        # samples for "fd" and "prd"
  config.eval.feature_net_steps = 2000  # the offline classifier's training
  config.eval.prd_runs = 10             # k-means clusterings PRD averages

  if arg == "quick":
    config.num_train_steps = 20
    config.batch_size = 16
    config.eval_batch_size = 64
    config.log_every_steps = 5
    config.eval_every_steps = 10
    config.checkpoint_every_steps = 10
    config.num_sample_images = 16
    config.optimizer.warmup_steps = 5  # trainer: warm-up must end before the run
    config.flow.hidden_channels = 8
    config.flow.num_res_blocks = 1
    config.flow.mlp_hidden = (32, 32)
    config.eval.marginal_neighbourhoods = 8
    config.eval.num_samples = 64
    config.eval.feature_net_steps = 20
    config.eval.prd_runs = 1
  elif arg not in (None, ""):
    raise ValueError(f"config argument {arg!r}; expected 'quick' or nothing")
  config.lock()
  return config
