"""Models: the model classes, their capabilities, the flows, `build_model`."""
from nbflows.models.base import BijectiveModel, DensityModel, TrainableModel, count_params
from nbflows.models.flow import FlowModel
from nbflows.models.protocols import offers, require
from nbflows.models.registry import BUILDERS, build_model
