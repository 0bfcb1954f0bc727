"""Claim 1, consistency: reads the results' `consistency`, `consistency_over_inits`,
`consistency_layers` and `trajectory` tables (and the schedule in `config`, for the imprint);
produces the verdict, the report's "Claim 1" and "Overlap through training" sections and the
overlap, per-layer and trajectory figures."""

from __future__ import annotations

import types

import numpy as np

from jaxlottery import imprint, paths, statistics
from jaxlottery.reading.common import (legend_labels, markdown_table, pyplot, reference_density,
                                       save)


# Landis & Koch's "slight agreement": a kappa under this is what the readings call close to
# chance ("not much more similar than chance", the paper's claim 1 at t = 0).
SLIGHT_KAPPA = 0.2


def imprint_of(results: dict) -> dict:
    """The run's `imprint` section, computed from its configuration where an older results
    file has none (`results.imprint`)."""
    if results.get("imprint"):
        return results["imprint"]
    cfg, n = results["config"], results["dataset"]["train"]
    recipe = types.SimpleNamespace(**{**_RECIPE_DEFAULTS, **cfg})
    retained = imprint.retained(recipe, n)
    spe = -(-n // recipe.batch_size)
    first = min(cfg.get("lr_drop_epochs") or [cfg["epochs"]])
    return {"retained": retained, "testable_below": imprint.TESTABLE,
            "can_test_claim_1": retained <= imprint.TESTABLE,
            "spawn_points": [{"spawn_epoch": t, "spawn_iteration": t * spe,
                              "retained": imprint.retained(recipe, n, t * spe)}
                             for t in cfg["spawn_epochs"]],
            "late_spawn_points": [t for t in cfg["spawn_epochs"] if t >= first]}


_RECIPE_DEFAULTS = {"lr_drop_factor": 0.1, "momentum": 0.9}


def imprint_sentence(results: dict) -> str:
    """What the initialization's imprint says about the run's power to test claim 1."""
    imp = imprint_of(results)
    kept = imp["retained"]
    text = (f"This run's schedule keeps {kept:.2f} of each weight's initial value in the final "
            f"weights (exp(-wd/(1-momentum) x sum of learning rates); the paper's recipe keeps "
            f"about 0.04)")
    criterion = results["config"].get("criterion", "magnitude")
    if criterion != "magnitude":
        return text + (f". Its masks rank by the {criterion} criterion, not the paper's "
                       "magnitude, so it does not test claim 1 (a claim about magnitude masks) "
                       "whatever the imprint; beside a magnitude run from the same seed it says "
                       "how much of that run's overlap comes from ranking by magnitude.")
    if kept > imp["testable_below"]:
        return text + (f": more than {imp['testable_below']:.2f}, so its magnitude masks largely "
                       "restate W_0's magnitudes and it cannot test claim 1 (near chance at "
                       "t = 0) either way.")
    return text + (f": at most {imp['testable_below']:.2f}, so the initialization's magnitudes no "
                   "longer dominate the final ones and the run can test claim 1.")


def over_inits(rows: list[dict]) -> list[dict]:
    """Consistency per (spawn point, density) over initializations: for each statistic the
    mean over inits of the per-init means, and for kappa and IoU their spread (ddof=1) and 95%
    interval over inits (Student's t, inits - 1 degrees of freedom): the init is the unit of
    replication of a claim about initializations."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["spawn_epoch"], r["density"]), []).append(r)
    out = []
    for (t, d), rs in groups.items():
        row = {"spawn_epoch": t, "density": d, "inits": len(rs)}
        for stat in ("kappa_mean", "iou_mean"):
            values = [r[stat] for r in rs if r.get(stat) is not None]
            sp = statistics.spread(values)
            ci = statistics.interval(sp["mean"], sp["stderr"], len(values) - 1) if values else None
            name = stat.removesuffix("_mean")
            row.update({stat: sp["mean"], f"{name}_std_over_inits": sp["std"],
                        f"{name}_ci_low": ci and ci[0], f"{name}_ci_high": ci and ci[1]})
        for stat in ("layer_matched_chance_iou", "iou_with_spawn_mask", "kappa_with_spawn_mask",
                     "kappa_independent_inits"):
            values = [r[stat] for r in rs if r.get(stat) is not None]
            row[stat] = float(np.mean(values)) if values else None
        out.append(row)
    return out


def _per_init(rows: list[dict], d: float) -> list[dict]:
    """The reading's rows at density d, one per spawn point: over inits where the run has
    several, else init 0's."""
    return sorted((r for r in rows if r["density"] == d), key=lambda r: r["spawn_epoch"])


def consistency_verdict(results: dict) -> str:
    rows = results["consistency"]
    d = reference_density(sorted({r["density"] for r in rows}))
    several = results.get("consistency_over_inits") or []
    at = _per_init(several if several else [r for r in rows if r.get("init", 0) == 0], d)
    first, last = at[0], at[-1]
    has_kappa = first.get("kappa_mean") is not None
    if several:
        spread_of = lambda r: (f" (95% interval over {r['inits']} inits "  # noqa: E731
                               f"{r['kappa_ci_low']:+.3f}..{r['kappa_ci_high']:+.3f})")
    else:
        spread_of = lambda r: ("" if r.get("kappa_std") is None else  # noqa: E731
                               f" +- {r['kappa_std']:.3f} (std over {r.get('pairs', '?')} pairs)")
    if has_kappa:
        later = (f" and {last['kappa_mean']:.3f}{spread_of(last)} at epoch "
                 f"{last['spawn_epoch']:g}" if len(at) > 1 else "")
        iou = (f"{first['iou_mean']:.3f} -> {last['iou_mean']:.3f}" if len(at) > 1
               else f"{first['iou_mean']:.3f}")
        line = (f"At density {100 * d:.1f}%: sibling kappa {first['kappa_mean']:.3f}"
                f"{spread_of(first)} when spawned at epoch {first['spawn_epoch']:g}{later} "
                "(Cohen's kappa within each layer, combined: 0 = random masks with the same "
                f"per-layer densities, 1 = identical); IoU {iou} against layer-matched chance "
                f"{first['layer_matched_chance_iou']:.3f}")
        control = first.get("kappa_independent_inits")
        if control is not None:
            line += f"; independently initialized networks: kappa {control:.3f}"
        rises = last["kappa_mean"] - first["kappa_mean"] > (
            0 if several and last["kappa_ci_low"] is not None and first["kappa_ci_high"] is not None
            and last["kappa_ci_low"] > first["kappa_ci_high"] else
            2 * max(first.get("kappa_std") or 0, last.get("kappa_std") or 0, 1e-3))
    else:  # an older results file: IoU only
        excess = lambda r: r["iou_mean"] - r["layer_matched_chance_iou"]  # noqa: E731
        line = (f"At density {100 * d:.1f}%: sibling IoU {first['iou_mean']:.3f} when spawned "
                f"at epoch {first['spawn_epoch']:g} and {last['iou_mean']:.3f} at epoch "
                f"{last['spawn_epoch']:g}; naive chance {first['chance_iou']:.3f}, layer-matched "
                f"chance {first['layer_matched_chance_iou']:.3f}. Excess over layer-matched "
                f"chance: {excess(first):+.3f} -> {excess(last):+.3f}")
        rises = excess(last) - excess(first) > 2 * max(first.get("iou_std") or 0,
                                                       last.get("iou_std") or 0, 1e-3)
    if len(at) > 1:
        line += " (rises with the spawn point)." if rises else " (no clear rise with the spawn point)."
    else:
        line += "."
    imp = imprint_of(results)
    line += " " + imprint_sentence(results)
    t0 = first if first["spawn_epoch"] == 0 else None
    if t0 is not None and has_kappa and imp["can_test_claim_1"]:
        word = ("close to chance (slight agreement, kappa under "
                f"{SLIGHT_KAPPA:g}), as the paper says" if t0["kappa_mean"] < SLIGHT_KAPPA else
                f"well above chance (kappa {SLIGHT_KAPPA:g} or more), against the paper")
        line += f" At t = 0 the siblings' masks are {word}."
    with_spawn = first.get("kappa_with_spawn_mask" if has_kappa else "iou_with_spawn_mask")
    if with_spawn is not None and with_spawn >= first["kappa_mean" if has_kappa else "iou_mean"] - 0.02:
        line += (f" Siblings spawned at epoch {first['spawn_epoch']:g} agree with the spawn "
                 f"weights' own mask ({'kappa' if has_kappa else 'IoU'} {with_spawn:.3f}) about as "
                 "much as with each other: their agreement is inherited from W_t.")
    late = imp.get("late_spawn_points") or []
    if late:
        line += (f" Spawn point(s) {', '.join(f'{t:g}' for t in late)} lie at or after the first "
                 "learning-rate drop: not \"a few epochs of shared pretraining\" in the paper's "
                 "sense.")
    return line


CONSISTENCY_COLUMNS = [
    ("init", "init", ""), ("spawn_epoch", "t", "g"), ("density", "density", ".3f"),
    ("kappa_mean", "kappa", ".3f"), ("kappa_std", "std", ".3f"), ("iou_mean", "IoU", ".3f"),
    ("chance_iou", "chance", ".3f"), ("layer_matched_chance_iou", "layer-matched", ".3f"),
    ("pruned_iou_mean", "pruned IoU", ".3f"), ("kappa_with_spawn_mask", "kappa with W_t mask", ".3f"),
    ("iou_with_spawn_mask", "IoU with W_t mask", ".3f"),
    ("kappa_independent_inits", "kappa indep. inits", ".3f"),
    ("iou_independent_inits", "IoU indep. inits", ".3f")]


def section(results: dict) -> list[str]:
    """Claim 1's report section (the consistency table, the means over initializations where
    the run has several, the verdict, the figures), then the overlap through training where
    the run measured it."""
    columns = CONSISTENCY_COLUMNS if len(_inits(results)) > 1 else CONSISTENCY_COLUMNS[1:]
    return ["\n## Claim 1: consistency\n",
            "Siblings spawned later share more of their masks; at t = 0 they should overlap "
            "barely more than chance. **kappa** is Cohen's kappa of two masks computed within "
            "each layer and combined over layers: 0 means no more agreement than random masks "
            "with the same per-layer densities (the layer-matched chance), 1 identical masks. "
            "Pairwise over all sibling pairs, beside the IoU of the kept weights, the IoU of the "
            "pruned weights and the agreement with the spawn weights' own magnitude mask:\n",
            markdown_table(results["consistency"], columns),
            *_over_inits_table(results),
            f"\n**Verdict:** {consistency_verdict(results)}\n",
            f"\n![overlap]({paths.FIGURES['overlap']})\n"
            + (f"\n![layers]({paths.FIGURES['layers']})\n"
               if results.get("consistency_layers") else ""),
            *_trajectory(results)]


def _inits(results: dict) -> list[int]:
    return sorted({r.get("init", 0) for r in results["consistency"]})


def _over_inits_table(results: dict) -> list[str]:
    """The consistency over initializations, when the run has several."""
    rows = results.get("consistency_over_inits")
    if not rows:
        return []
    return [f"\nOver {rows[0]['inits']} initializations (the unit of replication of a claim "
            "about inits): the mean of the per-init means, their spread (ddof=1) and 95% "
            "interval (Student's t):\n",
            markdown_table(rows, [
                ("spawn_epoch", "t", "g"), ("density", "density", ".3f"),
                ("kappa_mean", "kappa", ".3f"), ("kappa_std_over_inits", "std", ".3f"),
                ("kappa_ci_low", "95% CI low", ".3f"), ("kappa_ci_high", "high", ".3f"),
                ("iou_mean", "IoU", ".3f"), ("iou_ci_low", "IoU CI low", ".3f"),
                ("iou_ci_high", "high", ".3f"),
                ("kappa_with_spawn_mask", "kappa with W_t mask", ".3f"),
                ("kappa_independent_inits", "kappa indep. inits", ".3f")])]


def _trajectory(results: dict) -> list[str]:
    """The overlap through training: a table at the reference density (kappa of the siblings
    per spawn point, and of the control, at every snapshot epoch) and the figure."""
    rows = [r for r in results.get("trajectory") or [] if r["init"] == 0]
    if not rows:
        return []
    d = reference_density(sorted({r["density"] for r in rows}))
    rows = [r for r in rows if r["density"] == d]
    who = list(dict.fromkeys((r["spawn_epoch"], r["control"]) for r in sorted(
        rows, key=lambda r: (r["control"] is not None, r["spawn_epoch"] or 0))))
    table = []
    for epoch in sorted({r["epoch"] for r in rows}):
        line = {"epoch": epoch}
        for t, control in who:
            r = next((r for r in rows if r["epoch"] == epoch and r["spawn_epoch"] == t
                      and r["control"] == control), None)
            line[str((t, control))] = None if r is None else r["kappa_mean"]
            if control is None and r is not None:
                line[f"spawn{t}"] = r.get("kappa_with_spawn_mask")
        line["lr"] = next(r["lr"] for r in rows if r["epoch"] == epoch)
        table.append(line)
    cols = [("epoch", "epoch", ""), ("lr", "lr", "g")]
    for t, control in who:
        cols.append((str((t, control)), "control" if control else f"t={t:g}", ".3f"))
        if control is None:
            cols.append((f"spawn{t}", f"t={t:g} with W_t mask", ".3f"))
    return ["\n## Overlap through training\n",
            f"At every snapshot epoch each sibling's one-shot masks were made and compared: kappa "
            f"at {100 * d:.1f}% density between siblings (per spawn point t), with the spawn "
            "weights' own mask, and between the independently initialized control networks "
            "(`trajectory.csv` has every density, IoU and pruned-set IoU; "
            "`trajectory_layers.csv` kappa by layer):\n",
            markdown_table(table, cols),
            f"\n![trajectory]({paths.EXTRA_FIGURES['trajectory']})\n"]


def figure_overlap(results: dict, path: str) -> list[str]:
    """Sibling mask agreement against spawn epoch, one line per density: IoU with both chance
    baselines (left) and Cohen's kappa, whose chance is 0 (right, where the run has it). With
    several initializations, each init is a thin line and their mean a thick one."""
    plt = pyplot()
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
    labels = legend_labels(axes[0])
    save(fig, path)
    return labels


def figure_layers(results: dict, path: str) -> list[str]:
    """Per layer x spawn epoch at the reference density: sibling IoU minus chance at the layer's
    density (left), and the layer's density under global pruning (right)."""
    plt = pyplot()
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
    save(fig, path)
    return []


def figure_trajectory(results: dict, path: str) -> list[str]:
    """Overlap through training: one panel per density, sibling kappa against epoch for each
    spawn point (solid), their kappa with the spawn weights' own mask (dotted: the imprint of
    W_t), the independent-init control (gray, chance is 0) and the learning-rate drops (dashed
    verticals). With several initializations each init is drawn."""
    plt = pyplot()
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
    labels = legend_labels(axes.flat[0])
    save(fig, path)
    return labels


def _nan(v) -> float:
    return np.nan if v is None else v


def _network_order(layer: str) -> tuple:
    """stem first, then stages and blocks in order, the dense head last."""
    head = layer.split("/")[0]
    if head.startswith("stem"):
        return (0, layer)
    if head.startswith("stage"):
        return (1, layer)
    return (2, layer)

