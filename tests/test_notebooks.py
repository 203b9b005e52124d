"""The notebooks in notebooks/: each runs headless and draws its figures.

Every notebook reads its run length from NBFLOWS_NOTEBOOK_STEPS, its config
size from NBFLOWS_NOTEBOOK_CONFIG ("quick": tiny networks), more overrides
from NBFLOWS_NOTEBOOK_OVERRIDES and where to write from
NBFLOWS_NOTEBOOK_WORKDIR; here they run a few steps of the quick configs, with
one coupling per scale and two vector-flow layers, in a fresh kernel
(nbclient) that uses the session's compilation cache (tests/conftest.py; the
notebooks train the same NCL) and compiles with XLA's optimisations off
(JAX_DISABLE_MOST_OPTIMIZATIONS, as the `fast_compiles` fixture: a few steps
of tiny flows are compile-bound, and the values agree to float32 rounding),
so a notebook broken by a library change fails the suite. The notebooks also assert their own consistency checks (e.g. the
conditional bits/dim they compute equal the trainer's test report, the ROC
curve's area equals the AUROC), which fail the run if the maths is wrong.
"""
from __future__ import annotations

import glob
import json
import os

import nbformat
from nbclient import NotebookClient
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))
STEPS = 4
# Smaller flows than the quick configs' (a faster compile), valid for all.
OVERRIDES = "flow.couplings_per_scale=1 flow.num_layers=2"
# The figures each notebook writes to <workdir>/figures (and displays).
FIGURES = {
    "01_quickstart": ["neighbourhoods.png", "samples_beside_neighbourhoods.png",
                      "unconditional_samples.png"],
    "02_targeted_sampling": ["interpolation.png", "more_like_threes.png",
                             "more_like_zeros_and_a_six.png"],
    "03_novelty": ["roc.png", "scores.png"],
    "04_related_models": ["densities_2d.png", "evae_samples.png",
                          "glf_samples.png", "nif_samples.png"],
}


def name_of(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def code_cells(notebook):
  return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_every_notebook_is_tested():
  assert sorted(map(name_of, NOTEBOOKS)) == sorted(FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=name_of)
def test_committed_notebook_has_no_outputs(path):
  notebook = nbformat.read(path, as_version=4)
  nbformat.validate(notebook)
  for cell in code_cells(notebook):
    assert cell.outputs == [] and cell.execution_count is None, (
        f"{name_of(path)} was saved with outputs; clear them (Jupyter: Edit > "
        "Clear all outputs, or `jupyter nbconvert --clear-output --inplace`)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=name_of)
def test_notebook_installs_nbflows_in_colab_and_reads_its_parameters(path):
  first, parameters = code_cells(nbformat.read(path, as_version=4))[:2]
  assert 'REPO_URL = "' in first.source
  assert '"google.colab" in sys.modules' in first.source
  assert '!pip install -q "git+{REPO_URL}"' in first.source
  for variable in ("NBFLOWS_NOTEBOOK_STEPS", "NBFLOWS_NOTEBOOK_CONFIG",
                   "NBFLOWS_NOTEBOOK_OVERRIDES", "NBFLOWS_NOTEBOOK_WORKDIR"):
    assert variable in parameters.source


def displayed_images(notebook) -> int:
  return sum("image/png" in output.get("data", {})
             for cell in code_cells(notebook) for output in cell.outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=name_of)
def test_notebook_runs_and_draws_its_figures(path, tmp_path, monkeypatch,
                                             compilation_cache_dir):
  monkeypatch.setenv("NBFLOWS_NOTEBOOK_STEPS", str(STEPS))
  monkeypatch.setenv("NBFLOWS_NOTEBOOK_CONFIG", "quick")
  monkeypatch.setenv("NBFLOWS_NOTEBOOK_OVERRIDES", OVERRIDES)
  monkeypatch.setenv("NBFLOWS_NOTEBOOK_WORKDIR", str(tmp_path))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
  monkeypatch.setenv("PYTHONPATH", REPO)
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", compilation_cache_dir)
  monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()

  name = name_of(path)
  figures = tmp_path / "figures"
  assert sorted(os.listdir(figures)) == FIGURES[name]
  assert displayed_images(notebook) == len(FIGURES[name])
  from matplotlib import image
  for figure in FIGURES[name]:
    pixels = image.imread(str(figures / figure))
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 32, figure
    assert np.std(pixels[..., :3]) > 0.02, f"{figure} is blank"
  # Every run trained exactly STEPS steps of the overridden config (the
  # parameters reached the trainer).
  reports = glob.glob(str(tmp_path / "*" / "eval.json"))
  assert reports
  for report in reports:
    with open(report) as f:
      assert json.load(f)["steps_trained"] == STEPS, report
    with open(os.path.join(os.path.dirname(report), "config.json")) as f:
      flow = json.load(f)["flow"]
    assert (flow["couplings_per_scale"], flow["num_layers"]) == (1, 2), report
