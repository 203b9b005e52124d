"""Parametrisations a run's config records because they changed.

A checkpoint holds parameters, not what they mean: when a model's
parametrisation changes with its parameter tree unchanged, an old
checkpoint would load without complaint and be read the new way. Each such
change therefore gains a config field that states the parametrisation, and
a config.json without it is a config of the time before the change.

`CHANGES` lists them. The one so far: the latent-flow models' encoder
variance head (models "glf" and "vae_flowprior"; `glf.LatentFlowAutoEncoder`)
was log Lambda = clip(Dense, -6, 2) (hardtanh) until commit 484a464 made it
log(softplus(Dense) + 1e-8), with the same parameters; `config.glf.
encoder_variance` records which ("softplus" in the configs now). It matters
for the VAE with a flow prior (eq. 3 of paper 5 samples z from q(z | x));
GLF's objectives use only the mean, but load as trained too.

  * `nbflows.checkpoint.load_config` refuses a config.json without such a
    field (`OutdatedConfigError`, naming the change and the two remedies:
    retrain, or `python -m train.convert_checkpoint WORKDIR`);
  * the converter writes the old value into config.json
    (`record_old_values`), after which the checkpoints load as trained;
  * loading or resuming with a config whose recorded value differs from the
    saved one is refused (`check_same`), since the parameters would be read
    the other way.

Example:
  >>> outdated({"model": "vae_flowprior", "glf": {"beta": 1.0}})
  ['glf.encoder_variance']
  >>> outdated({"model": "rnvp"})
  []
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, List, Mapping, Tuple

from nbflows import config_fields
from nbflows import workdir_errors

# Names of the workdir format (`nbflows.checkpoint` takes them from here),
# held where no orbax is imported, for the converter's quick command line.
CONFIG_FILE = "config.json"
CONVERT_COMMAND = "python -m train.convert_checkpoint"


@dataclasses.dataclass(frozen=True)
class Change:
  """A parametrisation change recorded by a config field.

  Attributes:
    models: the `config.model` names it concerns.
    field: the dotted config field that records it.
    old_value: what a config without the field was trained with.
    description: what changed, for the messages.
  """
  models: Tuple[str, ...]
  field: str
  old_value: Any
  description: str


CHANGES = (
    Change(("glf", "vae_flowprior"), "glf.encoder_variance", "hardtanh",
           "the encoder's variance head changed from a clipped log-variance "
           "(hardtanh to [-6, 2]) to softplus (commit 484a464; "
           "nbflows.models.vae.posterior_log_variance)"),
)


class OutdatedConfigError(workdir_errors.WorkdirFileError, ValueError):
  """A config.json written before a recorded parametrisation changed."""


def _get(values: Mapping[str, Any], field: str) -> Tuple[bool, Any]:
  """(present, value) of a dotted `field` of a nested mapping."""
  for name in field.split("."):
    if not isinstance(values, Mapping) or name not in values:
      return False, None
    values = values[name]
  return True, values


def outdated(values: Mapping[str, Any]) -> List[str]:
  """The recorded fields a config (as a nested dict) of its model lacks."""
  return [change.field for change in CHANGES
          if values.get("model") in change.models
          and not _get(values, change.field)[0]]


def check_recorded(values: Mapping[str, Any], path: str) -> None:
  """Raises `OutdatedConfigError` if the config read from `path` is outdated.

  Raises:
    OutdatedConfigError: naming the change, the field and what to do.
  """
  fields = set(outdated(values))
  if not fields:
    return
  workdir = os.path.dirname(path) or "."
  lines = [f"{path} (model {values.get('model')!r}) was written before "
           f"{change.description}: it has no {change.field}, and its "
           f"checkpoints were trained with {change.field}="
           f"{change.old_value!r}, which a model built now would not be"
           for change in CHANGES if change.field in fields]
  raise OutdatedConfigError(
      "; ".join(lines) + f". Retrain the run, or record what it was trained "
      f"with: `{CONVERT_COMMAND} {workdir}` writes the old value into "
      "config.json, and the checkpoints then load as trained")


def record_old_values(workdir: str) -> List[str]:
  """Writes each outdated field's old value into `workdir`'s config.json.

  Returns:
    "field=value" for each field written (empty if none was missing).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path) as f:
    values = json.load(f)
  written = []
  for change in CHANGES:
    if change.field in outdated(values):
      *sections, name = change.field.split(".")
      section = values
      for part in sections:
        section = section.setdefault(part, {})
      section[name] = change.old_value
      written.append(f"{change.field}={change.old_value!r}")
  if written:
    with open(path + ".tmp", "w") as f:
      json.dump(values, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
  return written


def check_same(saved: Mapping[str, Any], current: Mapping[str, Any],
               workdir: str) -> None:
  """Raises unless `current` records the parametrisations `saved` does.

  Args:
    saved: the run's config.json as a nested dict (empty: nothing saved).
    current: the config a model is being built from now, as a nested dict.
    workdir: the run's directory, for the message.

  Raises:
    config_fields.ConfigError: naming the field, both values and the
      override to pass (a command line prints it as one line).
  """
  for change in CHANGES:
    if current.get("model") not in change.models:
      continue
    (in_saved, old), (_, new) = (_get(saved, change.field),
                                 _get(current, change.field))
    if in_saved and old != new:
      raise config_fields.ConfigError(
          f"the checkpoints of {workdir} were trained with {change.field}="
          f"{old!r} (its config.json), but the config now has {new!r}, "
          "which would read their parameters another way; pass "
          f"--config.{change.field}={old} to use them")
