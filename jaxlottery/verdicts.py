"""The readings of a results dict: differences to the baselines and one computed sentence per
analysis. They read `results` only; a composition method is read wherever it appears, in the
order of `masks.COMPOSITIONS` (methods registered later, then any others, follow)."""

from __future__ import annotations

import numpy as np

from jaxlottery.masks import COMPOSITIONS


def methods_in(rows: list[dict], key: str = "method") -> list[str]:
    """The composition methods present in `rows`, registered ones in registry order first."""
    present = list(dict.fromkeys(r[key] for r in rows))
    return [m for m in COMPOSITIONS if m in present] + [m for m in present if m not in COMPOSITIONS]


def reference_density(densities: list[float]) -> float:
    """The density the verdicts quote: the one closest to 10.7% (0.8^10)."""
    return min(densities, key=lambda d: abs(np.log(d / 0.8**10)))


def consistency_verdict(results: dict) -> str:
    rows = results["consistency"]
    d = reference_density(sorted({r["density"] for r in rows}))
    at = sorted((r for r in rows if r["density"] == d), key=lambda r: r["spawn_epoch"])
    first, last = at[0], at[-1]
    excess = lambda r: r["iou_mean"] - r["layer_matched_chance_iou"]  # noqa: E731
    line = (f"At density {100 * d:.1f}%: sibling IoU {first['iou_mean']:.3f} +- "
            f"{first['iou_std']:.3f} when spawned at epoch {first['spawn_epoch']} and "
            f"{last['iou_mean']:.3f} +- {last['iou_std']:.3f} at epoch {last['spawn_epoch']}; "
            f"naive chance {first['chance_iou']:.3f}, layer-matched chance "
            f"{first['layer_matched_chance_iou']:.3f}. Excess over layer-matched chance: "
            f"{excess(first):+.3f} -> {excess(last):+.3f}")
    rises = excess(last) - excess(first) > 2 * max(first["iou_std"], last["iou_std"], 1e-3)
    line += (" (rises with the spawn point)." if rises else " (no clear rise with the spawn point).")
    if first["iou_with_spawn_mask"] >= first["iou_mean"] - 0.02:
        line += (f" Caution: siblings spawned at epoch {first['spawn_epoch']} agree with the spawn "
                 f"weights' own mask ({first['iou_with_spawn_mask']:.3f}) about as much as with "
                 "each other: training was too short to leave the initialization's regime.")
    return line


def composition_deltas(results: dict, section: str = "composition") -> list[dict]:
    """For each (spawn epoch, k, density, method) of `section` (composition or
    random_baselines): accuracy minus the one-shot baseline's."""
    rows = results.get(section) or []
    base = {(r["spawn_epoch"], r["target_density"]): r for r in results["composition"]
            if r["method"] == "baseline"}
    out = []
    for r in rows:
        b = base.get((r["spawn_epoch"], r["target_density"]))
        if r["method"] == "baseline" or b is None:
            continue
        noise = b["test_accuracy_std"] if b["n"] > 1 else None
        delta = 100 * (r["test_accuracy_mean"] - b["test_accuracy_mean"])
        out.append({"spawn_epoch": r["spawn_epoch"], "k": r["k"], "density": r["target_density"],
                    "method": r["method"], "delta_points": delta,
                    "baseline_std_points": None if noise is None else 100 * noise,
                    "within_noise": None if noise is None else abs(delta) <= max(2 * 100 * noise, 0.5)})
    return out


def composition_verdict(results: dict) -> str:
    deltas = composition_deltas(results)
    if not deltas:
        return "No composed masks were retrained."
    parts = []
    for method in methods_in(deltas):
        ds = [x for x in deltas if x["method"] == method]
        within = [x["within_noise"] for x in ds if x["within_noise"] is not None]
        mean = float(np.mean([x["delta_points"] for x in ds]))
        worst = min(ds, key=lambda x: x["delta_points"])
        parts.append(f"{method} - baseline: mean {mean:+.2f} points over {len(ds)} (k, density) "
                     f"cells, worst {worst['delta_points']:+.2f} (k={worst['k']}, "
                     f"{100 * worst['density']:.1f}%); within 2 baseline std in "
                     f"{sum(within)}/{len(within)}")
    return "; ".join(parts) + "."


