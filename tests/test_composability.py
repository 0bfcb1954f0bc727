"""Claim 2's verdict model on hand-built numbers (no training): the variance components, the
comparisons, Holm's correction and the positive control."""

import math

import numpy as np
import pytest

from jaxlottery import composability, reading, statistics


def _results(families: dict, dense_std=0.004, overlaps=()) -> dict:
    """Retrained masks at epoch 1: {(method, k, density): [[accuracy per order] per mask]};
    method "dense" at density 1. `overlaps`: (method_a, k_a, method_b, k_b, iou) at 0.2."""
    entries = [{"spawn_epoch": 1, "method": m, "k": k, "target_density": d, "replicate": j,
                "seed": r, "test_accuracy": a}
               for (m, k, d), ms in families.items() for j, orders in enumerate(ms)
               for r, a in enumerate(orders)]
    composed = [{"spawn_epoch": 1, "method": m, "k": k, "target_density": d,
                 "test_accuracy_mean": float(np.mean(ms))}
                for (m, k, d), ms in families.items() if not m.startswith("random")]
    control = [{"spawn_epoch": 1, "method": m, "k": k, "target_density": d,
                "test_accuracy_mean": float(np.mean(ms))}
               for (m, k, d), ms in families.items() if m.startswith("random")]
    return {"retrained_masks": entries, "composition": composed, "random_baselines": control,
            "dense": [{"spawn_epoch": 1, "mean": 0.9, "std": dense_std, "runs": 4}],
            "mask_overlaps": [{"spawn_epoch": 1, "density": 0.2, "method_a": a, "k_a": ka,
                               "replicate_a": 0, "method_b": b, "k_b": kb, "replicate_b": 0,
                               "iou": iou, "kappa": 0.0} for a, ka, b, kb, iou in overlaps]}


def test_the_variance_components_of_a_simulated_design_are_recovered():
    """Known mask and order variance, large order effects shared by every mask: tau^2 =
    s_mask^2 + s_run^2 / R, the order effects cancel, both components come back."""
    rng = np.random.default_rng(0)
    masks_per_family, orders, s_mask, s_run = 400, 4, 0.8, 1.5
    order_effect = rng.normal(0, 10.0, orders)  # large: must not leak into any estimate
    families = [mu + order_effect + rng.normal(0, s_mask, (masks_per_family, 1))
                + rng.normal(0, s_run, (masks_per_family, orders)) for mu in (90.0, 85.0, 70.0)]
    v = composability.variance(families)
    assert v["df"] == 3 * (masks_per_family - 1)
    assert v["tau"] == pytest.approx(math.sqrt(s_mask**2 + s_run**2 / orders), rel=0.06)
    assert v["s_run"] == pytest.approx(s_run, rel=0.05)
    assert v["s_mask"] == pytest.approx(s_mask, rel=0.15)


def test_tau_is_the_pooled_spread_of_mask_means_by_hand():
    a = np.array([[1.0, 3.0], [3.0, 5.0]])        # mask means 2, 4
    b = np.array([[10.0, 10.0], [11.0, 13.0], [9.0, 9.0]])  # mask means 10, 12, 9
    v = composability.variance([a, b])
    assert v["df"] == 1 + 2
    b_mean = 31 / 3
    squares = (2 - 3) ** 2 + (4 - 3) ** 2 + sum((x - b_mean) ** 2 for x in (10, 12, 9))
    assert v["tau"] == pytest.approx(math.sqrt(squares / 3))
    assert composability.variance([np.array([[1.0, 2.0]])])["tau"] is None  # one mask: none


def test_holm_against_a_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert statistics.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert statistics.holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert statistics.holm([]) == []


@pytest.mark.parametrize("diff,se,df", [(0.1, 0.1, 10), (0.5, 0.2, 4), (-0.7, 0.1, 30),
                                        (0.0, 0.45, 2), (1.2, 0.1, 8)])
def test_equivalence_p_agrees_with_the_interval_rule(diff, se, df):
    low, high = statistics.judge(diff, se, df, 2, "")["interval"]
    inside = -statistics.MARGIN_POINTS <= low and high <= statistics.MARGIN_POINTS
    assert (statistics.p_equivalence(diff, se, df) < 0.025) == inside
    p = statistics.p_difference(diff, se, df)
    assert (p < 0.05) == (statistics.judge(diff, se, df, 2, "")["verdict"] == "effect")


def test_t_quantiles_are_exact():
    assert statistics.t975(1) == pytest.approx(12.706, abs=1e-3)
    assert statistics.t975(10) == pytest.approx(2.228, abs=1e-3)
    assert statistics.t975(200) == pytest.approx(1.972, abs=1e-3)  # a table gave 1.960 here
    with pytest.raises(ValueError):
        statistics.t975(0)


