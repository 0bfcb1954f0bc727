"""The readings of the analyses beyond the paper, on hand-built results (no training)."""

import pytest

from jaxlottery import paths, report
from jaxlottery.reading import baselines, composition, connectivity, consistency, iterative


def results_with(barriers: dict, ious: dict) -> dict:
    """Connectivity rows (one pair, BN recomputed) and consistency rows at 10.7% per epoch."""
    return {
        "connectivity": [{"spawn_epoch": t, "bn": "recompute", "barrier": b, "pair": [0, 1],
                          "alphas": [0.0, 1.0], "errors": [0.1, 0.1]} for t, b in barriers.items()],
        "consistency": [{"spawn_epoch": t, "density": 0.8**10, "iou_mean": iou,
                         "layer_matched_chance_iou": 0.1} for t, iou in ious.items()],
        "composition": [{"spawn_epoch": 1, "target_density": 0.2, "method": "baseline", "k": 1,
                         "test_accuracy_mean": 0.80, "test_accuracy_std": 0.001, "runs": 2}],
        "dense": [{"spawn_epoch": 1, "mean": 0.9, "std": 0.005, "runs": 3}],
    }


def test_connectivity_reading_follows_the_numbers():
    falling = connectivity.connectivity_verdict(results_with({0: 0.10, 1: 0.03, 3: 0.01},
                                                             {0: 0.3, 1: 0.5, 3: 0.7}))
    assert "10.0 -> 1.0 points" in falling and "stable, under 2 points, from epoch 3" in falling
    assert "fall as mask consistency rises" in falling
    flat = connectivity.connectivity_verdict(results_with({0: 0.10, 1: 0.12, 3: 0.11},
                                                          {0: 0.3, 1: 0.3001, 3: 0.3}))
    assert "never under 2 points" in flat and "fall as" not in flat
    table = connectivity.connectivity_table(results_with({0: 0.10, 1: 0.01}, {0: 0.3, 1: 0.5}))
    assert [(r["spawn_epoch"], r["stable"]) for r in table] == [(0, False), (1, True)]


def test_baselines_reading_compares_with_the_rewound_one_shot_mask():
    res = results_with({}, {})
    res["random_baselines"] = [
        {"spawn_epoch": 1, "target_density": 0.2, "method": m, "k": 1, "test_accuracy_mean": acc,
         "test_accuracy_std": None, "runs": 1} for m, acc in (("random", 0.70), ("baseline_reinit", 0.799))]
    line = baselines.baselines_verdict(res)
    assert "random -10.00 at 20.0%" in line and "baseline_reinit -0.10 at 20.0%" in line
    assert "1 of 2 cells fall below them" in line and "Holm-corrected" in line
    # one mask per method: the dense siblings' spread stands in, and the reading says so
    assert "dense siblings" in line and "a lower bound" in line
    # no per-layer rows in these hand-built results: no per-layer figure
    assert report.figures(res) == [f for f in paths.FIGURES.values()
                                   if f != paths.FIGURES["layers"]] + ["baselines.png"]


def test_imp_reading_is_relative_to_single_network_imp():
    res = {"imp": [{"chain": c, "level": 1, "target_density": 0.8, "test_accuracy_mean": a}
                   for c, a in (("imp", 0.80), ("oneshot", 0.80), ("union", 0.81))]}
    line = iterative.imp_verdict(res)
    assert "one-shot - IMP: mean +0.00" in line and "parallel IMP (union) - IMP: mean +1.00" in line


def test_figures_draw_every_registered_method_with_its_style(tmp_path, monkeypatch):
    """The accuracy figure shows each composition method present, styled by the registry."""
    from jaxlottery import masks

    monkeypatch.setitem(masks.COMPOSITIONS, "two", masks.Composition("two", lambda k: 2,
                                                                     label="kept in 2+"))
    rows = [{"spawn_epoch": 1, "method": m, "k": k, "target_density": d,
             "test_accuracy_mean": 0.8, "test_accuracy_std": 0.01}
            for m, k in (("union", 2), ("two", 2), ("baseline", 1)) for d in (0.2, 0.1)]
    res = {"composition": rows, "dense": [{"spawn_epoch": 1, "mean": 0.9}]}
    labels = composition.figure_accuracy(res, str(tmp_path / "a.png"))
    assert {"union", "kept in 2+", "baseline", "dense"} <= set(labels)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def consistency_results(kappa: dict, wd: float, epochs: int = 160, inits: int = 1,
                        drops=(80, 120)) -> dict:
    """Consistency rows at 10.7% per (init, spawn epoch) with the given kappas, and the config
    and dataset the imprint is computed from (CIFAR-10's 50,000 images)."""
    rows = [{"init": i, "spawn_epoch": t, "density": 0.8**10, "kappa_mean": k + 0.01 * i,
             "kappa_std": 0.01, "iou_mean": 0.2 + k / 2, "layer_matched_chance_iou": 0.12,
             "chance_iou": 0.06, "kappa_with_spawn_mask": k / 2, "iou_with_spawn_mask": 0.1,
             "kappa_independent_inits": 0.002, "pairs": 45}
            for i in range(inits) for t, k in kappa.items()]
    cfg = {"epochs": epochs, "lr_drop_epochs": list(drops), "spawn_epochs": sorted(kappa),
           "weight_decay": wd, "lr": 0.1, "momentum": 0.9, "batch_size": 128,
           "lr_drop_factor": 0.1}
    res = {"consistency": rows, "config": cfg, "dataset": {"train": 50_000}}
    if inits > 1:
        res["consistency_over_inits"] = consistency.over_inits(rows)
    return res


