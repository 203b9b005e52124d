"""Models: the `Model` facade, the flows and `build_model(config)`."""
from nbflows.models.base import Model, count_params
from nbflows.models.flow import FlowModel
from nbflows.models.registry import BUILDERS, build_model