# Two masks per family, two orders; order 1 is 10 points below order 0 for every mask.
DESIGN = {("baseline", 1, 0.2): [[80.0, 70.0], [82.0, 72.0]],
          ("union", 2, 0.2): [[81.0, 71.0], [82.2, 72.2]],
          ("intersection", 2, 0.2): [[79.0, 69.4], [80.6, 70.6]],
          ("random_matched", 1, 0.2): [[60.0, 50.0], [61.0, 51.0]],
          ("dense", 1, 1.0): [[90.0, 80.0]]}


def _scaled(design):
    return {k: [[a / 100 for a in m] for m in v] for k, v in design.items()}


def test_a_composed_family_against_one_shot_by_hand():
    res = _results(_scaled(DESIGN), overlaps=[("union", 2, "baseline", 1, 0.6),
                                              ("union", 2, "intersection", 2, 0.5)])
    rows = {(r["method"], r["reference"]): r for r in composability.comparisons(res)}
    union = rows["union", "baseline"]
    # mask means: baseline 75, 77; union 76, 77.2; intersection 74.2, 75.6 (order cancels)
    assert union["delta_points"] == pytest.approx(76.6 - 76.0)
    within = [(75 - 76) ** 2 + (77 - 76) ** 2, (76 - 76.6) ** 2 + (77.2 - 76.6) ** 2,
              (74.2 - 74.9) ** 2 + (75.6 - 74.9) ** 2]
    tau = math.sqrt(sum(within) / 3)
    assert union["stderr_points"] == pytest.approx(tau * math.sqrt(1 / 2 + 1 / 2))
    assert union["df"] == 3 and union["masks"] == 2 and union["orders"] == 2 and union["runs"] == 4
    assert union["iou"] == 0.6 and rows["union", "intersection"]["iou"] == 0.5
    assert rows["union", "intersection"]["delta_points"] == pytest.approx(76.6 - 74.9)
    assert "mask-to-mask and order-to-order" in union["noise"]
    # Holm over the 3 comparisons of the methods family (2 to baseline, union - intersection)
    family = [r for r in composability.comparisons(res)
              if r["section"] == "composition" and r["reference"] != "dense"]
    assert len(family) == 3 and all(r["comparisons"] == 3 for r in family)
    assert [r["p_holm"] for r in family] == pytest.approx(statistics.holm([r["p"] for r in family]))
    control = rows["random_matched", "baseline"]
    assert control["delta_points"] == pytest.approx(55.5 - 76.0) and control["control"] == "detected"
    assert rows["union", "dense"]["delta_points"] == pytest.approx(76.6 - 85.0)


def test_equivalent_stands_only_where_the_control_was_detected():
    tight = {("baseline", 1, 0.2): [[80.0, 80.1], [80.1, 80.0], [80.05, 80.05]],
             ("union", 2, 0.2): [[80.0, 80.1], [80.1, 80.05], [80.0, 80.0]]}
    seen = _results(_scaled({**tight, ("random_matched", 1, 0.2): [[60.0, 60.1], [60.1, 60.0]]}))
    (row,) = composability.composition_deltas(seen)
    assert row["verdict"] == "equivalent" and row["control"] == "detected"
    assert row["bound_points"] < statistics.MARGIN_POINTS
    blind = _results(_scaled({**tight, ("random_matched", 1, 0.2): [[80.0, 80.1], [80.1, 80.0]]}))
    (row,) = composability.composition_deltas(blind)
    assert row["verdict"] == "inconclusive" and row["control"] == "not detected"
    assert "NOT detected at 20.0%" in reading.composition.composition_verdict(blind)
    none = _results(_scaled(tight))
    (row,) = composability.composition_deltas(none)
    assert row["verdict"] == "inconclusive" and row["control"] == "absent"
    assert "No positive control" in reading.composition.composition_verdict(none)


def test_one_order_takes_the_spread_between_masks_not_the_dense_siblings():
    one = {k: [m[:1] for m in v] for k, v in DESIGN.items()}
    (union,) = [r for r in composability.composition_deltas(_results(_scaled(one)))
                if r["method"] == "union"]
    assert union["orders"] == 1 and union["df"] == 3 and "dense siblings" not in union["noise"]
    # one mask per family: only then the dense siblings' spread, marked a lower bound
    single = {k: v[:1] for k, v in one.items()}
    rows = composability.composition_deltas(_results(_scaled(single)))
    assert all("lower bound" in r["noise"] and r["df"] == 3 for r in rows)
    assert rows[0]["stderr_points"] == pytest.approx(0.4 * math.sqrt(2))


