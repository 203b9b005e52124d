r"""What every command line shares: one-line config errors and quiet logs.

Each entry point in train/ ends in `cli.run(main)` where absl's examples
end in `app.run(main)`; `run` adds:

  1. config errors as one line on stderr, ``error: ...``, and exit code 2,
     without a traceback (`parse_flags`):
       - a config file that does not exist, with the closest files of its
         directory (`config_fields.check_config_file`);
       - an unknown ``--config.<field>=`` with the closest real fields
         ("did you mean", `config_fields.unknown_field`);
       - a value a field cannot take, and absl's other flag errors (an
         unknown flag, a missing required flag);
     and a `config_fields.ConfigError` that main raises (`--set field=value`
     overrides, `train.loop.trainer.validate_config`, `build_model`); a
     `workdir_errors.WorkdirFileError` (a workdir locked by another run, a
     damaged checkpoint, config.json or neighbour index) is one line too,
     with exit code 1;
  2. quiet third-party logs: unless absl's ``--verbosity`` (``-v``) is 1 or
     more, records below WARNING from outside this project (orbax's ~350
     INFO lines a run, JAX's, TensorFlow's) are dropped, so the progress bar
     and the project's own INFO lines (`nbflows`, `train`, `configs`) read
     cleanly; TensorFlow's C++ INFO messages are off too
     (``TF_CPP_MIN_LOG_LEVEL=1`` unless the user set it).

Flag parsing imports only absl and ml_collections, so ``--help`` and a
config error come back before JAX or TensorFlow would have loaded.
"""
from __future__ import annotations

import functools
import importlib.util
import logging as python_logging
import os
import re
import sys
from typing import Any, Callable, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
# `is_config_flag` is meant for users (its docstring) but not re-exported.
from ml_collections.config_flags import config_flags as config_flags_lib

from nbflows import config_fields
from nbflows import workdir_errors

EXIT_CONFIG_ERROR = 2
EXIT_WORKDIR_FILE_ERROR = 1
# The packages whose INFO records are shown at the default verbosity.
PROJECT_PACKAGES = ("nbflows", "train", "configs")


def run(main: Callable[[List[str]], Any]) -> None:
  """`app.run(main)` with the module doc's one-line errors and quiet logs."""
  app.run(functools.partial(_run_main, main), flags_parser=parse_flags)


def _run_main(main: Callable[[List[str]], Any], argv: List[str]) -> Any:
  quiet_third_party_logs(flags.FLAGS.verbosity)
  return call_reporting_config_errors(main, argv)


def call_reporting_config_errors(main: Callable[[List[str]], Any],
                                 argv: List[str]) -> Any:
  """`main(argv)`, with the user's errors it raises sent to `exit_with_error`.

  A `ConfigError` exits with code 2; a `WorkdirFileError` (a lock held by
  another run, an unreadable checkpoint, config.json or neighbour index)
  with code 1.
  """
  try:
    return main(argv)
  except config_fields.ConfigError as error:
    exit_with_error(str(error))
  except workdir_errors.WorkdirFileError as error:
    exit_with_error(str(error), EXIT_WORKDIR_FILE_ERROR)


def exit_with_error(message: str, code: int = EXIT_CONFIG_ERROR) -> None:
  """Writes ``error: <message>`` (one line) to stderr and exits with `code`."""
  one_line = " ".join(message.split())
  sys.stderr.write(f"error: {one_line}\n")
  sys.exit(code)


def parse_flags(argv: Sequence[str],
                flag_values: flags.FlagValues = flags.FLAGS) -> List[str]:
  """Parses `argv` into `flag_values`; config errors exit as in the doc.

  An error `describe_flag_error` cannot put in a line (a bug rather than a
  user's mistake) keeps its traceback.

  Returns:
    The arguments that are not flags, `argv[0]` first.
  """
  try:
    remaining = flag_values(list(argv))
  except (flags.Error, AttributeError, KeyError, TypeError,
          OSError) as error:
    message = describe_flag_error(error, argv, flag_values)
    if message is None:
      raise
    exit_with_error(message)
  try:
    for name in config_flag_names(flag_values):
      if flag_values[name].present:
        config_fields.check_config_file(config_flags.get_config_filename(
            flag_values[name]).partition(":")[0])
  except config_fields.ConfigError as error:
    exit_with_error(str(error))
  return remaining


