"""VAE with a Gaussian prior on dynamically binarised mnist5k.

`configs/vae_digits.py` at MNIST size: 784 pixels and paper 3's 40-D latent
space. See that file for what the run should show.
"""
from configs import vae_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = vae_digits.get_config(arg)
  with config.unlocked():
    config.dataset = "mnist5k"
    config.vae.latent_dim = 40            # paper 3, App. D.2
    config.vae.num_pseudo_inputs = 500    # Tomczak & Welling's MNIST value
    config.vae.iwae_samples = 200
    if arg != "quick":
      # 100 epochs of KL warm-up (paper 3, Sec. 5) of the 3,600 training
      # images at batch 100, then as many at the full ELBO.
      config.vae.kl_warmup_steps = 3600
      config.num_train_steps = 7200
    if arg == "quick":
      config.vae.num_pseudo_inputs = 8
      config.vae.iwae_samples = 16
  config.lock()
  return config
