"""The benchmarks run and report what they promise (at tiny sizes, on CPU)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ENV, REPO


@pytest.mark.slow
def test_accelerator_benchmark_quick_mode(tmp_path):
    """The one-call device benchmark at tiny sizes: every section, the table and the projection."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "accelerator.py"),
                           "--quick", f"--out={tmp_path}"], env=ENV, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "accelerator.json").read_text())
    assert res["environment"]["backend"] == "cpu" and res["environment"]["versions"]["jax"]
    ways = {(r["mode"], r["strategy"], r["k"]) for r in res["training"]}
    # Every way of training the stack at the first stack size; later ones measured or listed.
    assert {("step", "vmap", 2), ("step", "loop", 2), ("step", "separate", 2),
            ("program", "vmap", 2), ("program", "loop", 2), ("program", "map", 2)} <= ways
    assert ("step", "vmap", 1) in ways or "step vmap k=1" in res["skipped"]
    for r in res["training"]:
        assert r["images_per_s"] > 0 and r["compile_s"] >= 0 and r["tflops"] > 0
    assert res["flops_per_image"] > 0 and res["matmul_tflops"] > 0
    assert {r["batches_on_device"] for r in res["evaluation"]} == {False, True}
    assert res["checkpoint"]["blocking_s"] <= res["checkpoint"]["total_s"]
    for label in ("defaults", "fastest"):
        p = res["projection"][label]
        assert p["total_h"] >= p["train_h"] > 0 and 0 <= p["outside_training"] < 1
        assert set(p["stages"]) >= {"shared", "siblings", "independent", "retrain"}
    table = (tmp_path / "accelerator.md").read_text()
    assert "Projected paper preset" in table and "| step | vmap | 2 |" in table
    assert "Projected paper preset" in proc.stdout


@pytest.mark.slow
def test_accelerator_benchmark_refuses_bad_flags(tmp_path):
    for flag in ("--budget=0", "--ks=0,2", "--steps=1000", "--ks=a"):
        proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "accelerator.py"),
                               "--quick", f"--out={tmp_path}", flag], env=ENV,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