def test_claim_1_reading_says_whether_the_run_can_test_it():
    # the paper's recipe keeps 0.04 of W_0: it can test claim 1, and kappa 0.05 at t = 0 is close
    # to chance; kappa 0.6 is well above it
    near = consistency.consistency_verdict(consistency_results({0: 0.05, 5: 0.6}, 1e-4))
    assert "keeps 0.04 of each weight's initial value" in near and "can test claim 1" in near
    assert "close to chance (slight agreement, kappa under 0.2), as the paper says" in near
    assert "(rises with the spawn point)" in near
    far = consistency.consistency_verdict(consistency_results({0: 0.6, 5: 0.8}, 1e-4))
    assert "well above chance (kappa 0.2 or more), against the paper" in far
    # 12 short epochs keep almost all of it: no claim either way
    short = consistency.consistency_verdict(consistency_results({0: 0.05, 5: 0.6}, 1e-4,
                                                                epochs=12, drops=(6, 9)))
    assert "cannot test claim 1" in short and "as the paper says" not in short
    # a spawn point at or after the first drop is flagged
    assert "Spawn point(s) 6 lie at or after the first learning-rate drop" in \
        consistency.consistency_verdict(consistency_results({0: 0.1, 6: 0.6}, 1e-4, epochs=12,
                                                            drops=(6, 9)))


def test_claim_1_over_several_inits_reads_their_interval():
    res = consistency_results({0: 0.05, 5: 0.6}, 1e-4, inits=3)
    over = res["consistency_over_inits"]
    at0 = next(r for r in over if r["spawn_epoch"] == 0)
    assert at0["inits"] == 3 and at0["kappa_mean"] == pytest.approx(0.06)
    assert at0["kappa_std_over_inits"] == pytest.approx(0.01)
    half = 4.302653 * 0.01 / 3**0.5  # t(2 df) x stderr over 3 inits
    assert (at0["kappa_ci_low"], at0["kappa_ci_high"]) == pytest.approx((0.06 - half, 0.06 + half))
    line = consistency.consistency_verdict(res)
    assert "(95% interval over 3 inits +0.035..+0.085)" in line


def test_an_older_results_file_is_read_by_iou_with_its_imprint_computed():
    res = consistency_results({0: 0.3, 2: 0.5}, 1e-4, epochs=8, drops=(4, 6))
    for r in res["consistency"]:
        for key in ("kappa_mean", "kappa_std", "kappa_with_spawn_mask", "kappa_independent_inits",
                    "init"):
            r.pop(key)
    res["dataset"]["train"] = 60_000
    line = consistency.consistency_verdict(res)
    assert "sibling IoU 0.350" in line and "keeps 0.82 of each weight's initial value" in line
    assert consistency.imprint_of(res)["retained"] == pytest.approx(0.8204, abs=1e-4)


def test_the_imprint_sweep_summarizes_t0_rows_and_draws_them(tmp_path):
    from jaxlottery import imprint_sweep

    def fake(wd, retained, kappa):
        res = consistency_results({0: kappa, 1: 0.9}, wd, inits=2)
        return dict(res, run_id=f"r{wd}", imprint={"retained": retained},
                    dense=[{"init": i, "spawn_epoch": 0, "mean": 0.8 - wd} for i in (0, 1)]
                    + [{"init": 0, "spawn_epoch": None, "control": "independent_inits",
                        "mean": 0.5}],
                    timing={"train_images": 1000, "seconds_per_stage": {"siblings": 2.0}},
                    environment={})

    summary = imprint_sweep.summarize([fake(1e-4, 0.98, 0.6), fake(1e-2, 0.1, 0.1)])
    assert [(r["weight_decay"], r["init"], r["kappa"]) for r in summary["rows"]] == \
        [(1e-4, 0, 0.6), (1e-4, 1, pytest.approx(0.61)), (1e-2, 0, 0.1), (1e-2, 1, 0.11)]
    assert all(r["test_accuracy"] == pytest.approx(0.8 - r["weight_decay"]) for r in summary["rows"])
    means = {m["weight_decay"]: m for m in summary["means"] if m["density"] == 0.8**10}
    assert means[1e-4]["kappa"] == pytest.approx(0.605) and means[1e-4]["inits"] == 2
    half = 12.706205 * 0.01 / 2  # t(1 df) x the stderr of 0.60 and 0.61
    assert (means[1e-4]["kappa_ci_low"], means[1e-4]["kappa_ci_high"]) == pytest.approx(
        (0.605 - half, 0.605 + half))
    assert means[1e-2]["kappa_control"] == pytest.approx(0.002)
    assert summary["runs"][0]["training_seconds"] == 2.0
    imprint_sweep.write(str(tmp_path), summary)
    assert (tmp_path / imprint_sweep.FIGURE).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / imprint_sweep.TABLE).read_text().startswith("weight_decay,retained,init")


def test_the_reading_wing_imports_no_training_code(tmp_path):
    """Redrawing a report from a results.json and rendering a reading load no training code,
    no checkpointing (orbax) and no model (flax, optax): a machine that only reads results
    needs jax, numpy and matplotlib."""
    import os
    import shutil
    import subprocess
    import sys

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copy(os.path.join(here, "docs", "quick_fashion_mnist", "results.json"), tmp_path)
    engine = ("train", "siblings", "stages", "pipeline", "experiment", "retraining", "checkpoint",
              "models", "execution", "member_conv", "data", "datasets", "sharding", "imp",
              "connectivity", "consistency", "estimate", "results")
    code = ("import sys; from jaxlottery import quote, report\n"
            f"assert report.main([{str(tmp_path)!r}]) == 0\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('orbax', 'flax', 'optax') or "
            f"(m.startswith('jaxlottery.') and m.split('.')[1] in {engine!r})]\n"
            "print(sorted(bad)); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, MPLBACKEND="Agg"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "report.md").exists()