def connectivity_table(results: dict) -> list[dict]:
    """Barrier per (spawn epoch, BN mode): mean and std over sibling pairs, in points, beside
    the sibling mask IoU (and its excess over layer-matched chance) at the reference density."""
    rows = results.get("connectivity") or []
    cons = results["consistency"]
    d = reference_density(sorted({r["density"] for r in cons}))
    iou = {r["spawn_epoch"]: r for r in cons if r["density"] == d}
    out = []
    for t in sorted({r["spawn_epoch"] for r in rows}):
        for bn in dict.fromkeys(r["bn"] for r in rows):
            bs = [100 * r["barrier"] for r in rows if r["spawn_epoch"] == t and r["bn"] == bn]
            if not bs:
                continue
            c = iou.get(t, {})
            out.append({"spawn_epoch": t, "bn": bn, "barrier_points": float(np.mean(bs)),
                        "barrier_std": float(np.std(bs)), "pairs": len(bs),
                        "stable": bool(np.mean(bs) < 2.0), "density": d,
                        "iou_mean": c.get("iou_mean"),
                        "iou_excess": (c["iou_mean"] - c["layer_matched_chance_iou"]) if c else None})
    return out


def connectivity_verdict(results: dict) -> str:
    table = connectivity_table(results)
    if not table:
        return "Mode connectivity was not measured (--lmc_pairs=0)."
    parts = []
    for bn in dict.fromkeys(r["bn"] for r in table):
        rs = sorted((r for r in table if r["bn"] == bn), key=lambda r: r["spawn_epoch"])
        first, last = rs[0], rs[-1]
        stable_from = next((r["spawn_epoch"] for r in rs if r["stable"]), None)
        parts.append(f"BN {bn}: barrier {first['barrier_points']:.1f} -> "
                     f"{last['barrier_points']:.1f} points from epoch {first['spawn_epoch']} to "
                     f"{last['spawn_epoch']} ("
                     + (f"stable, under 2 points, from epoch {stable_from}" if stable_from is not None
                        else "never under 2 points") + ")")
    rs = sorted((r for r in table if r["bn"] == table[0]["bn"]), key=lambda r: r["spawn_epoch"])
    if len(rs) > 1 and rs[0]["iou_mean"] is not None:
        b = [r["barrier_points"] for r in rs]
        x = [r["iou_excess"] for r in rs]
        together = np.corrcoef(b, x)[0, 1] if np.std(b) > 0 and np.std(x) > 0 else float("nan")
        word = ("fall as mask consistency rises" if together < -0.5 else
                "rise with mask consistency" if together > 0.5 else "move independently of mask consistency")
        parts.append(f"across spawn points the barriers {word} (correlation {together:+.2f} with "
                     f"the IoU excess over layer-matched chance at {100 * rs[0]['density']:.1f}%)")
    return "; ".join(parts) + "."


def baselines_verdict(results: dict) -> str:
    deltas = composition_deltas(results, "random_baselines")
    if not deltas:
        return "No random or re-initialized baselines were retrained (--random_baselines)."
    parts = []
    for method in dict.fromkeys(x["method"] for x in deltas):
        parts.append(f"{method} " + ", ".join(
            f"{x['delta_points']:+.2f} at {100 * x['density']:.1f}%"
            for x in sorted((x for x in deltas if x["method"] == method), key=lambda x: -x["density"])))
    below = [x for x in deltas if x["delta_points"] < 0 and x["within_noise"] is False]
    line = ("Accuracy minus the rewound one-shot mask, points: " + "; ".join(parts) + ". "
            f"{len(below)} of {len(deltas)} cells fall below it by more than its noise")
    if len(below) == len(deltas):
        line += ": both the magnitude mask and the rewound weights matter here"
    return line + "."


def imp_deltas(results: dict) -> list[dict]:
    """Each chain's accuracy minus single-network IMP's, level by level (levels >= 1)."""
    rows = [r for r in results.get("imp") or [] if r["level"] > 0]
    ref = {r["level"]: r for r in rows if r["chain"] == "imp"}
    return [{"chain": r["chain"], "level": r["level"], "density": r["target_density"],
             "delta_points": 100 * (r["test_accuracy_mean"] - ref[r["level"]]["test_accuracy_mean"])}
            for r in rows if r["chain"] != "imp" and r["level"] in ref]


def imp_verdict(results: dict) -> str:
    deltas = imp_deltas(results)
    if not deltas:
        return "IMP did not run (--imp_levels=0)."
    parts = []
    for chain in dict.fromkeys(x["chain"] for x in deltas):
        ds = [x for x in deltas if x["chain"] == chain]
        last = max(ds, key=lambda x: x["level"])
        name = "one-shot" if chain == "oneshot" else f"parallel IMP ({chain})"
        parts.append(f"{name} - IMP: mean {np.mean([x['delta_points'] for x in ds]):+.2f} points, "
                     f"{last['delta_points']:+.2f} at the last level ({100 * last['density']:.1f}%)")
    return "; ".join(parts) + "."
