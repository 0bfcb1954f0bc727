"""Linear mode connectivity: reads the results' `connectivity` rows (the error barrier between
sibling pairs) beside `consistency`; produces the barrier table (connectivity.csv), the reading,
the report's section and the figure."""

from __future__ import annotations

import numpy as np

from jaxlottery import paths, statistics
from jaxlottery.reading.common import (legend_labels, markdown_table, pyplot, reference_density,
                                       save)


# A pair of networks is linearly mode connected when its error barrier is under 2 points
# (Frankle et al. 2020).
STABLE_POINTS = 2.0


def connectivity_table(results: dict) -> list[dict]:
    """Barrier per (spawn epoch, BN mode): mean, std (ddof=1), stderr and 95% interval over
    sibling pairs, in points, read against the 2-point stability threshold (stable: the whole
    interval below it), beside the sibling mask IoU (and its excess over layer-matched chance)
    at the reference density. `stable` is the mean alone under 2 points."""
    rows = results.get("connectivity") or []
    cons = results["consistency"]
    d = reference_density(sorted({r["density"] for r in cons}))
    iou = {r["spawn_epoch"]: r for r in cons if r["density"] == d and r.get("init", 0) == 0}
    out = []
    for t in sorted({r["spawn_epoch"] for r in rows}):
        for bn in dict.fromkeys(r["bn"] for r in rows):
            bs = [100 * r["barrier"] for r in rows if r["spawn_epoch"] == t and r["bn"] == bn]
            if not bs:
                continue
            c = iou.get(t, {})
            s = statistics.spread(bs)
            ci = statistics.interval(s["mean"], s["stderr"], len(bs) - 1)
            out.append({"spawn_epoch": t, "bn": bn, "barrier_points": s["mean"],
                        "barrier_std": s["std"], "barrier_stderr": s["stderr"],
                        "ci_low": ci and ci[0], "ci_high": ci and ci[1], "pairs": len(bs),
                        "stable": bool(s["mean"] < STABLE_POINTS),
                        "reading": {"below": "stable", "above": "unstable"}.get(
                            statistics.against(s["mean"], s["stderr"], len(bs) - 1,
                                               STABLE_POINTS), "inconclusive" if ci else
                            "one pair: no interval"), "density": d,
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
        sure = [r["spawn_epoch"] for r in rs if r["reading"] == "stable"]
        parts.append(f"BN {bn}: barrier {first['barrier_points']:.1f} -> "
                     f"{last['barrier_points']:.1f} points from epoch {first['spawn_epoch']} to "
                     f"{last['spawn_epoch']} ("
                     + (f"stable, under 2 points, from epoch {stable_from}" if stable_from is not None
                        else "never under 2 points") + "; "
                     + (f"95% interval under 2 points at epoch(s) {', '.join(map(str, sure))}"
                        if sure else "under 2 points by its 95% interval at no epoch")
                     + f"; {first['pairs']} pair(s) per epoch)")
    rs = sorted((r for r in table if r["bn"] == table[0]["bn"]), key=lambda r: r["spawn_epoch"])
    if len(rs) > 1 and all(r["iou_excess"] is not None for r in rs):
        b = [r["barrier_points"] for r in rs]
        x = [r["iou_excess"] for r in rs]
        if len(rs) < 3 or np.std(b) == 0 or np.std(x) == 0:
            parts.append(f"a correlation of barriers with mask consistency is not computable "
                         f"from {len(rs)} spawn points" + (" (one of them does not vary)"
                                                           if len(rs) >= 3 else " (needs 3)"))
        else:
            together = np.corrcoef(b, x)[0, 1]
            word = ("fall as mask consistency rises" if together < -0.5 else
                    "rise with mask consistency" if together > 0.5 else
                    "move independently of mask consistency")
            parts.append(f"across {len(rs)} spawn points the barriers {word} (correlation "
                         f"{together:+.2f} with the IoU excess over layer-matched chance at "
                         f"{100 * rs[0]['density']:.1f}%; {len(rs)} points: suggestive, not a test)")
    return "; ".join(parts) + "."


def section(results: dict) -> list[str]:
    """The section: the barrier table beside the masks' consistency, the reading, the figure."""
    return ["\n## Linear mode connectivity\n",
            "The error barrier on the straight line between two siblings (max test error on "
            "the path minus the mean of the end errors, "
            f"{len(results['connectivity'][0]['alphas'])} points; under 2 points counts as "
            "stable), for disjoint sibling pairs, beside the masks' consistency:\n",
            markdown_table(connectivity_table(results),
                           [("spawn_epoch", "t", ""), ("bn", "BN statistics", ""),
                            ("barrier_points", "barrier (points)", ".2f"),
                            ("barrier_std", "std", ".2f"), ("ci_low", "95% CI low", ".2f"),
                            ("ci_high", "high", ".2f"), ("pairs", "pairs", ""),
                            ("reading", "reading", ""), ("iou_mean", "mask IoU", ".3f"),
                            ("iou_excess", "IoU - matched chance", "+.3f")]),
            f"\n**Reading:** {connectivity_verdict(results)}\n",
            f"\n![connectivity]({paths.EXTRA_FIGURES['connectivity']})\n"]


def figure_connectivity(results: dict, path: str) -> list[str]:
    """Test error along the line between siblings, per spawn epoch (left); barrier against
    spawn epoch (middle) beside mask IoU against spawn epoch (right)."""
    plt = pyplot()
    rows = results["connectivity"]
    table = connectivity_table(results)
    epochs = sorted({r["spawn_epoch"] for r in rows})
    modes = list(dict.fromkeys(r["bn"] for r in rows))
    colors = dict(zip(epochs, plt.cm.plasma(np.linspace(0, 0.85, len(epochs)))))
    styles = dict(zip(modes, ("-", "--")))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for r in rows:
        if r["pair"] != rows[0]["pair"]:
            continue
        axes[0].plot(r["alphas"], [100 * e for e in r["errors"]], color=colors[r["spawn_epoch"]],
                     ls=styles[r["bn"]], lw=1.2,
                     label=f"t={r['spawn_epoch']:g}" if r["bn"] == modes[0] else None)
    axes[0].set_xlabel("interpolation alpha (sibling 0 -> sibling 1)")
    axes[0].set_ylabel("test error (%)")
    axes[0].set_title("error on the path (" + ", ".join(f"{styles[m]} BN {m}" for m in modes) + ")",
                      fontsize=8)
    axes[0].legend(fontsize=7)
    for bn in modes:
        rs = [r for r in table if r["bn"] == bn]
        axes[1].errorbar([r["spawn_epoch"] for r in rs], [r["barrier_points"] for r in rs],
                         yerr=[r["barrier_stderr"] or 0 for r in rs], marker="o", capsize=3,
                         ls=styles[bn], label=f"BN {bn}")
    axes[1].axhline(2.0, color="gray", lw=0.8, ls=":")
    axes[1].set_xlabel("spawn epoch t")
    axes[1].set_ylabel("error barrier (points)")
    axes[1].set_title("instability (dotted: 2-point stability line;\nerror bars: standard error "
                      "over pairs)", fontsize=8)
    axes[1].legend(fontsize=7)
    cons = results["consistency"]
    d = reference_density(sorted({r["density"] for r in cons}))
    at = sorted((r for r in cons if r["density"] == d and r.get("init", 0) == 0),
                key=lambda r: r["spawn_epoch"])
    t = [r["spawn_epoch"] for r in at]
    axes[2].errorbar(t, [r["iou_mean"] for r in at], yerr=[r["iou_std"] or 0 for r in at], marker="o",
                     capsize=3, color="tab:green", label="siblings")
    axes[2].plot(t, [r["layer_matched_chance_iou"] for r in at], ls=":", color="tab:green",
                 label="layer-matched chance")
    axes[2].set_xlabel("spawn epoch t")
    axes[2].set_ylabel("pairwise IoU of sibling masks")
    axes[2].set_title(f"mask consistency at {100 * d:.1f}% density", fontsize=8)
    axes[2].legend(fontsize=7)
    labels = [label for ax in axes for label in legend_labels(ax)]
    save(fig, path)
    return labels

