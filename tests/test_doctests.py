"""Every docstring example in nbflows, train and configs passes as a doctest.

CI runs `python -m pytest -n 2 -q tests`, which collects only tests/, so
`--doctest-modules` would not reach the library; this runs each module's
examples with `doctest.testmod`, one test per module (xdist spreads them).
A failing example prints its expected and actual output. The examples'
time is compiles of tiny models, so XLA's optimisations are off
(`fast_compiles`, conftest.py): a model's init compiles about 3x faster.
"""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import configs
import nbflows
import train

pytestmark = pytest.mark.usefixtures("fast_compiles")   # conftest.py

def module_names() -> list[str]:
  return sorted(info.name for package in (nbflows, train, configs)
                for info in pkgutil.walk_packages(package.__path__,
                                                  package.__name__ + "."))


def test_the_library_has_examples():
  examples = sum(len(test.examples)
                 for name in module_names()
                 for test in doctest.DocTestFinder().find(
                     importlib.import_module(name)))
  assert examples > 100, examples


@pytest.mark.parametrize("name", module_names())
def test_docstring_examples_pass(name):
  result = doctest.testmod(importlib.import_module(name),
                           optionflags=doctest.ELLIPSIS, report=True)
  assert result.failed == 0, f"{result.failed} failing examples in {name}"
