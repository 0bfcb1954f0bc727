"""The readings of the analyses beyond the paper, on hand-built results (no training)."""

from jaxlottery import paths, report, verdicts


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
    falling = verdicts.connectivity_verdict(results_with({0: 0.10, 1: 0.03, 3: 0.01},
                                                       {0: 0.3, 1: 0.5, 3: 0.7}))
    assert "10.0 -> 1.0 points" in falling and "stable, under 2 points, from epoch 3" in falling
    assert "fall as mask consistency rises" in falling
    flat = verdicts.connectivity_verdict(results_with({0: 0.10, 1: 0.12, 3: 0.11},
                                                    {0: 0.3, 1: 0.3001, 3: 0.3}))
    assert "never under 2 points" in flat and "fall as" not in flat
    table = verdicts.connectivity_table(results_with({0: 0.10, 1: 0.01}, {0: 0.3, 1: 0.5}))
    assert [(r["spawn_epoch"], r["stable"]) for r in table] == [(0, False), (1, True)]


def test_baselines_reading_compares_with_the_rewound_one_shot_mask():
    res = results_with({}, {})
    res["random_baselines"] = [
        {"spawn_epoch": 1, "target_density": 0.2, "method": m, "k": 1, "test_accuracy_mean": acc,
         "test_accuracy_std": None, "runs": 1} for m, acc in (("random", 0.70), ("baseline_reinit", 0.799))]
    line = verdicts.baselines_verdict(res)
    assert "random -10.00 at 20.0%" in line and "baseline_reinit -0.10 at 20.0%" in line
    assert "1 of 2 cells fall below it" in line and "both" not in line
    # no per-layer rows in these hand-built results: no per-layer figure
    assert report.figures(res) == [f for f in paths.FIGURES.values()
                                   if f != paths.FIGURES["layers"]] + ["baselines.png"]


def test_imp_reading_is_relative_to_single_network_imp():
    res = {"imp": [{"chain": c, "level": 1, "target_density": 0.8, "test_accuracy_mean": a}
                   for c, a in (("imp", 0.80), ("oneshot", 0.80), ("union", 0.81))]}
    line = verdicts.imp_verdict(res)
    assert "one-shot - IMP: mean +0.00" in line and "parallel IMP (union) - IMP: mean +1.00" in line


def test_figures_draw_every_registered_method_with_its_style(tmp_path, monkeypatch):
    """The accuracy figure shows each composition method present, styled by the registry."""
    from jaxlottery import figures, masks

    monkeypatch.setitem(masks.COMPOSITIONS, "two", masks.Composition("two", lambda k: 2,
                                                                     label="kept in 2+"))
    rows = [{"spawn_epoch": 1, "method": m, "k": k, "target_density": d,
             "test_accuracy_mean": 0.8, "test_accuracy_std": 0.01}
            for m, k in (("union", 2), ("two", 2), ("baseline", 1)) for d in (0.2, 0.1)]
    res = {"composition": rows, "dense": [{"spawn_epoch": 1, "mean": 0.9}]}
    labels = figures.figure_accuracy(res, str(tmp_path / "a.png"))
    assert {"union", "kept in 2+", "baseline", "dense"} <= set(labels)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