def config_flag_names(flag_values: flags.FlagValues) -> List[str]:
  """The names of the `DEFINE_config_file` flags in `flag_values`."""
  return [name for name in flag_values
          if config_flags_lib.is_config_flag(flag_values[name])]


def describe_flag_error(error: Exception, argv: Sequence[str],
                        flag_values: flags.FlagValues) -> Optional[str]:
  """One line saying what was wrong with the command line, or None.

  Checks, for each config flag on the command line, that its file exists
  and that every ``--<flag>.<field>`` override names a field; else, for an
  absl flag error, its message (with the field's type and value when a
  config field's value did not parse).
  """
  for name in config_flag_names(flag_values):
    spec = config_argument(argv, name)
    if spec is None:
      continue
    try:
      config_fields.check_config_file(spec.partition(":")[0])
      fields = override_fields(argv, name)
      config = flag_values[name].parser.parse(spec) if fields else None
      for field in fields:
        config_fields.get_field(config, field)
    except config_fields.ConfigError as config_error:
      return str(config_error)
    if isinstance(error, flags.IllegalFlagValueError):
      for field in fields:
        if str(error).startswith(f"flag --{name}.{field}="):
          value = config_fields.get_field(config, field)
          held = (f"{type(value).__name__} {value!r}" if not isinstance(
              value, ml_collections.ConfigDict) else "a section: set its "
                  f"fields, e.g. --{name}.{field}.{next(iter(value))}=")
          return (f"{error}; expected a value for config field '{field}', "
                  f"which holds {held}")
  if isinstance(error, flags.Error):
    lines = str(error).strip().splitlines()
    # A config file's own exception comes as a traceback: keep its last line.
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
  return None


def config_argument(argv: Sequence[str], name: str) -> Optional[str]:
  """The value of ``--name=VALUE`` or ``--name VALUE`` in `argv` (the last)."""
  value = None
  for i, arg in enumerate(argv):
    match = re.fullmatch(rf"--?{re.escape(name)}(=(.*))?", arg)
    if match and match.group(1):
      value = match.group(2)
    elif match and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def override_fields(argv: Sequence[str], name: str) -> List[str]:
  """The field paths of ``--name.<field>[=value]`` (and ``--noname.<field>``)."""
  pattern = rf"--?(no)?{re.escape(name)}\.([^=]+)(=.*)?"
  return [match.group(2) for match in
          (re.fullmatch(pattern, arg) for arg in argv) if match]


class ThirdPartyInfoFilter(python_logging.Filter):
  """Keeps WARNING and above, and lower records of the given source roots."""

  def __init__(self, roots: Sequence[str]):
    super().__init__()
    self.roots = tuple(os.path.join(root, "") for root in roots)

  def filter(self, record: python_logging.LogRecord) -> bool:
    return (record.levelno >= python_logging.WARNING
            or record.pathname.startswith(self.roots))


def project_roots() -> List[str]:
  """The source directories of `PROJECT_PACKAGES`, found without importing."""
  roots = []
  for package in PROJECT_PACKAGES:
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
      roots += [os.path.abspath(location)
                for location in spec.submodule_search_locations]
  return roots


def quiet_third_party_logs(verbosity: int) -> None:
  """Point 2 of the module doc, for absl's `verbosity` (0: INFO, 1: DEBUG)."""
  if verbosity >= 1:
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  handler = logging.get_absl_handler()
  if not any(isinstance(f, ThirdPartyInfoFilter) for f in handler.filters):
    handler.addFilter(ThirdPartyInfoFilter(project_roots()))
