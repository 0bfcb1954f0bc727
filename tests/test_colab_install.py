"""The notebooks' install cell: a form field, and a guard that never leaves a Colab runtime
without its accelerator. Run here with pip and the jax probe replaced."""

import json
import os
import subprocess

import pytest

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


def _cell(name: str) -> str:
    with open(os.path.join(NOTEBOOKS, name)) as f:
        cells = json.load(f)["cells"]
    found = ["".join(c["source"]) for c in cells if "@title Install jaxlottery" in "".join(c["source"])]
    assert len(found) == 1, f"{name}: one install cell"
    return found[0]


def test_both_notebooks_share_the_install_cell_and_name_todays_runtimes():
    assert _cell("reproduce_paper.ipynb") == _cell("masks_tour.ipynb")
    assert 'SOURCE = ""  # @param {type:"string"}' in _cell("masks_tour.ipynb")
    with open(os.path.join(NOTEBOOKS, "reproduce_paper.ipynb")) as f:
        meta = json.load(f)["metadata"]
    assert meta["accelerator"] == "TPU" and meta["colab"]["gpuType"] == "V5E1"  # TPU v5e-1
    with open(os.path.join(NOTEBOOKS, "masks_tour.ipynb")) as f:
        meta = json.load(f)["metadata"]
    assert meta["accelerator"] == "GPU" and meta["colab"]["gpuType"] == "T4"


class _Runtime:
    """subprocess.run of the cell: the jax probe answers `backends` in turn; pip answers `pip_rc`."""

    def __init__(self, backends, pip_rc=0, pip_err=""):
        self.backends, self.pip_rc, self.pip_err = list(backends), pip_rc, pip_err
        self.pip_args, self.constraints = None, None

    def __call__(self, args, **kw):
        if args[1:3] == ["-m", "pip"]:
            self.pip_args = args
            with open(args[args.index("-c") + 1]) as f:
                self.constraints = f.read()
            return subprocess.CompletedProcess(args, self.pip_rc, "", self.pip_err)
        backend = self.backends.pop(0)
        return subprocess.CompletedProcess(args, 0 if backend else 1, f"{backend or ''}\n", "")


def _run(monkeypatch, runtime, source=None, installed=True):
    import importlib.util

    monkeypatch.setattr(subprocess, "run", runtime)
    if source is None:
        monkeypatch.delenv("JAXLOTTERY_SOURCE", raising=False)
    else:
        monkeypatch.setenv("JAXLOTTERY_SOURCE", source)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: (real(n, *a) if installed else None) if n == "jaxlottery"
                        else real(n, *a))
    exec(compile(_cell("reproduce_paper.ipynb"), "install cell", "exec"), {})


def test_installed_and_no_source_does_nothing(monkeypatch):
    runtime = _Runtime([])
    _run(monkeypatch, runtime)
    assert runtime.pip_args is None


def test_the_runtimes_jax_is_pinned_and_kept(monkeypatch, capsys):
    import importlib.metadata

    runtime = _Runtime(["gpu", "gpu"])
    _run(monkeypatch, runtime, source="git+https://example.org/jaxlottery")
    assert runtime.pip_args[-1] == "git+https://example.org/jaxlottery"
    assert f"jax=={importlib.metadata.version('jax')}\n" in runtime.constraints
    assert f"jaxlib=={importlib.metadata.version('jaxlib')}\n" in runtime.constraints
    assert "JAX backend: gpu" in capsys.readouterr().out


def test_an_install_that_loses_the_accelerator_stops_with_one_line(monkeypatch):
    with pytest.raises(SystemExit, match=r"^after the install JAX runs on cpu, not on this "
                                         r"runtime's tpu: Runtime > Disconnect") as e:
        _run(monkeypatch, _Runtime(["tpu", "cpu"]), source="jaxlottery")
    assert "\n" not in str(e.value)


def test_bad_sources_and_pip_failures_say_what_to_do(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match="fill in SOURCE"):
        _run(monkeypatch, _Runtime([]), installed=False)
    with pytest.raises(SystemExit, match="no such file or folder"):
        _run(monkeypatch, _Runtime([]), source=str(tmp_path / "missing.whl"))
    err = "ERROR: Cannot install jaxlottery because these package versions have conflicting dependencies."
    with pytest.raises(SystemExit, match=r"pip could not install jaxlottery beside this runtime's "
                                         r"jax==.* and jaxlib==.*: ERROR: Cannot install"):
        _run(monkeypatch, _Runtime(["tpu"], pip_rc=1, pip_err=f"noise\n{err}"), source="jaxlottery")
