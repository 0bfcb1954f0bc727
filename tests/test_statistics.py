"""The verdict rule, spreads, and the IMP and connectivity readings, on hand-built numbers (no
training); claim 2's model is in test_composability."""

import math

import pytest

from jaxlottery import reading, statistics


@pytest.mark.parametrize("noise,verdict", [(0.1, "effect"), (0.5, "inconclusive")])
def test_a_difference_is_an_effect_only_when_its_interval_excludes_zero(noise, verdict):
    j = statistics.judge(0.6, noise, df=10, runs=11, noise="hand-built")
    assert j["verdict"] == verdict
    assert j["interval"] == pytest.approx([0.6 - 2.228 * noise, 0.6 + 2.228 * noise], abs=1e-3)
    assert (j["difference"], j["stderr"], j["runs"], j["noise"]) == (0.6, noise, 11, "hand-built")


def test_equivalent_needs_an_interval_inside_the_margin():
    assert statistics.judge(0.1, 0.1, 10, 11, "")["verdict"] == "equivalent"
    assert statistics.judge(0.1, 0.1, 1, 2, "")["verdict"] == "inconclusive"  # t = 12.7: too wide
    assert statistics.judge(-0.6, 0.1, 10, 11, "")["verdict"] == "effect"
    assert statistics.judge(0.1, 0.1, 10, 11, "", margin=0.2)["verdict"] == "inconclusive"
    assert statistics.judge(0.6, None, None, 1, "")["verdict"] == "no noise estimate"


def test_spreads_use_ddof_1_and_have_none_for_one_run():
    s = statistics.spread([0.8, 0.9, 1.0])
    assert s["std"] == pytest.approx(0.1) and s["stderr"] == pytest.approx(0.1 / math.sqrt(3))
    assert statistics.spread([0.8]) == {"runs": 1, "mean": 0.8, "std": None, "stderr": None}
    sd, df = statistics.pooled_std([[1.0, 3.0], [2.0, 2.0, 5.0], [7.0]])
    assert df == 3 and sd == pytest.approx(math.sqrt((2 + 6) / 3))
    assert statistics.pooled_std([[1.0]]) == (None, 0)


def test_imp_and_connectivity_readings_carry_intervals():
    res = {"dense": [{"spawn_epoch": 1, "std": 0.002, "runs": 3}],
           "imp": [{"chain": c, "level": 1, "target_density": 0.8, "spawn_epoch": 1,
                    "test_accuracy_mean": a, "test_accuracy_std": s, "runs": n}
                   for c, a, s, n in (("imp", 0.80, None, 1), ("union", 0.83, 0.01, 2))]}
    (d,) = reading.iterative.imp_deltas(res)
    assert d["delta_points"] == pytest.approx(3.0)
    assert d["stderr_points"] == pytest.approx(math.sqrt(1.0**2 / 2 + 0.2**2))
    assert d["df"] == 1 and d["verdict"] == "inconclusive"  # t(1) = 12.7
    assert "union: its 2 runs" in d["noise"] and "imp: one run" in d["noise"]
    rows = [{"spawn_epoch": 0, "bn": "recompute", "barrier": b, "pair": [i, i + 1]}
            for i, b in enumerate((0.005, 0.006, 0.004))]
    res = {"connectivity": rows, "consistency": [{"spawn_epoch": 0, "density": 0.1,
                                                  "iou_mean": 0.3, "layer_matched_chance_iou": 0.1}]}
    (row,) = reading.connectivity.connectivity_table(res)
    assert row["reading"] == "stable" and row["ci_high"] < 2.0 and row["pairs"] == 3
    assert row["barrier_std"] == pytest.approx(0.1)