def test_the_imp_level_one_row_is_the_reference_not_a_comparison():
    res = {"dense": [{"spawn_epoch": 1, "std": 0.002, "runs": 3}],
           "imp": [{"chain": c, "level": 1, "target_density": 0.8, "spawn_epoch": 1,
                    "test_accuracy_mean": 0.8, "test_accuracy_std": None, "runs": 1, **extra}
                   for c, extra in (("imp", {}), ("oneshot", {"same_as": "imp"}))]}
    assert reading.iterative.imp_deltas(res) == []


def test_shared_runs_pair_a_rerun_with_the_runs_it_repeats():
    old = _results({("baseline", 1, 0.2): [[0.80, 0.81], [0.79, 0.78]],
                    ("union", 2, 0.2): [[0.70, 0.71]]})
    # the rerun adds a second union mask and a control; its old runs are the same
    new = _results({("baseline", 1, 0.2): [[0.80, 0.81], [0.79, 0.78]],
                    ("union", 2, 0.2): [[0.70, 0.71], [0.72, 0.73]],
                    ("random_matched", 1, 0.2): [[0.5, 0.5]]})
    pairs = composability.shared_runs(new, old)
    assert len(pairs) == 6 and all(a == b for a, b in pairs)
    # an older results file names the one-shot mask by "sibling", not "replicate"
    for e in old["retrained_masks"]:
        e["sibling"] = e.pop("replicate")
    assert len(composability.shared_runs(new, old)) == 6
    # a re-initialized twin is a different run from its rewound mask
    twin = dict(new["retrained_masks"][0], reinit=True)
    assert composability.shared_runs({"retrained_masks": [twin]}, old) == []


def test_means_equal_up_to_float_rounding_measure_no_spread():
    # (a + b) / 2 and (b + a) / 2 of points on 128 test images differ by float rounding only
    a, b = 100 * 0.6015625, 100 * 0.7109375
    fams = [np.asarray([[a, b], [b, a]]), np.asarray([[a + 1e-13, b], [b, a]])]
    assert composability.variance(fams)["tau"] == 0.0
    # and a cell of such families takes the dense siblings' spread, saying why
    alike = {("baseline", 1, 0.2): [[60.0, 70.0], [70.0, 60.0 + 1e-12]],
             ("union", 2, 0.2): [[61.0, 71.0], [71.0, 61.0]]}
    (row,) = composability.composition_deltas(_results(_scaled(alike)))
    assert row["noise"].startswith("replicate masks all scored alike")


def test_natural_density_cells_are_judged_apart_from_the_matched_ones():
    res = _results(_scaled(DESIGN))
    matched = composability.comparisons(res)
    # union of 2 kept 27% when composed from masks at 20%: its own cell, with one-shot masks
    # and controls at 27%
    cell = {("union", 2): [[78.0, 79.0], [77.0, 78.5]], ("baseline", 1): [[76.0, 77.0], [75.5, 77.5]],
            ("random_matched", 1): [[60.0, 61.0], [59.0, 60.5]]}
    res["retrained_masks"] += [
        {"spawn_epoch": 1, "method": m, "k": k, "target_density": 0.27, "replicate": j, "seed": r,
         "test_accuracy": a / 100, "natural": True, "natural_of": ["union", 2],
         "sibling_density": 0.2}
        for (m, k), ms in cell.items() for j, orders in enumerate(ms) for r, a in enumerate(orders)]
    res["natural_density"] = [{"spawn_epoch": 1, "method": m, "k": k, "target_density": 0.27,
                               "test_accuracy_mean": float(np.mean(ms)) / 100}
                              for (m, k), ms in cell.items()]
    assert composability.comparisons(res) == matched  # the natural runs stay out of them
    rows = composability.natural_comparisons(res)
    union = next(r for r in rows if r["method"] == "union" and r["reference"] == "baseline")
    assert union["density"] == 0.27 and union["from_density"] == 0.2 and union["natural"]
    assert union["delta_points"] == pytest.approx((78.0 + 79 + 77 + 78.5 - 76 - 77 - 75.5 - 77.5) / 4)
    assert union["comparisons"] == 1 and union["control"] == "detected"
    line = reading.composition.natural_verdict(res)
    assert f"union of 2 from 20.0% keeps 27.0%: {union['delta_points']:+.2f} points" in line
    assert "detected at 27.0%" in line
    assert {d["section"] for d in reading.differences(res)} >= {"natural_composition",
                                                                "natural_random_baselines"}
