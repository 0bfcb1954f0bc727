"""The study end to end on the smoke preset: every stage's outputs and caching (kill and
resume: tests/test_reliability.py)."""

import os


from jaxlottery import experiment, siblings

from conftest import SMOKE, comparable


def test_smoke_run_writes_every_stage(smoke):
    workdir, rundir, results, out = smoke
    for key in ("config", "dense", "consistency", "composition", "timing", "environment"):
        assert key in results
    assert results["dataset"]["synthetic"] and results["config"]["k"] == 3
    files = set(os.listdir(rundir))
    assert {"config.json", "results.json", "report.md", "dense.csv", "consistency.csv",
            "composition.csv", "consistency_layers.csv", "overlap_vs_spawn.png",
            "accuracy_vs_density.png", "layer_overlap.png"} <= files
    for png in ("overlap_vs_spawn.png", "accuracy_vs_density.png", "layer_overlap.png"):
        with open(os.path.join(rundir, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.exists(os.path.join(rundir, "shared", "spawn_e0.npz"))
    assert os.path.exists(os.path.join(rundir, "shared", "spawn_e1.npz"))
    for t in (0, 1):
        assert os.path.exists(os.path.join(rundir, "siblings", f"e{t}", "final.npz"))
    # 2 spawn points x 2 densities, every pair of 3 siblings.
    rows = results["consistency"]
    assert len(rows) == 4 and all(r["pairs"] == 3 for r in rows)
    for r in rows:
        assert 0 <= r["iou_mean"] <= 1 and r["chance_iou"] < r["layer_matched_chance_iou"] + 1e-6
        assert r["iou_independent_inits"] is not None
    methods = {(r["method"], r["k"]) for r in results["composition"]}
    assert methods == {("union", 2), ("intersection", 2), ("union", 3), ("intersection", 3),
                       ("vote", 3), ("baseline", 1)}
    for r in results["composition"]:
        assert abs(r["achieved_density"] - r["target_density"]) <= 0.001
        assert 0 <= r["test_accuracy_mean"] <= 1
    dense = [r for r in results["dense"] if r["spawn_epoch"] is not None]
    assert len(dense) == 2 and all(len(r["test_accuracy"]) == 3 for r in dense)
    report = open(os.path.join(rundir, "report.md")).read()
    assert report.count("**Verdict:**") == 2 and "synthetic" in report
    assert "Claim 1 (consistency)" in out and "report.md" in out


def test_second_run_skips_every_stage(smoke, monkeypatch):
    workdir, rundir, results, _ = smoke
    assert experiment.run(SMOKE, workdir=str(workdir), progress=False) == results
    # Without results.json the stages' own outputs are reused: nothing trains again.
    os.rename(os.path.join(rundir, "results.json"), os.path.join(rundir, "results.keep"))

    def no_training(*a, **k):
        raise AssertionError("a cached stage trained again")

    monkeypatch.setattr(siblings, "train", no_training)
    try:
        again = experiment.run(SMOKE, workdir=str(workdir), progress=False)
    finally:
        os.replace(os.path.join(rundir, "results.keep"), os.path.join(rundir, "results.json"))
    assert comparable(again) == comparable(results)
