"""The import rule: the library (nbflows/) never imports the training code.

`train` builds on `nbflows`, never the reverse, so the library can be used
(and a trained model loaded) without the trainer. Every .py file under
nbflows/ is parsed and each `import x` and `from x import y`, at any depth
(function-level imports too), is checked.
"""
from __future__ import annotations

import ast
import os
import textwrap
from typing import Iterator, List, Tuple

import nbflows

FORBIDDEN = "train"


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
