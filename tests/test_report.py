"""The readings of the analyses beyond the paper, on hand-built results (no training)."""

from jaxlottery import report


def results_with(barriers: dict, ious: dict) -> dict:
    """Connectivity rows (one pair, BN recomputed) and consistency rows at 10.7% per epoch."""
    return {
        "connectivity": [{"spawn_epoch": t, "bn": "recompute", "barrier": b, "pair": [0, 1],
                          "alphas": [0.0, 1.0], "errors": [0.1, 0.1]} for t, b in barriers.items()],
        "consistency": [{"spawn_epoch": t, "density": 0.8**10, "iou_mean": iou,
                         "layer_matched_chance_iou": 0.1} for t, iou in ious.items()],
        "composition": [{"spawn_epoch": 1, "target_density": 0.2, "method": "baseline", "k": 1,
                         "test_accuracy_mean": 0.80, "test_accuracy_std": 0.001, "n": 2}],
    }


def test_connectivity_reading_follows_the_numbers():
    falling = report.connectivity_verdict(results_with({0: 0.10, 1: 0.03, 3: 0.01},
                                                       {0: 0.3, 1: 0.5, 3: 0.7}))
    assert "10.0 -> 1.0 points" in falling and "stable, under 2 points, from epoch 3" in falling
    assert "fall as mask consistency rises" in falling
    flat = report.connectivity_verdict(results_with({0: 0.10, 1: 0.12, 3: 0.11},
                                                    {0: 0.3, 1: 0.3001, 3: 0.3}))
    assert "never under 2 points" in flat and "fall as" not in flat
    table = report.connectivity_table(results_with({0: 0.10, 1: 0.01}, {0: 0.3, 1: 0.5}))
    assert [(r["spawn_epoch"], r["stable"]) for r in table] == [(0, False), (1, True)]


def test_baselines_reading_compares_with_the_rewound_one_shot_mask():
    res = results_with({}, {})
    res["random_baselines"] = [
        {"spawn_epoch": 1, "target_density": 0.2, "method": m, "k": 1, "test_accuracy_mean": acc,
         "test_accuracy_std": 0.0, "n": 1} for m, acc in (("random", 0.70), ("baseline_reinit", 0.799))]
    line = report.baselines_verdict(res)
    assert "random -10.00 at 20.0%" in line and "baseline_reinit -0.10 at 20.0%" in line
    assert "1 of 2 cells fall below it" in line and "both" not in line
    assert report.figures(res) == list(report.FIGURES) + ["baselines.png"]


def test_imp_reading_is_relative_to_single_network_imp():
    res = {"imp": [{"chain": c, "level": 1, "target_density": 0.8, "test_accuracy_mean": a}
                   for c, a in (("imp", 0.80), ("oneshot", 0.80), ("union", 0.81))]}
    line = report.imp_verdict(res)
    assert "one-shot - IMP: mean +0.00" in line and "parallel IMP (union) - IMP: mean +1.00" in line
