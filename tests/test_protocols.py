"""Each registered model offers exactly the capabilities it computes.

The protocols of `nbflows.models.protocols` are checked structurally, so a
model that lacks a capability must not have its methods at all (no method
that only raises NotImplementedError).
"""
from __future__ import annotations

import inspect

import pytest

from configs import ccrnvp_digits
from configs import default
from configs import evae_digits
from configs import glf_digits
from configs import glow_digits
from configs import kde_digits
from configs import lgf_maf_two_rectangles
from configs import lgf_rnvp_digits
from configs import maf_two_rectangles
from configs import ncl_digits
from configs import nct_digits
from configs import nif_digits
from configs import vae_digits
from configs import vae_flowprior_digits
from configs import vampprior_digits
from nbflows import models
from nbflows.models import base
from nbflows.models import protocols
from nbflows.models import registry

FLOW = ("Trainable", "Density", "Bijective")
VAE = ("Trainable", "IWAEBound", "GaussianEncoder")
# model name -> (its quick config, the protocols it offers)
EXPECTED = {
    "rnvp": (default, FLOW),
    "rnvp_mlp": (maf_two_rectangles, FLOW),
    "glow": (glow_digits, FLOW),
    "maf": (maf_two_rectangles, FLOW),
    "ccrnvp": (ccrnvp_digits, FLOW),
    "nct": (nct_digits, FLOW),
    "ncl": (ncl_digits, FLOW + ("LatentGaussians",)),
    "nif_flow": (nif_digits, FLOW + ("NoiseScaleSampler",)),
    "lgf_maf": (lgf_maf_two_rectangles,
                FLOW + ("TestMetrics", "ImportanceLikelihood")),
    "lgf_rnvp": (lgf_rnvp_digits,
                 FLOW + ("TestMetrics", "ImportanceLikelihood")),
    "kde": (kde_digits, ("Trainable", "Density", "Fitted")),
    "vae": (vae_digits, VAE),
    "vampprior": (vampprior_digits, VAE),
    "evae": (evae_digits, VAE + ("ExemplarSampler",)),
    "glf": (glf_digits, ("Trainable",)),
    "vae_flowprior": (vae_flowprior_digits, ("Trainable",)),
}
CAPABILITIES = (
    protocols.Trainable, protocols.Density, protocols.Bijective,
    protocols.Fitted, protocols.TestMetrics, protocols.ImportanceLikelihood,
    protocols.IWAEBound, protocols.GaussianEncoder, protocols.ExemplarSampler,
    protocols.NoiseScaleSampler, protocols.LatentGaussians)


def build(name):
  config_module, _ = EXPECTED[name]
  config = config_module.get_config("quick")
  config.model = name
  return registry.build_model(config)


def test_every_registered_model_is_listed():
  assert sorted(EXPECTED) == sorted(registry.BUILDERS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_model_offers_exactly_its_capabilities(name):
  model = build(name)
  offered = {c.__name__ for c in CAPABILITIES if protocols.offers(model, c)}
  assert offered == set(EXPECTED[name][1])
  assert model.name == name


def model_classes():
  classes = set()
  for module_name in dir(models):
    module = getattr(models, module_name)
    if inspect.ismodule(module):
      classes.update(
          cls for _, cls in inspect.getmembers(module, inspect.isclass)
          if issubclass(cls, base.TrainableModel))
  return sorted(classes, key=lambda cls: cls.__qualname__)


def test_no_model_class_defines_a_method_that_only_raises():
  classes = model_classes()
  assert {"TrainableModel", "DensityModel", "BijectiveModel", "VAEModel",
          "GLFModel", "KernelDensityModel", "NCLModel"} <= {
              cls.__name__ for cls in classes}
  for cls in classes:
    for name, member in vars(cls).items():
      if inspect.isfunction(member):
        assert "NotImplementedError" not in inspect.getsource(member), (
            f"{cls.__name__}.{name}")


def test_a_missing_capability_is_absent_not_raising():
  glf_model, kde_model = build("glf"), build("kde")
  assert not hasattr(glf_model, "log_prob")
  assert not hasattr(kde_model, "forward")
  assert not hasattr(kde_model, "inverse")


def test_require_names_the_model_the_capability_and_the_purpose():
  model = build("glf")
  protocols.require(model, protocols.Trainable, "training")  # offered: no-op
  with pytest.raises(TypeError, match=(
      r"^model 'glf' \(GLFModel\) does not offer Density \(log p\(x \| "
      r"cond\) in closed form\), needed for the marginal bits/dim$")):
    protocols.require(model, protocols.Density, "the marginal bits/dim")


def test_default_metrics_follow_the_model():
  assert build("vae").default_metrics(images=True) == ("iwae", "fd")
  assert build("glf").default_metrics(images=False) == ()
  assert build("lgf_maf").default_metrics(images=False) == (
      "log_likelihood",)
  assert build("kde").default_metrics(images=True) == (
      "bpd", "marginal_bpd", "fd", "prd")
  assert build("glf").selection_metric == "reconstruction"
  assert build("vae_flowprior").selection_metric == "loss"
  assert build("ncl").selection_metric == "bpd"
