"""Every command in README.md is exercised, as README.md says it at test time.

README.md is parsed when the tests run, so an edited README is tested as it
stands:
  * shell commands in ```bash blocks and in inline code (`python -m ...`;
    the placeholders `<name>` and `DIR` take the quick start's config and
    workdir): `pip install` must name files that exist; `python -m pytest`
    must be the command CI runs (.ci/run); every `python -m train.*` or
    `python -m nbflows.*` command runs, with its config shrunk to the
    `:quick` variant, one coupling per scale, a few steps and its workdir in
    a temporary directory (identical commands run once; they share the
    session's compilation cache, tests/conftest.py);
  * ```python blocks run in order, in one namespace, in that temporary
    directory after the commands, so their paths (e.g.
    "workdirs/ncl_digits") name the runs just made;
    `x` and `neighbours`, which the README's snippet leaves to the reader,
    are the test split of that run (dequantised, as the trainer evaluates
    it), so the snippet's bits/dim must equal the run's eval.json;
  * every config named in the models table exists and trains the model its
    row names;
  * the long reproduction commands of the results (```text blocks, hours of
    training; each module has its own end-to-end test) name modules and
    config files that exist.
The existing tests/test_entry_points.py covers train.main and
train.evaluate's outputs in detail; this file checks the README's own words.
The commands and the snippets compile with XLA's optimisations off
(JAX_DISABLE_MOST_OPTIMIZATIONS, `fast_compiles` of tests/conftest.py): a few
steps of a quick config are compile-bound.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from nbflows import compilation_cache
from test_entry_points import REPO

pytestmark = pytest.mark.usefixtures("fast_compiles")   # conftest.py

README = os.path.join(REPO, "README.md")
# Flags whose values are paths (comma-separated lists for --workdirs).
PATH_FLAGS = ("--workdir", "--workdir_root", "--workdirs", "--out")
# Appended to every command with a --config (README's own override syntax):
# a few steps, validated at the end, of a flow with one coupling per scale.
SMALL_RUN = ["--config.num_train_steps=4", "--config.eval_every_steps=4",
             "--config.checkpoint_every_steps=4",
             "--config.optimizer.warmup_steps=0",
             "--config.flow.couplings_per_scale=1"]


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
  """`python -m module args` in the repository, on CPU (up to 15 minutes)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
             PYTHONPATH=REPO, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=900)


def read_readme() -> str:
  with open(README) as f:
    return f.read()


def code_blocks(text: str, language: str) -> list[str]:
  """The bodies of the fenced code blocks of `language`."""
  return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def shell_commands(text: str) -> list[str]:
  """Commands of the bash blocks (split at `&&`) and inline `python -m`s."""
  commands = []
  for block in code_blocks(text, "(?:bash|sh|shell)"):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split(" #")[0].strip()
      if line and not line.startswith("#"):
        commands += [part.strip() for part in line.split("&&")]
  inline = re.findall(r"`(python -m [^`]+)`", text)
  return commands + inline


def quick_start(commands: list[str]) -> tuple[str, str]:
  """(config, workdir) of the first training command: fills `<name>`, DIR."""
  for command in commands:
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "train.main"]:
      return (words[words.index("--config") + 1],
              words[words.index("--workdir") + 1])
  raise AssertionError("README.md has no `python -m train.main` command")


def concrete(command: str, config: str, workdir: str) -> str:
  """Fills the placeholders of an inline command template."""
  name = os.path.splitext(os.path.basename(config.partition(":")[0]))[0]
  return command.replace("<name>", name).replace(" DIR", f" {workdir}")


def runnable(words: list[str], root: str) -> list[str]:
  """The command's arguments, shrunk: `:quick` config, paths under root."""
  args = []
  for word in words[3:]:     # --flag=value -> --flag value
    flag, sep, value = word.partition("=")
    args += [flag, value] if sep and flag in PATH_FLAGS + ("--config",) else [word]
  args, shrunk = iter(args), []
  for word in args:
    shrunk.append(word)
    if word == "--config":
      config = next(args)
      shrunk.append(config if ":" in config else config + ":quick")
    elif word in PATH_FLAGS:
      shrunk.append(",".join(os.path.join(root, path)
                             for path in next(args).split(",")))
  if "--config" in shrunk:
    shrunk += SMALL_RUN
  return shrunk


def test_install_command_names_files_that_exist():
  installs = [c for c in shell_commands(read_readme())
              if c.startswith("pip install")]
  assert installs
  for command in installs:
    words = shlex.split(command)
    for flag, value in zip(words, words[1:]):
      if flag == "-r":
        assert os.path.isfile(os.path.join(REPO, value)), command
      if flag == "-e":
        assert os.path.isfile(os.path.join(REPO, value, "setup.py")), command


def test_reproduction_commands_name_modules_and_configs_that_exist():
  commands = [line for block in code_blocks(read_readme(), "text")
              for line in block.splitlines() if line.startswith("python -m")]
  assert commands
  for command in commands:
    module = shlex.split(command)[2]
    assert importlib.util.find_spec(module) is not None, command
    for path in re.findall(r"configs/\w+\.py", command):
      assert os.path.isfile(os.path.join(REPO, path)), (path, command)


