"""One-class novelty detection with RealNVP on digits (paper 1, Table 4).

`python -m train.novelty --config configs/novelty_rnvp_digits.py --workdir
DIR [--classes 0,1,2]` trains one model per normal class on that class's
training digits and scores the whole test split by log p(x). The flow is
paper 1's CPU size (`configs.paper1.cpu_sized`), the same as NCL's, so the
three novelty configs differ only in the conditioning and the loss.

`for_novelty` holds the settings all six novelty configs share: test
neighbourhoods searched without the test label (`neighbours.same_class =
False`), only test bits/dim in each class's eval.json, no sample grid, and
a short run with early stopping on the class's validation examples (about
130 training digits per class: 400 steps is 200 epochs; validation every
25 steps, patience 4).

Expected (paper 1, Table 4, full MNIST): RNVP mean AUROC 0.641, below NCL
with contrastive training (0.801) and about equal to NCL without (0.621).
Measured on digits, classes 0 and 1, 100 steps (--config.num_train_steps=100
--config.optimizer.warmup_steps=10): mean AUROC 0.997 (RNVP), 0.99985
(NCL), 0.99991 (NCL + contrastive); these two digits are too easy to rank
the models.
"""
from configs import default
from configs import paper1


def for_novelty(config, arg=None):
  """Sets `config` (a model config) to the novelty-detection run."""
  config.neighbours.same_class = False
  config.eval.metrics = "bpd"
  config.num_sample_images = 0
  config.early_stopping_patience = 4
  if arg != "quick":
    config.num_train_steps = 400
    config.eval_every_steps = 25
    config.checkpoint_every_steps = 100
    config.log_every_steps = 25
    config.optimizer.warmup_steps = 20
  return config


def for_mnist5k(config, arg=None):
  """Moves a digits novelty config to mnist5k (the offline 5,000-image MNIST).

  About 360 training and 40 validation images per class; the whole test
  split is 1,000 images. 150 steps at most (about 27 epochs of one class),
  validation every 25 steps. Measured side by side (`python -m
  train.novelty --configs configs/novelty_rnvp_mnist5k.py,
  configs/novelty_ncl_contrastive_mnist5k.py --workdir DIR --classes
  0,1,...`), classes 0 and 1 (what 60 minutes on two shared CPU cores
  allowed; NCL with contrastive training ran 5-20 s per step): AUROC 0.197
  and 0.969, mean 0.583 (RNVP); 0.911 and 0.987, mean 0.949 (NCL +
  contrastive).
  """
  config.dataset = "mnist5k"
  if arg != "quick":
    config.num_train_steps = 150
  return config


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = default.get_config(arg)
  config.model = "rnvp"
  config.dataset = "digits"
  paper1.cpu_sized(config, arg)
  return for_novelty(config, arg)
