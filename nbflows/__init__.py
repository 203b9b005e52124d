"""nbflows: normalizing flows conditioned on neighbourhoods of training examples.

  >>> import nbflows
  >>> from configs import default
  >>> model = nbflows.build_model(default.get_config("quick"))
"""
from nbflows.bijectors import AffineCoupling, ActNorm, Bijector, Conv1x1, ConvCoupler, Logit, MADE, MaskedAutoregressive, MLPCoupler, Rescale, Squeeze, as_functions
from nbflows.models import BijectiveModel, DensityModel, FlowModel, TrainableModel, build_model, count_params, offers, require
from nbflows.marginal import Neighbourhoods, marginal_bits_per_dim, marginal_log_prob
from nbflows.sampling import interpolate_neighbourhoods, sample_like, sample_unconditional
from nbflows.checkpoint_loading import load_checkpoint
from nbflows.compilation_cache import enable_compilation_cache