def test_test_command_is_the_one_ci_runs():
  tests = [c for c in shell_commands(read_readme())
           if c.startswith("python -m pytest")]
  assert tests
  with open(os.path.join(REPO, ".ci", "run")) as f:
    ci = f.read()
  for command in tests:
    assert command in ci, f"{command!r} is not what .ci/run runs"


def run_commands(root: str) -> tuple[str, list[list[str]]]:
  """Runs every `python -m` command of README.md once, paths under root.

  Returns:
    (the quick start's workdir under root, the commands run).
  """
  commands = shell_commands(read_readme())
  config, workdir = quick_start(commands)
  done = []
  for command in commands:
    words = shlex.split(concrete(command, config, workdir))
    if words[:2] != ["python", "-m"] or words[2] == "pytest" or words in done:
      continue
    done.append(words)
    run = run_module(words[2], *runnable(words, root))
    assert run.returncode == 0, (command, run.stdout[-2000:],
                                 run.stderr[-3000:])
  assert done, "README.md runs no `python -m` command"
  return os.path.join(root, workdir), done


def check_training_outputs(workdir: str, done: list[list[str]]) -> None:
  """The quick start trained the steps asked and wrote what README names."""
  assert any(words[2] == "train.main" for words in done)
  with open(os.path.join(workdir, "eval.json")) as f:
    report = json.load(f)
  assert report["steps_trained"] == 4
  assert 0 < report["test_bpd"] < 2 * math.log2(17), report
  if "samples.png" in read_readme():
    assert os.path.isfile(os.path.join(workdir, "samples.png"))


def check_python_snippets(root: str, workdir: str, monkeypatch) -> None:
  """README's python blocks run in root; log_p agrees with eval.json."""
  from nbflows import checkpoint_loading
  from nbflows.data import pipeline
  from train.evaluation import evaluate
  model, _, config = checkpoint_loading.load_checkpoint(workdir)
  splits, index = evaluate.load_data(config, model)
  test = next(pipeline.eval_iterator(splits, index, "test",
                                     len(splits.test.labels)))
  with open(os.path.join(workdir, "eval.json")) as f:
    report = json.load(f)
  monkeypatch.chdir(root)
  snippets = code_blocks(read_readme(), "python")
  assert snippets
  namespace = {"x": test["x"], "neighbours": test.get("neighbours")}
  for snippet in snippets:   # in order, in one namespace, as in a notebook
    namespace.pop("log_p", None)
    namespace.pop("samples", None)
    exec(compile(snippet, "README.md", "exec"), namespace)  # pylint: disable=exec-used
    if "log_p" in namespace and re.search(r"log_prob\(params, x\b", snippet):
      # The quick start's test points: nats of data units -> eval.json's bpd.
      log_p = np.asarray(namespace["log_p"])
      assert log_p.shape == (len(test["x"]),)
      bpd = -log_p.mean() / (namespace["model"].num_dims * math.log(2))
      assert bpd == pytest.approx(report["test_bpd"], abs=1e-3)
    if "samples" in namespace:
      samples, event = (np.asarray(namespace["samples"]),
                        namespace["model"].event_shape)
      assert samples.shape[-len(event):] == event
      assert np.isfinite(samples).all()


def test_readme_commands_and_snippets(tmp_path, monkeypatch,
                                      compilation_cache_dir):
  # One test, so that under xdist the commands run once, on one worker.
  workdir, done = run_commands(str(tmp_path))
  check_training_outputs(workdir, done)
  # The snippets in this process, in the session's cache (the commands' runs
  # set the fast CPU XLA_FLAGS, so only other in-process runs share it).
  with compilation_cache.reused_compilations(compilation_cache_dir):
    check_python_snippets(str(tmp_path), workdir, monkeypatch)


def table_configs(text: str) -> list[tuple[str, str]]:
  """(model, config name) pairs of the models table, braces expanded."""
  pairs, datasets = [], ""
  for row in re.findall(r"^\| `(.+?)` \|.*\| (.+) \|$", text, re.M):
    models, configs = row
    models = re.findall(r"`?([a-z0-9_]+)`?", models)
    for pattern in re.findall(r"`([^`]+)`", configs):
      if "{k}" in pattern:      # a family of sizes, e.g. nif{k}_digits
        continue
      # "{...}" ("as above") repeats the previous row's list of datasets.
      pattern = pattern.replace("{...}", datasets)
      datasets = (re.findall(r"\{[^}]*\}", pattern) or [datasets])[-1]
      parts = [p.split(",") for p in re.split(r"[{}]", pattern)]
      for combination in itertools.product(*parts):
        pairs.append((" ".join(models), "".join(combination)))
  return pairs


def test_every_config_in_the_models_table_trains_its_model():
  pairs = table_configs(read_readme())
  assert len(pairs) > 10, pairs
  for models, name in pairs:
    assert os.path.isfile(os.path.join(REPO, "configs", f"{name}.py")), (
        f"README.md's models table names configs/{name}.py, which does not "
        "exist")
    config = importlib.import_module(f"configs.{name}").get_config("quick")
    assert config.model in models.split(), (name, config.model, models)
