"""Tables, figures and report.md from a results dict (jaxlottery.experiment.run's output).

Everything here reads `results` only, so a report can be redrawn from a results.json alone:
`python -m jaxlottery.report RUN_DIR`.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import numpy as np

from jaxlottery.files import atomic_write_bytes

FIGURES = ("overlap_vs_spawn.png", "accuracy_vs_density.png", "layer_overlap.png")
EXTRA_FIGURES = {"connectivity": "connectivity.png", "random_baselines": "baselines.png",
                 "imp": "imp.png"}
TABLES = ("dense", "consistency", "consistency_layers", "composition", "random_baselines", "imp")


def figures(results: dict) -> list[str]:
    """The figures a results dict gets: the paper's three, and one per analysis beyond the
    paper that ran (connectivity, random baselines, IMP)."""
    return list(FIGURES) + [f for section, f in EXTRA_FIGURES.items() if results.get(section)]


def write(rundir: str, results: dict) -> None:
    """CSV tables, PNG figures and report.md into `rundir`, each written atomically."""
    for name in TABLES:
        if name in results:
            _write_csv(os.path.join(rundir, f"{name}.csv"), results[name])
    if results.get("connectivity"):
        _write_csv(os.path.join(rundir, "connectivity.csv"), connectivity_table(results))
    draw = {FIGURES[0]: figure_overlap, FIGURES[1]: figure_accuracy, FIGURES[2]: figure_layers,
            EXTRA_FIGURES["connectivity"]: figure_connectivity,
            EXTRA_FIGURES["random_baselines"]: figure_baselines, EXTRA_FIGURES["imp"]: figure_imp}
    for name in figures(results):
        draw[name](results, os.path.join(rundir, name))
    atomic_write_bytes(os.path.join(rundir, "report.md"), markdown(results).encode())


# --- verdicts ----------------------------------------------------------------------------------


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
    for method in ("union", "intersection", "vote"):
        ds = [x for x in deltas if x["method"] == method]
        if not ds:
            continue
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


def summary(results: dict) -> str:
    """The terminal summary: consistency at the reference density, composition accuracies."""
    rows = results["consistency"]
    d = reference_density(sorted({r["density"] for r in rows}))
    lines = [f"Consistency at density {100 * d:.1f}%:",
             f"  {'t':>3s} {'IoU':>6s} {'chance':>7s} {'matched':>8s} {'W_t mask':>9s} {'indep.':>7s}"]
    for r in sorted((r for r in rows if r["density"] == d), key=lambda r: r["spawn_epoch"]):
        indep = r["iou_independent_inits"]
        lines.append(f"  {r['spawn_epoch']:3d} {r['iou_mean']:6.3f} {r['chance_iou']:7.3f} "
                     f"{r['layer_matched_chance_iou']:8.3f} {r['iou_with_spawn_mask']:9.3f} "
                     f"{'-' if indep is None else format(indep, '7.3f'):>7s}")
    lines.append("Composition (test accuracy %, retrained from W_t):")
    lines.append(f"  {'t':>3s} {'density':>8s} {'method':>12s} {'k':>3s} {'acc':>6s} {'std':>5s}")
    for r in results["composition"] + (results.get("random_baselines") or []):
        lines.append(f"  {r['spawn_epoch']:3d} {100 * r['target_density']:7.1f}% {r['method']:>19s} "
                     f"{r['k']:3d} {100 * r['test_accuracy_mean']:6.2f} "
                     f"{100 * r['test_accuracy_std']:5.2f}")
    if results.get("connectivity"):
        lines.append("Mode connectivity (error barrier, points; stable under 2):")
        for r in connectivity_table(results):
            lines.append(f"  t={r['spawn_epoch']:<3d} {r['bn']:>11s} {r['barrier_points']:6.2f} "
                         f"+- {r['barrier_std']:.2f} over {r['pairs']} pair(s)")
    if results.get("imp"):
        lines.append("IMP (test accuracy %, rewound to epoch "
                     f"{results['imp'][0]['spawn_epoch']}):")
        for r in sorted(results["imp"], key=lambda r: (r["level"], r["chain"])):
            lines.append(f"  level {r['level']:2d} {100 * r['target_density']:6.1f}% "
                         f"{r['chain']:>12s} {100 * r['test_accuracy_mean']:6.2f} "
                         f"{100 * r['test_accuracy_std']:5.2f}")
    return "\n".join(lines)


# --- figures -----------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def figure_overlap(results: dict, path: str) -> None:
    """Sibling IoU against spawn epoch, one line per density, with both chance baselines."""
    plt = _plt()
    rows = results["consistency"]
    densities = sorted({r["density"] for r in rows}, reverse=True)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(densities)))
    for d, c in zip(densities, colors):
        rs = sorted((r for r in rows if r["density"] == d), key=lambda r: r["spawn_epoch"])
        t = [r["spawn_epoch"] for r in rs]
        ax.errorbar(t, [r["iou_mean"] for r in rs], yerr=[r["iou_std"] for r in rs], color=c,
                    marker="o", capsize=3, label=f"{100 * d:.1f}%")
        ax.plot(t, [r["layer_matched_chance_iou"] for r in rs], color=c, ls=":", lw=1)
        ax.plot(t, [r["chance_iou"] for r in rs], color=c, ls="--", lw=0.8, alpha=0.6)
        if rs[0].get("iou_independent_inits") is not None:
            ax.scatter([t[0] - 0.15], [rs[0]["iou_independent_inits"]], color=c, marker="x")
    ax.set_xlabel("spawn epoch t")
    ax.set_ylabel("pairwise IoU of sibling masks")
    ax.set_title("Mask consistency (dotted: layer-matched chance, dashed: chance,\n"
                 "x: independent inits)", fontsize=9)
    ax.legend(title="density", fontsize=7, ncol=2)
    _save(fig, path)


def figure_accuracy(results: dict, path: str) -> None:
    """Test accuracy against density: one panel per (spawn epoch, k), methods vs baseline."""
    plt = _plt()
    rows = results["composition"]
    cells = sorted({(r["spawn_epoch"], r["k"]) for r in rows if r["method"] != "baseline"})
    if not cells:
        cells = [(rows[0]["spawn_epoch"], 1)] if rows else [(0, 1)]
    fig, axes = plt.subplots(1, len(cells), figsize=(3.3 * len(cells), 3.4), squeeze=False,
                             sharey=True)
    dense = {r["spawn_epoch"]: r["mean"] for r in results["dense"] if r.get("spawn_epoch") is not None}
    styles = {"union": ("tab:blue", "o"), "intersection": ("tab:orange", "s"),
              "vote": ("tab:green", "^"), "baseline": ("black", "D")}
    for ax, (t, kk) in zip(axes[0], cells):
        for method, (color, marker) in styles.items():
            rs = sorted((r for r in rows if r["spawn_epoch"] == t and r["method"] == method
                         and (r["k"] == kk or method == "baseline")),
                        key=lambda r: r["target_density"])
            if rs:
                ax.errorbar([100 * r["target_density"] for r in rs],
                            [100 * r["test_accuracy_mean"] for r in rs],
                            yerr=[100 * r["test_accuracy_std"] for r in rs], color=color,
                            marker=marker, capsize=3, label=method, lw=1)
        if dense.get(t) is not None:
            ax.axhline(100 * dense[t], color="k", ls="--", lw=0.8, label="dense")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_plt().FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(_plt().NullFormatter())
        ax.set_xlabel("density (% kept)")
        ax.set_title(f"k = {kk}, rewound to epoch {t}", fontsize=9)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    _save(fig, path)


def figure_layers(results: dict, path: str) -> None:
    """Per layer x spawn epoch at the reference density: sibling IoU minus chance at the layer's
    density (left), and the layer's density under global pruning (right)."""
    plt = _plt()
    rows = results["consistency_layers"]
    d = reference_density(sorted({r["density"] for r in rows}))
    rs = [r for r in rows if r["density"] == d]
    layers = sorted(dict.fromkeys(r["layer"] for r in rs), key=_network_order)
    epochs = sorted({r["spawn_epoch"] for r in rs})
    excess = np.full((len(layers), len(epochs)), np.nan)
    density = np.full_like(excess, np.nan)
    for r in rs:
        at = layers.index(r["layer"]), epochs.index(r["spawn_epoch"])
        excess[at] = r["iou_mean"] - r["chance_iou"]
        density[at] = 100 * r["layer_density"]
    fig, axes = plt.subplots(1, 2, figsize=(2.4 * len(epochs) + 6, 0.28 * len(layers) + 1.6),
                             sharey=True)
    for ax, grid, cmap, title in ((axes[0], excess, "magma", "sibling IoU minus chance"),
                                  (axes[1], density, "viridis", "layer density (% kept)")):
        im = ax.imshow(grid, aspect="auto", cmap=cmap)
        ax.set_xticks(range(len(epochs)), [str(e) for e in epochs])
        ax.set_xlabel("spawn epoch t")
        ax.set_title(f"{title} at {100 * d:.1f}% global density", fontsize=9)
        fig.colorbar(im, ax=ax)
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v) and len(layers) * len(epochs) <= 200:
                ax.text(j, i, f"{v:.2f}" if grid is excess else f"{v:.0f}", ha="center",
                        va="center", fontsize=5.5, color="w" if v < np.nanmean(grid) else "k")
    axes[0].set_yticks(range(len(layers)), [n.removesuffix("/kernel") for n in layers], fontsize=7)
    _save(fig, path)


