"""Bijectors: pure `(params, x, cond) -> (y, logdet)` layers built on distrax."""
from nbflows.bijectors.base import Bijector, as_functions, check_cond, check_event, check_finite
from nbflows.bijectors.coupling import AffineCoupling, make_mask
from nbflows.bijectors.couplers import ConvCoupler, MLPCoupler, concat_condition
