"""Paired runs: two results of one design compared cell by cell against the reference's noise."""

import copy
import json
import os
import subprocess
import sys

import pytest

from conftest import ENV, REPO
from jaxlottery import paired_runs


def _results(inits=2, **config):
    """A hand-built results.json: two spawn points, one density, the trajectory at two steps
    (siblings and the control), from `inits` initializations whose values differ by 0.01."""
    dense, consistency, trajectory = [], [], []
    for i in range(inits):
        dense += [{"init": i, "spawn_epoch": t, "mean": 0.8 + 0.01 * t + 0.01 * i, "std": 0.004,
                   "runs": 4} for t in (0, 1)]
        consistency += [{"init": i, "spawn_epoch": t, "density": 0.2,
                         "kappa_mean": 0.6 + 0.1 * t + 0.01 * i, "kappa_std": 0.03,
                         "iou_mean": 0.7, "iou_std": 0.02, "pairs": 6,
                         "kappa_independent_inits": 0.01, "kappa_with_spawn_mask": 0.5,
                         "pruned_iou_mean": 0.9} for t in (0, 1)]
        trajectory += [{"init": i, "spawn_epoch": 0, "density": 0.2, "step": s,
                        "kappa_mean": 0.9 + 0.01 * i, "kappa_std": 0.01, "pairs": 6,
                        "test_accuracy_mean": 0.5, "control": control}
                       for s in (10, 20) for control in (None, "independent_inits")]
    return {"config": {"seed": 0, "k": 4, "compute_dtype": "float32", "inits": inits, **config},
            "dense": dense, "consistency": consistency, "trajectory": trajectory}


def test_identical_runs_are_inside_the_noise_everywhere():
    a, b = _results(), _results(compute_dtype="bfloat16")
    c = paired_runs.compare(a, b)
    assert c["setting"] == {"compute_dtype": ("float32", "bfloat16")}
    assert all(r["delta"] == 0 for r in c["judged"])
    # per init: 2 accuracy cells, 2 x 5 consistency cells, 2 steps x 2 (siblings, control) x 2
    assert len(c["judged"]) == 2 * (2 + 10 + 8)
    rerun = [r for r in c["judged"] if r["noise_basis"] == "rerun"]
    dense = [r["noise"] for r in rerun if r["section"] == "dense"]
    assert dense == pytest.approx([0.01] * 4)  # the two initializations differ by 0.01
    # statistics the two inits agree on have no rerun noise: the within-run error where there
    # is a spread (IoU), else none (they are then not judged)
    iou = [r for r in c["judged"] if r["statistic"] == "iou_mean"]
    assert {r["noise_basis"] for r in iou} == {"within"}
    assert all(r["inside"] is None for r in c["judged"] if r["statistic"] == "pruned_iou_mean")
    assert paired_runs.verdict(c).startswith("every judged statistic (")


def test_a_difference_beyond_twice_the_rerun_noise_is_outside_and_named():
    a, b = _results(), _results()
    b["consistency"][1]["kappa_mean"] += 0.025  # init 0, t = 1: 2.5 x the inits' 0.01
    b["consistency"][0]["kappa_mean"] -= 0.015  # init 0, t = 0: inside
    b["dense"][0]["mean"] += 0.005
    c = paired_runs.compare(a, b)
    kappa = {(r["init"], r["spawn_epoch"]): r for r in c["judged"]
             if r["section"] == "consistency" and r["statistic"] == "kappa_mean"}
    assert kappa[0, 1]["z"] == pytest.approx(2.5) and kappa[0, 1]["inside"] is False
    assert kappa[0, 0]["z"] == pytest.approx(-1.5) and kappa[0, 0]["inside"] is True
    acc = [r for r in c["judged"] if r["section"] == "dense" and r["init"] == 0
           and r["spawn_epoch"] == 0][0]
    assert acc["noise"] == pytest.approx(0.01) and acc["z"] == pytest.approx(0.5)
    s = [s for s in c["summary"] if s["statistic"] == "kappa_mean"
         and s["section"] == "consistency"][0]
    assert s["cells"] == 4 and s["inside"] == 3 and s["max_abs_z"] == pytest.approx(2.5)
    assert s["mean_delta"] == pytest.approx(0.0025) and s["ci_low"] < 0.0025 < s["ci_high"]
    v = paired_runs.verdict(c)
    assert v.startswith("1 of ") and "consistency kappa_mean, 2.5 x" in v


