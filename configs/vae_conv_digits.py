"""VAE (Gaussian prior) on binarised digits with the convolutional networks.

`configs/vae_digits.py` with paper 5's encoder and decoder (App. A, Table 2;
`nbflows.models.conv_autoencoder`): two 4x4, stride-2 convolutions (32 and
64 channels, halved from the paper's for 8x8 images) and one gated dense
layer of 300 units, mirrored by the decoder with transposed convolutions.
The heads are the MLP's: mean and paper 3's hardtanh log variance, and
Bernoulli logits, so the ELBO and the IWAE bound are computed as for
vae_digits. The other VAE models take the same networks with
`--config.model=vampprior` or `evae`.

Expected: a test IWAE bound (eval.json `test_iwae`) of the order of
vae_digits'; not measured in this project yet.
"""
from configs import vae_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = vae_digits.get_config(arg)
  config.vae.architecture = "conv"
  config.vae.conv_features = (32, 64)
  config.vae.hidden = (300,)
  if arg == "quick":
    config.vae.conv_features = (4, 8)
    config.vae.hidden = (32,)
  return config
