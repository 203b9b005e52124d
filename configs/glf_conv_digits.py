"""GLF (paper 5, eq. 5) on digits with the convolutional auto-encoder.

`configs/glf_digits.py` with paper 5's encoder and decoder (App. A, Table 2;
`nbflows.models.conv_autoencoder`) in place of the MLP: two 4x4, stride-2
convolutions (32 and 64 channels, the paper's 64 and 128 halved for 8x8
images, whose 2x2 bottleneck holds 256 features) and one dense layer of
300 units (the paper's 1024), mirrored by the decoder with transposed
convolutions; no batch normalisation (see the module's docstring).

Expected: at 8x8 the convolutions do not beat the MLP. Measured (1,000
steps, seeds 0 and 1, README "GLF with a convolutional auto-encoder"): test
reconstruction 0.392 and 0.411 against glf_digits' 0.376 and 0.378,
Frechet distance 36.0 and 39.4 against 30.4 and 29.6, at a quarter to a
seventh of its step rate on the CPU.
"""
from configs import glf_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = glf_digits.get_config(arg)
  config.glf.architecture = "conv"
  config.glf.conv_features = (32, 64)
  config.glf.hidden = (300,)
  if arg == "quick":
    config.glf.conv_features = (4, 8)
    config.glf.hidden = (32,)
  return config