def test_one_initialization_falls_back_to_within_run_errors():
    a, b = _results(inits=1), _results(inits=1)
    b["dense"][1]["mean"] += 0.005  # 2.5 standard errors of 0.004 / 2
    c = paired_runs.compare(a, b)
    acc = [r for r in c["judged"] if r["section"] == "dense"]
    assert {r["noise_basis"] for r in acc} == {"within"} and [r["inside"] for r in acc] == [True, False]
    assert "within-run standard errors" in paired_runs.verdict(c)


def test_the_comparison_is_written_as_json_table_and_figure(tmp_path):
    a, b = _results(), _results(compute_dtype="bfloat16")
    b["dense"][1]["mean"] += 0.05
    paired_runs.write(str(tmp_path), paired_runs.compare(a, b))
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert [r["inside"] for r in saved["judged"] if r["section"] == "dense"] == [True, False, True, True]
    assert (tmp_path / "comparison.csv").read_text().count("\n") == len(saved["judged"]) + 1
    assert (tmp_path / "comparison.png").stat().st_size > 1000


def test_cells_in_one_run_only_are_left_out():
    a, b = _results(), _results()
    b["consistency"] = b["consistency"][:1]
    c = paired_runs.compare(a, b)
    assert {(r["init"], r["spawn_epoch"]) for r in c["judged"] if r["section"] == "consistency"} == {(0, 0)}


@pytest.mark.parametrize("field,value", [("seed", 1), ("k", 3), ("epochs", 5)])
def test_runs_of_different_designs_are_refused(field, value):
    a, b = _results(), copy.deepcopy(_results())
    b["config"][field] = value
    with pytest.raises(paired_runs.IncomparableRuns, match=field):
        paired_runs.compare(a, b)


@pytest.mark.slow  # five subprocesses
@pytest.mark.parametrize("vary", ["seed=3", "compute_dtype", "compute_dtype=float16",
                                  "compute_dtype=float32", "strategy=bogus"])
def test_bad_vary_fails_with_one_line(tmp_path, vary):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "paired.py"),
                           "--preset=smoke", f"--vary={vary}", f"--workdir={tmp_path}"],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "--" in proc.stderr
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_paired_smoke_runs_write_their_comparison(tmp_path):
    out = tmp_path / "out"
    small = ["--epochs=2", "--lr_drop_epochs=1", "--spawn_epochs=0", "--retrain_spawn_epochs=",
             "--imp_levels=0", "--lmc_pairs=0", "--random_baselines=", "--independent_inits=0",
             "--k=2", "--k_values=2", "--baseline_siblings=1", "--densities=0.5", "--inits=2"]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "paired.py"),
                           "--preset=smoke", "--no_progress", f"--workdir={tmp_path}",
                           f"--out={out}", *small], env=ENV, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = json.loads((out / "comparison.json").read_text())
    assert c["setting"] == {"compute_dtype": ["float32", "bfloat16"]}
    assert c["runs"]["A"]["run_id"] != c["runs"]["B"]["run_id"]
    assert c["judged"] and all(r["noise"] is None or r["noise"] > 0 for r in c["judged"])
    assert "rerun" in {r["noise_basis"] for r in c["judged"]}  # two inits: a rerun's noise
    assert c["verdict"] in proc.stdout
    assert (out / "comparison.csv").read_text().startswith("section,statistic")