def figure_connectivity(results: dict, path: str) -> None:
    """Test error along the line between siblings, per spawn epoch (left); barrier against
    spawn epoch (middle) beside mask IoU against spawn epoch (right)."""
    plt = _plt()
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
                     label=f"t={r['spawn_epoch']}" if r["bn"] == modes[0] else None)
    axes[0].set_xlabel("interpolation alpha (sibling 0 -> sibling 1)")
    axes[0].set_ylabel("test error (%)")
    axes[0].set_title("error on the path (" + ", ".join(f"{styles[m]} BN {m}" for m in modes) + ")",
                      fontsize=8)
    axes[0].legend(fontsize=7)
    for bn in modes:
        rs = [r for r in table if r["bn"] == bn]
        axes[1].errorbar([r["spawn_epoch"] for r in rs], [r["barrier_points"] for r in rs],
                         yerr=[r["barrier_std"] for r in rs], marker="o", capsize=3,
                         ls=styles[bn], label=f"BN {bn}")
    axes[1].axhline(2.0, color="gray", lw=0.8, ls=":")
    axes[1].set_xlabel("spawn epoch t")
    axes[1].set_ylabel("error barrier (points)")
    axes[1].set_title("instability (dotted: 2-point stability line)", fontsize=8)
    axes[1].legend(fontsize=7)
    cons = results["consistency"]
    d = reference_density(sorted({r["density"] for r in cons}))
    at = sorted((r for r in cons if r["density"] == d), key=lambda r: r["spawn_epoch"])
    t = [r["spawn_epoch"] for r in at]
    axes[2].errorbar(t, [r["iou_mean"] for r in at], yerr=[r["iou_std"] for r in at], marker="o",
                     capsize=3, color="tab:green", label="siblings")
    axes[2].plot(t, [r["layer_matched_chance_iou"] for r in at], ls=":", color="tab:green",
                 label="layer-matched chance")
    axes[2].set_xlabel("spawn epoch t")
    axes[2].set_ylabel("pairwise IoU of sibling masks")
    axes[2].set_title(f"mask consistency at {100 * d:.1f}% density", fontsize=8)
    axes[2].legend(fontsize=7)
    _save(fig, path)


