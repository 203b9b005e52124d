"""VAE with a standard Gaussian prior on dynamically binarised digits.

The baseline of paper 3 (Table 3, "VAE w/ Gaussian prior"), with the
network family every model of the Exemplar-VAE comparison shares
(`config.vae`: gated MLP encoder and decoder, Bernoulli decoder). The other
VAE configs (vampprior, evae, evae_noloo) import this one and change only
their prior, so their IWAE bounds compare like with like.

Expected: a test IWAE bound (eval.json `test_iwae`, nats per image,
`iwae_samples` importance samples) below the Exemplar VAE's on the same data
and steps (paper 3, Table 3 ordering).
"""
import ml_collections

from configs import default


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = default.get_config(arg)
  with config.unlocked():
    config.model = "vae"
    config.dataset = "digits"
    config.batch_size = 100               # paper 3, App. D.2
    config.optimizer.learning_rate = 5e-4  # paper 3, Sec. 5
    config.optimizer.weight_decay = 0.0
    config.vae = ml_collections.ConfigDict()
    config.vae.latent_dim = 16            # paper 3 uses 40 for 784-pixel MNIST
    config.vae.hidden = (300, 300)        # paper 3, App. D.1 "VAE"
    config.vae.activation = "gated"
    # "mlp" (the above) or "conv": paper 5's convolutional encoder and
    # decoder (App. A, nbflows.models.conv_autoencoder), images only; the
    # stride-2 convolutions' channels, then `hidden` dense layers.
    config.vae.architecture = "mlp"
    config.vae.conv_features = (64, 128)  # paper 5, App. A
    config.vae.num_pseudo_inputs = 100    # VampPrior only
    config.vae.iwae_samples = 1000        # paper 3 uses 5000
    config.vae.iwae_chunk = 100
    config.vae.beta = 1.0                 # KL weight of the training loss
    # Linear KL warm-up (paper 3, Sec. 5: 100 epochs): 100 x 1,294 training
    # digits / batch 100; must be shorter than num_train_steps.
    config.vae.kl_warmup_steps = 1300
    config.vae.exemplar = ml_collections.ConfigDict()
    config.vae.exemplar.leave_one_out = True   # eq. 4
    config.vae.exemplar.subsample_ratio = 0.5  # M / N of eq. 5 (Table 2)
    # k of eq. 15: > 0 trains on the kNN bound (Alg. 1, e.g. 10 as in
    # paper 3, App. D.2); 0, the exact prior (fine for a few thousand).
    config.vae.exemplar.knn = 0
    if arg == "quick":
      config.batch_size = 16
      config.vae.hidden = (32, 32)
      config.vae.num_pseudo_inputs = 8
      config.vae.iwae_samples = 16
      config.vae.iwae_chunk = 8
      config.vae.kl_warmup_steps = 2
  config.lock()
  return config
