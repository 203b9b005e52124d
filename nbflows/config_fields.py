"""Config fields by dotted path, and `ConfigError` for a config gone wrong.

A config is a locked `ml_collections.ConfigDict` (STYLE.md: a typo is an
error). `get_field` and `set_field` reach a field by its dotted path
("neighbours.k"); an unknown path is a `ConfigError` whose one-line message
suggests the closest real paths (`difflib.get_close_matches` over
`field_paths`). Every check of a config a user wrote (the command lines'
`--config.<field>=` and `--set field=value`, `train.loop.trainer.
validate_config`, `build_model`) raises `ConfigError`, which the command
lines (`train.cli`) print as one line with exit code 2.

Example:
  >>> from configs import default
  >>> config = default.get_config("quick")
  >>> get_field(config, "neighbours.k")
  5
  >>> get_field(config, "neighbours.kk")
  Traceback (most recent call last):
  ...
  nbflows.config_fields.ConfigError: unknown config field 'neighbours.kk'; did you mean 'neighbours.k' or 'neighbours.kind' or 'neighbours.knn_backend'?
"""
from __future__ import annotations

import difflib
import os
from typing import Any, List

import ml_collections

# How many suggestions an unknown field gets, and how close they must be.
MAX_SUGGESTIONS = 3
SIMILARITY_CUTOFF = 0.6
# A missing config file: the closest files of its directory, else the first.
MAX_FILES_SHOWN = 5
FILE_SIMILARITY_CUTOFF = 0.5


class ConfigError(ValueError):
  """A config file, field or value that cannot be used (a one-line message)."""


def field_paths(config: ml_collections.ConfigDict, prefix: str = "") -> List[str]:
  """Every field's dotted path, sections and their fields alike, in order.

  Example:
    >>> import ml_collections
    >>> field_paths(ml_collections.ConfigDict({"a": 1, "b": {"c": 2}}))
    ['a', 'b', 'b.c']
  """
  paths = []
  for key, value in config.items():
    path = f"{prefix}{key}"
    paths.append(path)
    if isinstance(value, ml_collections.ConfigDict):
      paths += field_paths(value, f"{path}.")
  return paths


def unknown_field(config: ml_collections.ConfigDict, path: str) -> ConfigError:
  """The `ConfigError` for a `path` that `config` does not have.

  The suggestions are the closest field paths, leaving out the sections
  that `path` is inside (for "neighbours.kk", not "neighbours").
  """
  candidates = [candidate for candidate in field_paths(config)
                if not path.startswith(candidate + ".")]
  close = difflib.get_close_matches(path, candidates,
                                    n=MAX_SUGGESTIONS,
                                    cutoff=SIMILARITY_CUTOFF)
  if close:
    hint = "did you mean " + " or ".join(f"'{match}'" for match in close) + "?"
  else:
    hint = "expected one of the top-level fields " + ", ".join(config.keys())
  return ConfigError(f"unknown config field '{path}'; {hint}")


def get_field(config: ml_collections.ConfigDict, path: str) -> Any:
  """The value at dotted `path`.

  Raises:
    ConfigError: `unknown_field` when a part of `path` is not a field.
  """
  node = config
  for part in path.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise unknown_field(config, path)
    node = node[part]
  return node


def set_field(config: ml_collections.ConfigDict, path: str, value: Any) -> None:
  """Sets the existing field at dotted `path` to `value`.

  Raises:
    ConfigError: for an unknown field, or a value of a type the field does
      not take (the config keeps its field types).
  """
  parent_path, _, leaf = path.rpartition(".")
  parent = get_field(config, parent_path) if parent_path else config
  old = get_field(config, path)
  try:
    parent[leaf] = value
  except TypeError as error:
    raise ConfigError(
        f"config field '{path}' holds {type(old).__name__} {old!r}; got "
        f"{type(value).__name__} {value!r}") from error


def check_config_file(path: str) -> None:
  """Raises `ConfigError` if there is no config file at `path`.

  The message names the closest `.py` files of its directory (or, when none
  is close, the first few).

  Example:
    >>> check_config_file("configs/ncl_digit.py")
    Traceback (most recent call last):
    ...
    nbflows.config_fields.ConfigError: config file 'configs/ncl_digit.py' does not exist; the closest of the ... files in configs/: ncl_digits.py, ...
  """
  if os.path.isfile(path):
    return
  directory = os.path.dirname(path) or "."
  if not os.path.isdir(directory):
    raise ConfigError(f"config file '{path}' does not exist, nor does its "
                      f"directory '{directory}'")
  names = sorted(name for name in os.listdir(directory)
                 if name.endswith(".py") and not name.startswith("_"))
  close = difflib.get_close_matches(os.path.basename(path), names,
                                    n=MAX_FILES_SHOWN,
                                    cutoff=FILE_SIMILARITY_CUTOFF)
  which = "the closest" if close else "the first"
  raise ConfigError(
      f"config file '{path}' does not exist; {which} of the {len(names)} "
      f"files in {directory}/: {', '.join(close or names[:MAX_FILES_SHOWN])}")