def figure_baselines(results: dict, path: str) -> None:
    """Test accuracy per mask kind, one panel per (spawn epoch, density): the one-shot baseline
    and the composed masks at the largest k' (rewound to W_t) against random masks and the
    same masks re-initialized. The dashed line is the one-shot baseline."""
    plt = _plt()
    k_max = max((r["k"] for r in results["composition"]), default=1)
    rows = [r for r in results["composition"] + results["random_baselines"] if r["k"] in (1, k_max)]
    cells = sorted({(r["spawn_epoch"], r["target_density"]) for r in results["random_baselines"]},
                   key=lambda c: (c[0], -c[1]))
    fig, axes = plt.subplots(1, len(cells), figsize=(3.6 * len(cells) + 1.5, 3.8), squeeze=False,
                             sharey=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for ax, (t, d) in zip(axes[0], cells):
        at = {r["method"]: r for r in rows if r["spawn_epoch"] == t and r["target_density"] == d}
        ys = np.arange(len(methods))
        acc = [100 * at[m]["test_accuracy_mean"] if m in at else np.nan for m in methods]
        err = [100 * at[m]["test_accuracy_std"] if m in at else 0 for m in methods]
        colors = ["tab:gray" if m.startswith("random") else "tab:orange" if m.endswith("_reinit")
                  else "tab:blue" for m in methods]
        ax.barh(ys, acc, xerr=err, color=colors, capsize=2)
        for y, a in zip(ys, acc):
            if np.isfinite(a):
                ax.text(a, y, f" {a:.1f}", va="center", fontsize=7)
        if "baseline" in at:
            ax.axvline(100 * at["baseline"]["test_accuracy_mean"], color="k", ls="--", lw=0.8)
        ax.set_yticks(ys, methods, fontsize=7)
        ax.set_xlim(0, 105)
        ax.set_xlabel("test accuracy (%)")
        ax.set_title(f"{100 * d:.1f}% density, from epoch {t}", fontsize=9)
    axes[0][0].invert_yaxis()  # shared: once for all panels
    fig.suptitle(f"Baselines (blue: rewound masks, k' = {k_max}; orange: same masks, fresh init; "
                 "gray: random masks)", fontsize=9)
    _save(fig, path)


def figure_imp(results: dict, path: str) -> None:
    """Test accuracy against density for IMP, parallel IMP (each composition), one-shot."""
    plt = _plt()
    rows = results["imp"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = {"imp": ("black", "D"), "oneshot": ("tab:gray", "v"), "union": ("tab:blue", "o"),
               "intersection": ("tab:orange", "s"), "vote": ("tab:green", "^")}
    for chain in dict.fromkeys(r["chain"] for r in rows):
        rs = sorted((r for r in rows if r["chain"] == chain), key=lambda r: -r["target_density"])
        color, marker = markers.get(chain, ("tab:red", "x"))
        label = {"imp": "IMP", "oneshot": "one-shot"}.get(chain, f"parallel IMP, {chain}")
        ax.errorbar([100 * r["target_density"] for r in rs],
                    [100 * r["test_accuracy_mean"] for r in rs],
                    yerr=[100 * r["test_accuracy_std"] for r in rs], color=color, marker=marker,
                    capsize=3, lw=1, label=label)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ticks = sorted({100 * r["target_density"] for r in rows})
    ax.set_xticks(ticks, [f"{v:.3g}" for v in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("density (% kept; IMP level L keeps (1 - rate)^L)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Iterative pruning, rewound to epoch {rows[0]['spawn_epoch']}", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


def _network_order(layer: str) -> tuple:
    """stem first, then stages and blocks in order, the dense head last."""
    head = layer.split("/")[0]
    if head.startswith("stem"):
        return (0, layer)
    if head.startswith("stage"):
        return (1, layer)
    return (2, layer)


# --- markdown ------------------------------------------------------------------------------------


def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = ""
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            cells.append("-" if v is None else format(v, fmt) if fmt else str(v))
        body += "| " + " | ".join(cells) + " |\n"
    return head + body


def markdown(results: dict) -> str:
    cfg, ds, env = results["config"], results["dataset"], results["environment"]
    timing = results["timing"]
    synthetic = " **(synthetic data: numbers say nothing about the paper)**" if ds["synthetic"] else ""
    out = [f"# jaxlottery report: run {results['run_id']}\n",
           f"Data: {ds['name']}{synthetic}, {ds['train']} train / {ds['test']} test images "
           f"{tuple(ds['image_shape'])}, {ds['num_classes']} classes. Model: ResNet-"
           f"{cfg['model_depth']} width {cfg['model_width']}. {cfg['epochs']} epochs, batch "
           f"{cfg['batch_size']}, k = {cfg['k']} siblings, seed {cfg['seed']}.\n",
           f"Ran on {env['device_kind']} ({env['backend']}, {env['device_count']} device(s)), "
           f"jax {env['jax']}: {sum(timing['seconds_per_stage'].values()):.0f} s of training, "
           f"{timing['images_per_s'] or 0:.0f} images/s.\n",
           "## Dense accuracy\n",
           _table([dict(r, who=r.get("control") or f"siblings spawned at epoch {r['spawn_epoch']}")
                   for r in results["dense"]],
                  [("who", "networks", ""), ("mean", "test accuracy", ".4f"), ("std", "std", ".4f")]),
           "\n## Claim 1: consistency\n",
           "Siblings spawned later share more of their masks; at t = 0 they should overlap "
           "barely more than chance. Pairwise IoU over all sibling pairs:\n",
           _table(results["consistency"],
                  [("spawn_epoch", "t", ""), ("density", "density", ".3f"),
                   ("iou_mean", "IoU", ".3f"), ("iou_std", "std", ".3f"),
                   ("chance_iou", "chance", ".3f"), ("layer_matched_chance_iou", "layer-matched", ".3f"),
                   ("overlap_mean", "overlap", ".3f"), ("iou_with_spawn_mask", "IoU with W_t mask", ".3f"),
                   ("iou_independent_inits", "IoU indep. inits", ".3f")]),
           f"\n**Verdict:** {consistency_verdict(results)}\n",
           f"\n![overlap]({FIGURES[0]})\n\n![layers]({FIGURES[2]})\n",
           "\n## Claim 2: composability\n",
           "Union and intersection of the first k siblings' masks at matched density, retrained "
           "from W_t, against one-shot magnitude pruning of single siblings (baseline):\n",
           _table(results["composition"],
                  [("spawn_epoch", "t", ""), ("method", "method", ""), ("k", "k", ""),
                   ("target_density", "target", ".4f"), ("achieved_density", "achieved", ".4f"),
                   ("sibling_density", "per-sibling", ".4f"),
                   ("test_accuracy_mean", "test acc", ".4f"), ("test_accuracy_std", "std", ".4f"),
                   ("n", "n", "")]),
           "\nDifferences to the baseline (accuracy points):\n",
           _table(composition_deltas(results),
                  [("spawn_epoch", "t", ""), ("k", "k", ""), ("density", "density", ".4f"),
                   ("method", "method", ""), ("delta_points", "minus baseline", "+.2f"),
                   ("baseline_std_points", "baseline std", ".2f"), ("within_noise", "within noise", "")]),
           f"\n**Verdict:** {composition_verdict(results)}\n",
           f"\n![accuracy]({FIGURES[1]})\n"]
    out += _beyond_the_paper(results)
    return "\n".join(out)


def _beyond_the_paper(results: dict) -> list[str]:
    """Report sections for the analyses that ran beyond the paper."""
    out = []
    if results.get("connectivity"):
        out += ["\n## Linear mode connectivity\n",
                "The error barrier on the straight line between two siblings (max test error on "
                "the path minus the mean of the end errors, "
                f"{len(results['connectivity'][0]['alphas'])} points; under 2 points counts as "
                "stable), for disjoint sibling pairs, beside the masks' consistency:\n",
                _table(connectivity_table(results),
                       [("spawn_epoch", "t", ""), ("bn", "BN statistics", ""),
                        ("barrier_points", "barrier (points)", ".2f"), ("barrier_std", "std", ".2f"),
                        ("pairs", "pairs", ""), ("stable", "stable", ""),
                        ("iou_mean", "mask IoU", ".3f"), ("iou_excess", "IoU - matched chance", "+.3f")]),
                f"\n**Reading:** {connectivity_verdict(results)}\n",
                f"\n![connectivity]({EXTRA_FIGURES['connectivity']})\n"]
    if results.get("random_baselines"):
        out += ["\n## Random and re-initialized baselines\n",
                "`random`: uniformly random masks at the same global density; `random_matched`: "
                "random within each layer at the one-shot mask's per-layer densities; `*_reinit`: "
                "the one-shot and composed masks trained from a fresh initialization instead of "
                "the rewound weights W_t. All retrained like the others:\n",
                _table(results["random_baselines"],
                       [("spawn_epoch", "t", ""), ("method", "method", ""), ("k", "k", ""),
                        ("target_density", "density", ".4f"),
                        ("test_accuracy_mean", "test acc", ".4f"), ("test_accuracy_std", "std", ".4f"),
                        ("n", "n", "")]),
                "\nDifferences to the one-shot baseline (accuracy points):\n",
                _table(composition_deltas(results, "random_baselines"),
                       [("spawn_epoch", "t", ""), ("density", "density", ".4f"),
                        ("method", "method", ""), ("delta_points", "minus baseline", "+.2f"),
                        ("within_noise", "within noise", "")]),
                f"\n**Reading:** {baselines_verdict(results)}\n",
                f"\n![baselines]({EXTRA_FIGURES['random_baselines']})\n"]
    if results.get("imp"):
        cfg = results["config"]
        out += ["\n## Iterative magnitude pruning, single and parallel\n",
                f"IMP prunes {100 * cfg['imp_rate']:.0f}% of the remaining weights per level and "
                f"rewinds to epoch {results['imp'][0]['spawn_epoch']}. Parallel IMP trains "
                f"{cfg['imp_k'] or cfg['k']} siblings per level and composes their masks into the "
                "next level's mask at exactly the level's density; one-shot prunes the dense "
                "network straight to each density. Level 0 is the dense network:\n",
                _table(sorted(results["imp"], key=lambda r: (r["level"], r["chain"])),
                       [("level", "level", ""), ("target_density", "density", ".4f"),
                        ("chain", "chain", ""), ("test_accuracy_mean", "test acc", ".4f"),
                        ("test_accuracy_std", "std", ".4f"), ("n", "n", "")]),
                "\nDifferences to single-network IMP (accuracy points):\n",
                _table(imp_deltas(results),
                       [("level", "level", ""), ("density", "density", ".4f"), ("chain", "chain", ""),
                        ("delta_points", "minus IMP", "+.2f")]),
                f"\n**Reading:** {imp_verdict(results)}\n",
                f"\n![imp]({EXTRA_FIGURES['imp']})\n"]
    return out


def _write_csv(path: str, rows: list[dict]) -> None:
    buf = io.StringIO()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def main(argv: list[str] | None = None) -> None:
    """Redraw a run's tables, figures and report from its results.json."""
    from jaxlottery.checkpoint import read_json

    rundir = (argv or sys.argv[1:])[0]
    write(rundir, read_json(os.path.join(rundir, "results.json")))
    print(os.path.join(rundir, "report.md"))


if __name__ == "__main__":
    main()

