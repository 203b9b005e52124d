"""The import rules: the library (nbflows/) never imports the training code,
and loading it (without the data pipeline) never imports TensorFlow.

`train` builds on `nbflows`, never the reverse, so the library can be used
(and a trained model loaded) without the trainer. Every .py file under
nbflows/ is parsed and each `import x` and `from x import y`, at any depth
(function-level imports too), is checked.
"""
from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import textwrap
from typing import Iterator, List, Tuple

import pytest

import nbflows
from nbflows import without_tensorflow

FORBIDDEN = "train"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imported_modules(source: str) -> Iterator[Tuple[int, str]]:
  """(line, module) of every import statement in `source`, nested included.

  `from . import x` (relative imports) stay inside the package and are
  skipped; `from x import y` yields x.
  """
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and not node.level:
      yield node.lineno, node.module


def violations(root: str, forbidden: str = FORBIDDEN) -> List[str]:
  """Each import of `forbidden` or its submodules, as "path:line: module"."""
  found = []
  for directory, _, names in os.walk(root):
    for name in sorted(names):
      if not name.endswith(".py"):
        continue
      path = os.path.join(directory, name)
      with open(path) as f:
        source = f.read()
      for line, module in imported_modules(source):
        if module == forbidden or module.startswith(forbidden + "."):
          found.append(f"{os.path.relpath(path, root)}:{line}: {module}")
  return found


def test_the_library_imports_no_training_code():
  root = os.path.dirname(nbflows.__file__)
  assert len([name for _, _, names in os.walk(root) for name in names
              if name.endswith(".py")]) > 20   # the walk reaches the library
  assert violations(root) == []


def test_the_walker_finds_every_form_of_import(tmp_path):
  package = tmp_path / "package" / "sub"
  package.mkdir(parents=True)
  (package / "top.py").write_text("import train\nimport numpy\n")
  (package / "nested.py").write_text(textwrap.dedent("""
      from typing import Any

      def load():
        from train import checkpoint
        return checkpoint

      class Model:
        def fit(self):
          import train.state as state_lib
          return state_lib
      """))
  (package / "clean.py").write_text(
      "from . import train\nimport trainers\nfrom training import x\n")
  (package / "notes.txt").write_text("import train\n")
  assert violations(str(tmp_path)) == [
      "package/sub/nested.py:5: train",
      "package/sub/nested.py:10: train.state",
      "package/sub/top.py:1: train",
  ]


def test_the_library_loads_without_tensorflow():
  # Every public name (so every module behind them: bijectors on distrax,
  # models, marginal, sampling, checkpoint loading) in a fresh interpreter.
  code = textwrap.dedent("""
      import sys
      import nbflows
      assert "jax" not in sys.modules, "import nbflows is not lazy"
      for name in nbflows.__all__:
        getattr(nbflows, name)
      import distrax
      assert nbflows.build_model is nbflows.models.build_model
      print(sorted(name for name in sys.modules
                   if name.split(".")[0] == "tensorflow"))
      """)
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, cwd=REPO, check=True)
  assert result.stdout.strip() == "[]", result.stdout


def test_a_lazy_public_name_is_the_defining_modules_object():
  from nbflows import marginal
  assert nbflows.marginal_log_prob is marginal.marginal_log_prob
  assert "marginal_log_prob" in dir(nbflows)
  with pytest.raises(AttributeError, match="no attribute 'build_modle'.*"
                     "build_model"):
    nbflows.build_modle  # pylint: disable=pointless-statement


def test_a_blocked_package_is_hidden_during_the_import_only(tmp_path,
                                                            monkeypatch):
  (tmp_path / "heavy_dependency.py").write_text("LOADED = True\n")
  (tmp_path / "uses_it.py").write_text(textwrap.dedent("""
      try:
        import heavy_dependency
        FOUND = True
      except ImportError:
        FOUND = False
      """))
  monkeypatch.syspath_prepend(str(tmp_path))
  for name in ("heavy_dependency", "uses_it"):
    monkeypatch.delitem(sys.modules, name, raising=False)
  module = without_tensorflow.import_module("uses_it", "heavy_dependency")
  assert module.FOUND is False
  assert "heavy_dependency" not in sys.modules   # the block is lifted
  # Hidden even when loaded (TFP's tf_keras path), and then restored.
  loaded = importlib.import_module("heavy_dependency")
  importlib.import_module("uses_it").FOUND = True
  del sys.modules["uses_it"]
  assert without_tensorflow.import_module(
      "uses_it", "heavy_dependency").FOUND is False
  assert sys.modules["heavy_dependency"] is loaded

