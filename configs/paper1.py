"""Paper 1's settings for each TFDS dataset, shared by its model configs.

`for_dataset(config, name, arg)` turns a digits config of NCL, NCT or
CC-RNVP into the paper's run on a TFDS dataset:
  * neighbours: k = 5, k = 10 for CIFAR-10 (App. B.2); the k-means sizes of
    App. B.5 (100 / 500 / 1000 clusters, 5 or 10 prototypes) for runs with
    --config.neighbours.kind=kmeans. CelebA's neighbours come from PCA by
    default; the paper's come from a beta-VAE's encoder means: train
    configs/vae_beta_celeba.py into VAE_DIR, then pass
    --config.neighbours.features=VAE_DIR.
  * the flow of RealNVP (Dinh et al. 2016, Sec. 4.1): scales down to 4 x 4;
    4 residual blocks of 32 channels for 32 x 32 images, 2 for 64 x 64
    (CelebA, cropped to 148 x 148 and resized to 64 x 64 by the data
    source), 8 blocks of 64 channels with one squeeze for CIFAR-10; MNIST
    and Fashion-MNIST (28 x 28, not in RealNVP) get the 32 x 32 setting.
  * batch 64, Adam 1e-3, L2 5e-5 (configs/default.py already), long runs
    with early stopping on validation bits/dim (paper 1, Sec. 3).
`arg="quick"` keeps the quick config's tiny flow and only sets the dataset.

`cpu_sized(config, arg)` is the smaller flow of the digits and mnist5k
configs, sized so that NCL on digits trains in minutes on two CPU cores.
"""
import ml_collections

# name: (k, num_scales, num_res_blocks, hidden_channels, clusters, prototypes)
SETTINGS = {
    "mnist": (5, 3, 4, 32, 100, 5),
    "fashion_mnist": (5, 3, 4, 32, 100, 5),
    "svhn_cropped": (5, 4, 4, 32, 500, 5),
    "cifar10": (10, 2, 8, 64, 1000, 10),
    "celeb_a": (5, 5, 2, 32, 1000, 5),
}


def for_dataset(config: ml_collections.ConfigDict, name: str,
                arg=None) -> ml_collections.ConfigDict:
  """Sets `config` (locked) to paper 1's settings for dataset `name`."""
  if name not in SETTINGS:
    raise ValueError(f"dataset {name!r}; expected one of {sorted(SETTINGS)}")
  k, scales, blocks, hidden, clusters, prototypes = SETTINGS[name]
  config.dataset = name
  config.neighbours.k = k
  config.neighbours.num_clusters = clusters
  config.neighbours.num_prototypes = prototypes
  if arg != "quick":
    config.flow.num_scales = scales
    config.flow.num_res_blocks = blocks
    config.flow.hidden_channels = hidden
    config.num_train_steps = 100_000
    config.eval_every_steps = 2_000
    config.checkpoint_every_steps = 2_000
    config.optimizer.warmup_steps = 500
  return config


def cpu_sized(config: ml_collections.ConfigDict,
              arg=None) -> ml_collections.ConfigDict:
  """Flow, run length and metrics of the paper-1 configs on digits and mnist5k.

  RealNVP with 16-channel couplers of one residual block (56,565 parameters
  on digits) and 1,000 steps. NCL runs its flow on the k neighbours too, so
  it costs about k + 1 times RNVP per step; this keeps the digits run
  within minutes. Compare RNVP at the same size (`train.compare --set
  flow.hidden_channels=16 --set flow.num_res_blocks=1`).

  The final report holds conditional and marginal bits/dim (paper 1, Table
  3 and B.1); `train.report` adds the Frechet distance and PRD, or ask for
  them with `python -m train.evaluate --metrics bpd,marginal_bpd,fd,prd`
  (they train the offline feature classifier once and draw 2,000 samples).
  """
  config.eval.metrics = "bpd,marginal_bpd"
  if arg != "quick":
    config.flow.hidden_channels = 16
    config.flow.num_res_blocks = 1
    config.num_train_steps = 1_000
  return config
