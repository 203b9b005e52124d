"""The command lines' shared rules (train.cli) and config fields by path.

A misspelt field, a missing config file and a bad value are one line on
stderr with exit code 2, before JAX loads; every entry point's --help (but
the benchmark's) imports neither JAX nor TensorFlow; other libraries' INFO
records are dropped unless --verbosity asks for them. (The console of a whole training run is checked in
test_entry_points.test_command_lines_train_and_evaluate.)
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from configs import default
from configs import ncl_digits
from nbflows import config_fields
from train import cli
from train.experiments import compare
from train.loop import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, workdir):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
             PYTHONPATH=REPO)
  return subprocess.run(
      [sys.executable, "-m", "train.main", "--workdir", workdir, *args],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, expected", [
    (["--config", "configs/ncl_digits.py:quick",
      "--config.ncl.hiden_channels=4"],
     "error: unknown config field 'ncl.hiden_channels'; did you mean "
     "'ncl.hidden_channels' or 'flow.hidden_channels'?"),
    (["--config", "configs/ncl_digit.py:quick"],
     "error: config file 'configs/ncl_digit.py' does not exist; the closest "
     "of the {n} files in configs/: ncl_digits.py, "),
    (["--config", "configs/ncl_digits.py:quick",
      "--config.num_train_steps=ten"],
     "error: flag --config.num_train_steps=ten: invalid literal for int() "
     "with base 10: 'ten'; expected a value for config field "
     "'num_train_steps', which holds int 20"),
], ids=["misspelt_field", "missing_file", "wrong_type"])
def test_a_config_error_is_one_line_and_exit_code_2(args, expected, tmp_path):
  workdir = str(tmp_path / "run")
  run = run_main(*args, workdir=workdir)
  n = len([name for name in os.listdir(os.path.join(REPO, "configs"))
           if name.endswith(".py") and not name.startswith("_")])
  assert run.returncode == 2, run.stderr[-3000:]
  assert run.stdout == ""
  assert run.stderr.count("\n") == 1 and run.stderr.endswith("\n")
  assert run.stderr.startswith(expected.format(n=n)), run.stderr
  assert not os.path.exists(workdir)   # refused before touching anything


def test_a_config_error_main_raises_is_one_line_too(capsys):
  config = default.get_config("quick")
  config.num_train_steps = 0

  def main(argv):
    del argv
    trainer.validate_config(config)

  with pytest.raises(SystemExit) as exit_info:
    cli.call_reporting_config_errors(main, ["train.main"])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == (
      "error: config.num_train_steps=0; expected an integer >= 1\n")


def entry_points():
  """The modules of train/ that run as programs (`python -m train.X`)."""
  names = []
  for name in sorted(os.listdir(os.path.join(REPO, "train"))):
    if name.endswith(".py"):
      with open(os.path.join(REPO, "train", name)) as f:
        if 'if __name__ == "__main__":' in f.read():
          names.append(name[:-3])
  return names


# Not yet: its subcommands' parsers are built by the job modules, which
# import JAX (train.benchmarks.jobs), so its --help takes ~10 s. Skipped,
# not run as an expected failure, which would cost those 10 s.
SLOW_HELP = {"benchmark"}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.skip(
        reason="the benchmark's job modules import JAX")) if name in
    SLOW_HELP else name for name in entry_points()])
def test_help_imports_neither_jax_nor_tensorflow(name):
  # Importing neither is what keeps --help under 2 s (JAX alone takes 2-5 s).
  code = textwrap.dedent(f"""
      import runpy, sys
      sys.argv = ["train.{name}", "--help"]
      try:
        runpy.run_module("train.{name}", run_name="__main__")
      except SystemExit:
        pass
      print(sorted({{name.split(".")[0] for name in sys.modules}}
                   & {{"jax", "tensorflow", "flax", "orbax"}}), file=sys.stderr)
      """)
  run = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=REPO))
  assert f"train.{name}" in run.stdout, run.stdout[-2000:]   # its usage
  if name == "main":
    assert "--config.<field>=<value>" in " ".join(run.stdout.split())
  assert run.stderr.strip().splitlines()[-1] == "[]", run.stderr[-2000:]


def test_describe_flag_error_reads_the_config_flag_and_its_overrides():
  argv = ["main", "--config=configs/default.py:quick", "--noconfig.x.y",
          "--config.neighbours.k", "3", "-config", "configs/ncl_digits.py"]
  assert cli.config_argument(argv, "config") == "configs/ncl_digits.py"
  assert cli.override_fields(argv, "config") == ["x.y", "neighbours.k"]
  assert cli.config_argument(["main", "--workdir=w"], "config") is None


def test_third_party_records_below_warning_are_dropped(tmp_path):
  keep = cli.ThirdPartyInfoFilter([str(tmp_path / "train")])

  def record(path, level):
    return logging.LogRecord("absl", level, path, 1, "message", (), None)

  ours = str(tmp_path / "train" / "loop" / "trainer.py")
  theirs = str(tmp_path / "site-packages" / "orbax" / "checkpoint_manager.py")
  look_alike = str(tmp_path / "train_extra" / "module.py")
  assert keep.filter(record(ours, logging.INFO))
  assert not keep.filter(record(theirs, logging.INFO))
  assert not keep.filter(record(look_alike, logging.INFO))
  assert keep.filter(record(theirs, logging.WARNING))
  assert os.path.join(REPO, "train") in cli.project_roots()


def test_field_paths_cover_sections_and_their_fields():
  paths = config_fields.field_paths(default.get_config())
  assert {"neighbours", "neighbours.k", "optimizer.learning_rate"} <= set(
      paths)
  assert "k" not in paths and len(paths) == len(set(paths))


def test_an_unknown_field_suggests_real_fields_never_its_own_section():
  config = ncl_digits.get_config("quick")
  message = str(config_fields.unknown_field(config, "neighbors.kk"))
  assert message.startswith("unknown config field 'neighbors.kk'; did you "
                            "mean 'neighbours.k'")
  assert "'neighbours'" not in str(config_fields.unknown_field(
      config, "neighbours.kk"))
  assert "did you mean" not in str(config_fields.unknown_field(config,
                                                               "zzzzzz"))
  with pytest.raises(config_fields.ConfigError, match="'model.foo'"):
    config_fields.get_field(config, "model.foo")   # model is a string


def test_set_field_keeps_the_field_type():
  config = default.get_config("quick")
  config_fields.set_field(config, "optimizer.learning_rate", 1)
  assert config.optimizer.learning_rate == 1.0
  with pytest.raises(config_fields.ConfigError,
                     match="'num_train_steps' holds int 20; got str 'ten'"):
    config_fields.set_field(config, "num_train_steps", "ten")


def test_set_overrides_share_the_field_check():
  config = default.get_config("quick")
  with pytest.raises(config_fields.ConfigError,
                     match="did you mean 'num_train_steps'"):
    compare.apply_overrides(config, ["num_train_step=3"])
  with pytest.raises(config_fields.ConfigError, match="does not exist"):
    compare.load_config("configs/defualt.py")


def test_load_config_finds_configs_from_any_working_directory(tmp_path,
                                                              monkeypatch):
  """A notebook runs in notebooks/: `configs/<name>.py` is the package's file,
  not a path under the cwd, and a misspelt one still names the closest."""
  monkeypatch.chdir(tmp_path)
  assert compare.load_config("configs/default.py:quick").model == (
      default.get_config("quick").model)
  with pytest.raises(config_fields.ConfigError, match="default.py"):
    compare.load_config("configs/defualt.py")
