"""Bijectors: pure `(params, x, cond) -> (y, logdet)` layers built on distrax."""
from nbflows import without_tensorflow

without_tensorflow.import_module("distrax")  # before the modules that use it

from nbflows.bijectors.base import Bijector, as_functions, check_cond, check_event, check_finite
from nbflows.bijectors.coupling import AffineCoupling, make_mask
from nbflows.bijectors.couplers import ConvCoupler, MLPCoupler, concat_condition
from nbflows.bijectors.preprocessing import Logit, Rescale, uniform_dequantise
from nbflows.bijectors.squeeze import Squeeze, squeeze, unsqueeze
from nbflows.bijectors.actnorm import ActNorm
from nbflows.bijectors.conv1x1 import Conv1x1
from nbflows.bijectors.made import MADE, MaskedAutoregressive
from nbflows.bijectors.combinators import Chain, Flattened, Repeat, alternating
from nbflows.bijectors.multiscale import MultiScale, max_num_scales
from nbflows.bijectors.permutation import Permutation
from nbflows.bijectors.context import ContextConditioned, check_context
from nbflows.bijectors.spline_coupling import RationalQuadraticSplineCoupling
