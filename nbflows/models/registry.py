"""`build_model(config)`: the model named by `config.model`, ready to train.

`BUILDERS` maps each model name to a function `config -> model` (a
`base.TrainableModel` offering the capabilities of
`nbflows.models.protocols` it computes); a new model adds one line here.
Builders read the dataset's shape and number of levels
from `nbflows.data.sources.dataset_info(config.dataset)`, so no data are
loaded to build a model.
"""
from __future__ import annotations

from typing import Callable, Dict

import ml_collections

from nbflows import config_fields
from nbflows.models import base
from nbflows.models import ccrnvp
from nbflows.models import exemplar_vae
from nbflows.models import flow_transformer
from nbflows.models import glf
from nbflows.models import glow
from nbflows.models import kde
from nbflows.models import lgf
from nbflows.models import maf
from nbflows.models import ncl
from nbflows.models import nct
from nbflows.models import nif_flow
from nbflows.models import realnvp
from nbflows.models import vae

Builder = Callable[[ml_collections.ConfigDict], base.TrainableModel]
# The models whose builders read config.context.dim (`flow.flow_model`).
CONTEXT_MODELS = ("rnvp", "rnvp_mlp", "glow", "maf")
# ... and the neighbourhood models, which take it with their neighbours
# (cond {"neighbours": N, "context": c}; `ncl.NeighbourhoodModel`).
CONTEXT_MODELS += ("ncl", "nct")

BUILDERS: Dict[str, Builder] = {
    "rnvp": realnvp.build_rnvp,
    "rnvp_mlp": realnvp.build_rnvp_mlp,
    "glow": glow.build_glow,
    "maf": maf.build_maf,
    "vae": vae.build_vae,
    "vampprior": vae.build_vampprior,
    "evae": exemplar_vae.build_evae,   # loads the training split: its exemplars
    "glf": glf.build_glf,
    "vae_flowprior": glf.build_vae_flowprior,
    "ncl": ncl.build_ncl,
    "nct": nct.build_nct,
    "ccrnvp": ccrnvp.build_ccrnvp,
    "kde": kde.build_kde,
    "lgf_maf": lgf.build_lgf_maf,
    "lgf_rnvp": lgf.build_lgf_rnvp,
    "nif_flow": nif_flow.build_nif_flow,
}


def build_model(config: ml_collections.ConfigDict) -> base.TrainableModel:
  """Builds the model named by `config.model` for `config.dataset`.

  Args:
    config: a config from `configs/` (model, dataset and the model's
      section, e.g. `config.flow`).

  Returns:
    The model (`protocols.offers` says what it offers); call
    `model.init(key, batch)` for its parameters.

  Raises:
    ConfigError: (a ValueError) if `config.model` is unknown (the message lists the known
      names), the dataset does not suit the model, or
      `config.flow.transformer` is set for a model that does not read it.

  Example:
    >>> from configs import default
    >>> model = build_model(default.get_config("quick"))
    >>> model.name, model.event_shape
    ('rnvp', (8, 8, 1))
  """
  if config.model not in BUILDERS:
    raise config_fields.ConfigError(
        f"config.model: unknown model {config.model!r}; expected one of "
        f"{sorted(BUILDERS)}")
  flow_transformer.check_model(config)
  context = config.get("context")
  if context is not None and context.dim and config.model not in CONTEXT_MODELS:
    raise config_fields.ConfigError(
        f"config.context.dim={context.dim}: model {config.model!r} does not "
        f"take a context vector; expected 0, or one of {list(CONTEXT_MODELS)}")
  return BUILDERS[config.model](config)
