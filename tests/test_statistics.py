"""The verdict rule and the paired comparisons, on hand-built numbers (no training)."""

import math

import numpy as np
import pytest

from jaxlottery import statistics, verdicts


@pytest.mark.parametrize("noise,verdict", [(0.1, "effect"), (0.5, "inconclusive")])
def test_a_difference_is_an_effect_only_when_its_interval_excludes_zero(noise, verdict):
    j = statistics.judge(0.6, noise, df=10, runs=11, noise="hand-built")
    assert j["verdict"] == verdict
    assert j["interval"] == pytest.approx([0.6 - 2.228 * noise, 0.6 + 2.228 * noise])
    assert (j["difference"], j["stderr"], j["runs"], j["noise"]) == (0.6, noise, 11, "hand-built")


def test_no_difference_needs_an_interval_inside_the_margin():
    assert statistics.judge(0.1, 0.1, 10, 11, "")["verdict"] == "no difference"
    assert statistics.judge(0.1, 0.1, 1, 2, "")["verdict"] == "inconclusive"  # t = 12.7: too wide
    assert statistics.judge(-0.6, 0.1, 10, 11, "")["verdict"] == "effect"
    assert statistics.judge(0.1, 0.1, 10, 11, "", margin=0.2)["verdict"] == "inconclusive"
    assert statistics.judge(0.6, None, None, 1, "")["verdict"] == "no noise estimate"


def test_t_quantiles_are_conservative_between_table_entries():
    assert statistics.t975(1) == 12.706 and statistics.t975(10) == 2.228
    assert statistics.t975(22) == statistics.t975(20)  # the smaller df: a wider interval
    assert statistics.t975(10**6) == 1.960
    with pytest.raises(ValueError):
        statistics.t975(0)


def test_spreads_use_ddof_1_and_have_none_for_one_run():
    s = statistics.spread([0.8, 0.9, 1.0])
    assert s["std"] == pytest.approx(0.1) and s["stderr"] == pytest.approx(0.1 / math.sqrt(3))
    assert statistics.spread([0.8]) == {"runs": 1, "mean": 0.8, "std": None, "stderr": None}
    sd, df = statistics.pooled_std([[1.0, 3.0], [2.0, 2.0, 5.0], [7.0]])
    assert df == 3 and sd == pytest.approx(math.sqrt((2 + 6) / 3))
    assert statistics.pooled_std([[1.0]]) == (None, 0)


def _results(accuracy: dict, dense_std=0.004) -> dict:
    """Retrained masks at epoch 1 and density 0.2: {(method, k): [[acc per run] per seed]}."""
    entries = [{"spawn_epoch": 1, "method": m, "k": k, "target_density": 1.0 if m == "dense" else 0.2,
                "seed": s, "test_accuracy": a}
               for (m, k), seeds in accuracy.items() for s, runs in enumerate(seeds) for a in runs]
    rows = [{"spawn_epoch": 1, "method": m, "k": k,
             "target_density": 1.0 if m == "dense" else 0.2,
             "test_accuracy_mean": float(np.mean(sum(seeds, [])))}
            for (m, k), seeds in accuracy.items()]
    return {"retrained_masks": entries, "composition": rows,
            "dense": [{"spawn_epoch": 1, "mean": 0.9, "std": dense_std, "runs": 4}]}


def test_composition_differences_are_paired_by_data_order():
    """The baseline's two siblings per order are averaged, then composed minus baseline per
    order: an offset shared by every mask at one seed (the data order) cancels."""
    res = _results({("baseline", 1): [[0.80, 0.82], [0.70, 0.72]],
                    ("union", 2): [[0.816], [0.718]],
                    ("intersection", 2): [[0.80], [0.71]],
                    ("dense", 1): [[0.90], [0.80]]})
    deltas = {(d["method"], d["reference"]): d
              for d in verdicts.composition_deltas(res) + verdicts.composition_deltas(
                  res, reference="dense")}
    union = deltas["union", "baseline"]
    assert union["delta_points"] == pytest.approx(0.7)  # (+0.6, +0.8): seed 1 is 10 points lower
    assert union["runs"] == 2 and union["df"] == 2  # pooled over the 2 cells at t = 1, 20%
    # pooled spread of (+0.6, +0.8) and (-1.0, 0.0): sqrt((0.02 + 0.5) / 2) points, / sqrt(2)
    assert union["stderr_points"] == pytest.approx(math.sqrt(0.26) / math.sqrt(2))
    assert union["verdict"] == "inconclusive" and "pooled over the 2 cells of density 20.0%" in union["noise"]
    assert deltas["union", "dense"]["delta_points"] == pytest.approx(-8.3)
    assert deltas["union", "dense"]["verdict"] == "effect"
    line = verdicts.composition_verdict(res)
    assert "union - baseline: mean +0.70" in line and "union - dense: mean -8.30" in line


def test_one_order_takes_its_noise_from_the_dense_siblings():
    res = _results({("baseline", 1): [[0.80, 0.82]], ("union", 2): [[0.822]]})
    (union,) = verdicts.composition_deltas(res)
    # sigma = 0.4 points from 4 dense siblings (df 3); the baseline averages 2 runs.
    assert union["stderr_points"] == pytest.approx(0.4 * math.sqrt(1 + 1 / 2))
    assert union["df"] == 3 and union["runs"] == 1
    assert union["verdict"] == "inconclusive" and "4 dense siblings" in union["noise"]
    quiet = verdicts.composition_deltas(_results({("baseline", 1): [[0.80, 0.82]],
                                                  ("union", 2): [[0.822]]}, dense_std=0.0005))
    assert quiet[0]["verdict"] == "effect"


def test_imp_and_connectivity_readings_carry_intervals():
    res = {"dense": [{"spawn_epoch": 1, "std": 0.002, "runs": 3}],
           "imp": [{"chain": c, "level": 1, "target_density": 0.8, "spawn_epoch": 1,
                    "test_accuracy_mean": a, "test_accuracy_std": s, "runs": n}
                   for c, a, s, n in (("imp", 0.80, None, 1), ("union", 0.83, 0.01, 2))]}
    (d,) = verdicts.imp_deltas(res)
    assert d["delta_points"] == pytest.approx(3.0)
    assert d["stderr_points"] == pytest.approx(math.sqrt(1.0**2 / 2 + 0.2**2))
    assert d["df"] == 1 and d["verdict"] == "inconclusive"  # t(1) = 12.7
    assert "union: its 2 runs" in d["noise"] and "imp: one run" in d["noise"]
    rows = [{"spawn_epoch": 0, "bn": "recompute", "barrier": b, "pair": [i, i + 1]}
            for i, b in enumerate((0.005, 0.006, 0.004))]
    res = {"connectivity": rows, "consistency": [{"spawn_epoch": 0, "density": 0.1,
                                                  "iou_mean": 0.3, "layer_matched_chance_iou": 0.1}]}
    (row,) = verdicts.connectivity_table(res)
    assert row["reading"] == "stable" and row["ci_high"] < 2.0 and row["pairs"] == 3
    assert row["barrier_std"] == pytest.approx(0.1)
