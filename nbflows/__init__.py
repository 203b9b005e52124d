"""nbflows: normalizing flows conditioned on neighbourhoods of training examples.

  >>> import nbflows
  >>> from configs import default
  >>> model = nbflows.build_model(default.get_config("quick"))

The public names below, and the subpackages (`nbflows.models`, ...), are
imported on first use (PEP 562 `__getattr__`), so `import nbflows` is quick.
Nothing in the library imports TensorFlow except the data pipeline's loaders
(`nbflows.data.sources`), when they run: distrax is imported with TensorFlow
hidden (`nbflows.without_tensorflow`), so evaluating a model does not start it.
"""
import importlib
import importlib.util
from typing import Any, List

# Public name -> the module that defines it.
_PUBLIC = {
    **dict.fromkeys(
        ("AffineCoupling", "ActNorm", "Bijector", "Conv1x1", "ConvCoupler",
         "Logit", "MADE", "MaskedAutoregressive", "MLPCoupler", "Rescale",
         "Squeeze", "as_functions"), "nbflows.bijectors"),
    **dict.fromkeys(
        ("BijectiveModel", "DensityModel", "FlowModel", "TrainableModel",
         "build_model", "count_params", "offers", "require"),
        "nbflows.models"),
    **dict.fromkeys(
        ("Neighbourhoods", "marginal_bits_per_dim", "marginal_log_prob"),
        "nbflows.marginal"),
    **dict.fromkeys(
        ("interpolate_neighbourhoods", "sample_like", "sample_unconditional"),
        "nbflows.sampling"),
    "load_checkpoint": "nbflows.checkpoint_loading",
    "enable_compilation_cache": "nbflows.compilation_cache",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
  """Imports a public name or a subpackage the first time it is used."""
  if name in _PUBLIC:
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
  elif not name.startswith("_") and importlib.util.find_spec(
      f"{__name__}.{name}") is not None:
    value = importlib.import_module(f"{__name__}.{name}")
  else:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}; "
                         f"public names: {', '.join(__all__)}")
  globals()[name] = value
  return value


def __dir__() -> List[str]:
  return sorted(set(globals()) | set(_PUBLIC))
