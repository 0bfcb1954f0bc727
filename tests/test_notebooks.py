"""Both notebooks run top to bottom on CPU with tiny parameters, and are stored without outputs."""

import json
import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from jaxlottery import report

from conftest import ENV, SMOKE, comparable

pytestmark = pytest.mark.slow  # every notebook runs the pipeline

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


def execute(name: str, parameters: str, tmp_path) -> nbformat.NotebookNode:
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    cells[0].source = parameters
    for var in ("JAX_DISABLE_MOST_OPTIMIZATIONS", "JAX_COMPILATION_CACHE_DIR",
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"):
        os.environ.setdefault(var, ENV[var])  # the kernel inherits them: the tests' XLA cache
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def text_of(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") or str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


@pytest.mark.parametrize("name", ["masks_tour.ipynb", "reproduce_paper.ipynb"])
def test_notebooks_are_stored_without_outputs(name):
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in nb.cells if c.cell_type == "code")


def test_masks_tour_runs(smoke, tmp_path):
    _, rundir, _, _ = smoke
    nb = execute("masks_tour.ipynb", f"MODEL = 'cifar_resnet_8_4'\nK = 3\nDENSITY = 0.2\nRUN_DIR = {rundir!r}",
                 tmp_path)
    text = text_of(nb)
    assert "prunable weights kept" in text and "layer-matched chance" in text
    assert "round trip exact: True" in text and "same under jit: True" in text
    assert "wrong tree:" in text
    assert "uint8 mask: mask leaf" in text and "masks.convert(mask)" in text
    assert "converted, same mask: True" in text and "NNX state pruned: 128 of 640 kept" in text
    assert f"{rundir}: {SMOKE.k} sibling masks spawned at epoch {SMOKE.spawn_epochs[-1]}" in text


def test_reproduce_paper_resumes_a_run_and_shows_every_result(smoke, tmp_path):
    """The Colab scenario: a runtime restarted after the training stages finished. The notebook
    resumes the smoke run from its work dir (the stages' outputs, not results.json), shows the
    verdicts and every figure; run again, it finds the finished run."""
    workdir, rundir, results, _ = smoke
    runs = tmp_path / "runs"
    shutil.copytree(workdir, runs, ignore=shutil.ignore_patterns("results.json", "report.md", "*.png"))
    params = (f"PRESET = 'smoke'\nOVERRIDES = {{}}\nWORKDIR = {str(runs)!r}\nDATA_DIR = None\n"
              "BREAK_LOCK = True")  # the field for a runtime lost mid-run
    nb = execute("reproduce_paper.ipynb", params, tmp_path)
    text = text_of(nb)
    assert f"data dir: {tmp_path / 'jaxlottery_data'}" in text  # beside the runs (on Drive)
    for line in ("Consistency:", "Composability:", "Mode connectivity:", "Baselines:", "IMP:"):
        assert line in text
    assert f"{SMOKE.k} siblings spawned at epoch {SMOKE.spawn_epochs[0]}: mean pairwise IoU" in text
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert figures == len(report.figures(results)) == 7  # the paper's 3, trajectory, connectivity,
    # baselines, IMP
    with open(runs / SMOKE.run_id() / "results.json") as f:
        resumed = json.load(f)
    # the notebook keeps the data beside the runs: data_dir (not hashed) differs, nothing else
    assert resumed["config"].pop("data_dir") == str(tmp_path / "jaxlottery_data")
    assert comparable(resumed) == comparable(dict(results, config={
        k: v for k, v in results["config"].items() if k != "data_dir"}))
    # A restarted runtime finds the finished run in the work dir.
    again = text_of(execute("reproduce_paper.ipynb", params, tmp_path))
    assert "all stages done" in again
