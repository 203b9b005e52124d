"""Models: the `Model` facade, the flows and `build_model(config)`."""
from nbflows.models.base import Model, count_params
from nbflows.models.flow import Chain, FlowModel, MultiScale, Repeat
from nbflows.models.registry import BUILDERS, build_model
