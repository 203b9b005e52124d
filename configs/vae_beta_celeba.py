"""beta-VAE (beta = 1.5) on celeb_a: the features of paper 1's CelebA neighbours.

Paper 1, App. B.2 searches CelebA's neighbours on the encoder means of a
beta-VAE (Higgins et al., 2017) with beta = 1.5. This is `configs/vae_digits.py`
(gated MLP encoder and decoder, Bernoulli decoder on dynamically binarised
images) on 64 x 64 x 3 CelebA with the KL term weighted by 1.5 in the
training loss. Use the trained run as the index's features:

  python -m train.main --config configs/vae_beta_celeba.py \
      --workdir workdirs/vae_beta_celeba --config.data_dir=/data/tfds
  python -m train.main --config configs/ncl_celeba.py ... \
      --config.neighbours.features=workdirs/vae_beta_celeba

Expected: no figure in the paper (it reports none for the VAE itself);
eval.json records `test_elbo` and `test_iwae`. The paper observes that
neighbours on mu(x) are more consistent than on PCA coefficients.
"""
from configs import vae_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = vae_digits.get_config(arg)
  with config.unlocked():
    config.dataset = "celeb_a"
    config.vae.beta = 1.5                 # paper 1, App. B.2
    config.vae.kl_warmup_steps = 0        # paper 1 anneals nothing
    config.vae.latent_dim = 32            # Higgins et al.'s CelebA latents
    config.vae.iwae_samples = 100
    if arg != "quick":
      config.num_train_steps = 50_000
      config.eval_every_steps = 2_000
      config.checkpoint_every_steps = 2_000
  config.lock()
  return config
