"""The report's figures, drawn from a results dict. Each function writes one PNG atomically and
returns the labels of its legend (what a reader can find in it). Composition methods take their
label, color and marker from `masks.COMPOSITIONS`."""

from __future__ import annotations

import io

import numpy as np

from jaxlottery.files import atomic_write_bytes
from jaxlottery.masks import COMPOSITIONS
from jaxlottery.verdicts import connectivity_table, methods_in, reference_density


def _style(method: str) -> tuple[str, str, str]:
    """(label, color, marker) of a composition method (an unregistered one: red crosses)."""
    c = COMPOSITIONS.get(method)
    return (c.label, c.color, c.marker) if c else (method, "tab:red", "x")


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []


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


def figure_overlap(results: dict, path: str) -> list[str]:
    """Sibling mask agreement against spawn epoch, one line per density: IoU with both chance
    baselines (left) and Cohen's kappa, whose chance is 0 (right, where the run has it). With
    several initializations, each init is a thin line and their mean a thick one."""
    plt = _plt()
    rows = results["consistency"]
    densities = sorted({r["density"] for r in rows}, reverse=True)
    inits = sorted({r.get("init", 0) for r in rows})
    has_kappa = any(r.get("kappa_mean") is not None for r in rows)
    fig, axes = plt.subplots(1, 2 if has_kappa else 1, figsize=(12 if has_kappa else 6.5, 4.2),
                             squeeze=False)
    axes = axes[0]
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(densities)))
    for d, c in zip(densities, colors):
        for stat, ax in zip(("iou_mean", "kappa_mean"), axes):
            by_init = []
            for i in inits:
                rs = sorted((r for r in rows if r["density"] == d and r.get("init", 0) == i),
                            key=lambda r: r["spawn_epoch"])
                by_init.append(rs)
                if len(inits) > 1:
                    ax.plot([r["spawn_epoch"] for r in rs], [_nan(r.get(stat)) for r in rs],
                            color=c, lw=0.7, alpha=0.6)
            t = [r["spawn_epoch"] for r in by_init[0]]
            mean = np.nanmean([[_nan(r.get(stat)) for r in rs] for rs in by_init], axis=0)
            spread = [r.get(stat.replace("_mean", "_std")) or 0 for r in by_init[0]]
            ax.errorbar(t, mean, yerr=None if len(inits) > 1 else spread, color=c, marker="o",
                        capsize=3, lw=1.8 if len(inits) > 1 else 1.2, label=f"{100 * d:.1f}%")
            control = by_init[0][0].get(stat.replace("_mean", "_independent_inits"))
            if stat == "iou_mean":
                ax.plot(t, [r["layer_matched_chance_iou"] for r in by_init[0]], color=c, ls=":", lw=1)
                ax.plot(t, [r["chance_iou"] for r in by_init[0]], color=c, ls="--", lw=0.8, alpha=0.6)
            if control is not None:
                ax.scatter([t[0] - 0.15], [control], color=c, marker="x")
    axes[0].set_xlabel("spawn epoch t")
    axes[0].set_ylabel("pairwise IoU of sibling masks")
    per = (f"thin: each of {len(inits)} inits, thick: their mean" if len(inits) > 1
           else "error bars: std over sibling pairs")
    axes[0].set_title("Mask consistency (dotted: layer-matched chance, dashed: chance,\n"
                      f"x: independent inits; {per})", fontsize=9)
    axes[0].legend(title="density", fontsize=7, ncol=2)
    if has_kappa:
        axes[1].axhline(0, color="gray", lw=0.8)
        axes[1].set_xlabel("spawn epoch t")
        axes[1].set_ylabel("Cohen's kappa of sibling masks (layer-stratified)")
        axes[1].set_title("Chance-corrected: 0 = random masks with the same per-layer densities,"
                          f"\n1 = identical (x: independent inits; {per})", fontsize=9)
    labels = _legend(axes[0])
    _save(fig, path)
    return labels


def figure_trajectory(results: dict, path: str) -> list[str]:
    """Overlap through training: one panel per density, sibling kappa against epoch for each
    spawn point (solid), their kappa with the spawn weights' own mask (dotted: the imprint of
    W_t), the independent-init control (gray, chance is 0) and the learning-rate drops (dashed
    verticals). With several initializations each init is drawn."""
    plt = _plt()
    rows = results["trajectory"]
    densities = sorted({r["density"] for r in rows}, reverse=True)
    spawns = sorted({r["spawn_epoch"] for r in rows if r["control"] is None})
    inits = sorted({r["init"] for r in rows})
    cols = min(3, len(densities))
    nrows = -(-len(densities) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    colors = dict(zip(spawns, plt.cm.plasma(np.linspace(0, 0.85, len(spawns)))))
    drops = results["config"].get("lr_drop_epochs") or []
    ticks = sorted({r["epoch"] for r in rows})
    for ax, d in zip(axes.flat, densities):
        for init in inits:
            alpha = 1.0 if init == inits[0] else 0.45
            for t in spawns + [None]:
                rs = sorted((r for r in rows if r["density"] == d and r["init"] == init
                             and r["spawn_epoch"] == t and (r["control"] is None) == (t is not None)),
                            key=lambda r: r["epoch"])
                if not rs:
                    continue
                e = [r["epoch"] for r in rs]
                first = init == inits[0]
                if t is None:
                    ax.plot(e, [_nan(r["kappa_mean"]) for r in rs], color="gray", marker="x",
                            lw=1, alpha=alpha, label="independent inits" if first else None)
                    continue
                ax.plot(e, [_nan(r["kappa_mean"]) for r in rs], color=colors[t], marker="o",
                        ms=3, lw=1.3, alpha=alpha, label=f"siblings, t={t:g}" if first else None)
                ax.plot(e, [_nan(r.get("kappa_with_spawn_mask")) for r in rs], color=colors[t],
                        ls=":", lw=1.1, alpha=alpha,
                        label=f"with W_{t:g}'s mask" if first else None)
        for drop in drops:
            ax.axvline(drop, color="k", ls="--", lw=0.6, alpha=0.5)
        ax.axhline(0, color="gray", lw=0.6)
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(e) for e in ticks])
        ax.tick_params(labelbottom=True)  # every panel its epochs (shared axes hide them)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_title(f"{100 * d:.1f}% density", fontsize=9)
    for ax in axes.flat[len(densities):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("epoch (log scale; dashed: learning-rate drops)")
    for ax in axes[:, 0]:
        ax.set_ylabel("kappa (0 = chance, 1 = identical)")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("Mask consistency through training" + (f" ({len(inits)} inits: the first solid, "
                                                        "the others faded)" if len(inits) > 1 else ""),
                 fontsize=10)
    labels = _legend(axes.flat[0])
    _save(fig, path)
    return labels


def _nan(v) -> float:
    return np.nan if v is None else v


def figure_accuracy(results: dict, path: str) -> list[str]:
    """Test accuracy against density: one panel per (spawn epoch, k), methods vs baseline."""
    plt = _plt()
    rows = results["composition"]
    cells = sorted({(r["spawn_epoch"], r["k"]) for r in rows
                    if r["method"] not in ("baseline", "dense")})
    if not cells:
        cells = [(rows[0]["spawn_epoch"], 1)] if rows else [(0, 1)]
    fig, axes = plt.subplots(1, len(cells), figsize=(3.3 * len(cells), 3.4), squeeze=False,
                             sharey=True)
    dense = {r["spawn_epoch"]: r["mean"] for r in results["dense"] if r.get("spawn_epoch") is not None}
    # The dense control retrained from W_t on the masks' data orders replaces the siblings' mean.
    dense.update({r["spawn_epoch"]: r["test_accuracy_mean"] for r in rows if r["method"] == "dense"})
    styles = {m: _style(m) for m in methods_in(rows) if m not in ("baseline", "dense")}
    styles["baseline"] = ("baseline", "black", "D")
    for ax, (t, kk) in zip(axes[0], cells):
        for method, (label, color, marker) in styles.items():
            rs = sorted((r for r in rows if r["spawn_epoch"] == t and r["method"] == method
                         and (r["k"] == kk or method == "baseline")),
                        key=lambda r: r["target_density"])
            if rs:
                ax.errorbar([100 * r["target_density"] for r in rs],
                            [100 * r["test_accuracy_mean"] for r in rs],
                            yerr=_stderr(rs), color=color, marker=marker, capsize=3, label=label,
                            lw=1)
        _natural_points(ax, results.get("natural_density") or [], t, kk, styles)
        if dense.get(t) is not None:
            ax.axhline(100 * dense[t], color="k", ls="--", lw=0.8, label="dense")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_plt().FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(_plt().NullFormatter())
        ax.set_xlabel("density (% kept)")
        ax.set_title(f"k = {kk}, rewound to epoch {t}", fontsize=9)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.suptitle(_ERROR_BARS, fontsize=8)
    axes[0][-1].legend(fontsize=7)
    labels = sorted({label for ax in axes[0] for label in ax.get_legend_handles_labels()[1]})
    _save(fig, path)
    return labels


def _natural_points(ax, rows: list[dict], t: int, kk: int, styles: dict) -> None:
    """`--natural_density` in a (t, k') panel: each composed mask at its own density (hollow,
    its method's marker) and the one-shot masks retrained at that density (hollow diamonds):
    where it sits against the one-shot curve."""
    for r in rows:
        how, of_k = r["natural_of"]
        if r["spawn_epoch"] != t or of_k != kk or r["method"] == "random_matched":
            continue
        label, color, marker = (styles["baseline"] if r["method"] == "baseline"
                                else styles.get(r["method"], _style(r["method"])))
        label = ("one-shot at a natural density" if r["method"] == "baseline"
                 else f"{label}, natural density")
        if label in ax.get_legend_handles_labels()[1]:
            label = "_nolegend_"  # one legend entry per kind of point
        ax.errorbar([100 * r["achieved_density"]], [100 * r["test_accuracy_mean"]],
                    yerr=_stderr([r]), color=color, marker=marker, mfc="none", capsize=3,
                    ls="none", label=label)


def figure_layers(results: dict, path: str) -> list[str]:
    """Per layer x spawn epoch at the reference density: sibling IoU minus chance at the layer's
    density (left), and the layer's density under global pruning (right)."""
    plt = _plt()
    rows = results["consistency_layers"]
    d = reference_density(sorted({r["density"] for r in rows}))
    rs = [r for r in rows if r["density"] == d and r.get("init", 0) == 0]
    layers = sorted(dict.fromkeys(r["layer"] for r in rs), key=_network_order)
    epochs = sorted({r["spawn_epoch"] for r in rs})
    excess = np.full((len(layers), len(epochs)), np.nan)
    density = np.full_like(excess, np.nan)
    for r in rs:
        at = layers.index(r["layer"]), epochs.index(r["spawn_epoch"])
        if r["iou_mean"] is not None and r["chance_iou"] is not None:  # null: an empty layer
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
    return []


def figure_connectivity(results: dict, path: str) -> list[str]:
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
    labels = [label for ax in axes for label in _legend(ax)]
    _save(fig, path)
    return labels


def figure_baselines(results: dict, path: str) -> list[str]:
    """Test accuracy per mask kind, one panel per (spawn epoch, density): the one-shot baseline
    and the composed masks at the largest k' (rewound to W_t) against random masks and the
    same masks re-initialized. The dashed line is the one-shot baseline."""
    plt = _plt()
    k_max = max((r["k"] for r in results["composition"]), default=1)
    rows = [r for r in results["composition"] + results["random_baselines"]
            if r["k"] in (1, k_max) and r["method"] != "dense"]
    cells = sorted({(r["spawn_epoch"], r["target_density"]) for r in results["random_baselines"]},
                   key=lambda c: (c[0], -c[1]))
    fig, axes = plt.subplots(1, len(cells), figsize=(3.6 * len(cells) + 1.5, 3.8), squeeze=False,
                             sharey=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for ax, (t, d) in zip(axes[0], cells):
        at = {r["method"]: r for r in rows if r["spawn_epoch"] == t and r["target_density"] == d}
        ys = np.arange(len(methods))
        acc = [100 * at[m]["test_accuracy_mean"] if m in at else np.nan for m in methods]
        err = [_stderr([at[m]])[0] if m in at else 0 for m in methods]
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
        ax.set_title(f"{100 * d:.1f}% density, from epoch {t}", fontsize=9, pad=12)
    axes[0][0].invert_yaxis()  # shared: once for all panels
    fig.suptitle(f"Baselines (blue: rewound masks, k' = {k_max}; orange: same masks, fresh init; "
                 f"gray: random masks; {_ERROR_BARS})", fontsize=8, y=1.0)
    _save(fig, path)
    return methods


def figure_imp(results: dict, path: str) -> list[str]:
    """Test accuracy against density for IMP, parallel IMP (each composition), one-shot."""
    plt = _plt()
    rows = results["imp"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    fixed = {"imp": ("IMP", "black", "D"), "oneshot": ("one-shot", "tab:gray", "v")}
    for chain in [c for c in fixed if any(r["chain"] == c for r in rows)] + [
            c for c in methods_in(rows, "chain") if c not in fixed]:
        rs = sorted((r for r in rows if r["chain"] == chain), key=lambda r: -r["target_density"])
        label, color, marker = fixed.get(chain) or _style(chain)
        if chain not in fixed:
            label = f"parallel IMP, {label}"
        ax.errorbar([100 * r["target_density"] for r in rs],
                    [100 * r["test_accuracy_mean"] for r in rs],
                    yerr=_stderr(rs), color=color, marker=marker, capsize=3, lw=1, label=label)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ticks = sorted({100 * r["target_density"] for r in rows})
    ax.set_xticks(ticks, [f"{v:.3g}" for v in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("density (% kept; IMP level L keeps (1 - rate)^L)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Iterative pruning, rewound to epoch {rows[0]['spawn_epoch']}\n{_ERROR_BARS}",
                 fontsize=9)
    ax.legend(fontsize=7)
    labels = _legend(ax)
    _save(fig, path)
    return labels


_ERROR_BARS = "error bars: standard error over the retraining runs (none: one run)"


def _stderr(rows: list[dict]) -> list[float]:
    """Error bars in points: each row's standard error over its runs (0 for one run)."""
    return [100 * (r.get("test_accuracy_stderr") or 0) for r in rows]


def _network_order(layer: str) -> tuple:
    """stem first, then stages and blocks in order, the dense head last."""
    head = layer.split("/")[0]
    if head.startswith("stem"):
        return (0, layer)
    if head.startswith("stage"):
        return (1, layer)
    return (2, layer)
