"""Claim 2, composability: reads the results' `composition` and `natural_density` tables and
their judged comparisons (`jaxlottery.composability`); produces the verdicts (at the matched
densities and at the natural ones), the report's "Claim 2" section and the accuracy-density
figure."""

from __future__ import annotations

from jaxlottery import paths, statistics
from jaxlottery.composability import (COMPOSITION_FAMILY, CONTROL, comparisons,
                                      control_detected, natural_comparisons)
from jaxlottery.reading.common import (ERROR_BARS, error_bars, markdown_table, methods_in, pyplot,
                                       save, style)


# Composition comparisons: the model's numbers (`jaxlottery.composability`) beside each verdict.
COMPARISON_COLUMNS = [
    ("spawn_epoch", "t", ""), ("k", "k'", ""), ("density", "density", ".4f"),
    ("method", "method", ""), ("reference", "minus", ""), ("delta_points", "difference", "+.2f"),
    ("ci_low", "95% CI low", "+.2f"), ("ci_high", "high", "+.2f"),
    ("bound_points", "equivalent within", ".2f"), ("p_holm", "p (Holm)", ".3g"),
    ("p_equivalence_holm", "p equiv. (Holm)", ".3g"), ("masks", "masks", ""),
    ("reference_masks", "ref. masks", ""), ("orders", "orders", ""),
    ("iou", "IoU with ref.", ".3f"), ("replicate_iou", "IoU of replicates", ".3f"),
    ("verdict", "verdict", "")]


def composition_verdict(results: dict) -> str:
    rows = comparisons(results)
    mine = [r for r in rows if r["section"] == "composition"]
    if not mine:
        return "No composed masks were retrained."
    methods = [r for r in mine if r["reference"] in COMPOSITION_FAMILY]
    parts = []
    for reference, words in (("baseline", "minus one-shot pruning"),
                             ("intersection", "union minus intersection"),
                             ("dense", "minus the dense control")):
        these = [r for r in mine if r["reference"] == reference]
        names = dict.fromkeys(r["method"] for r in these)
        for method in names:
            ds = [r for r in these if r["method"] == method]
            worst = min(ds, key=lambda r: r["delta_points"])
            label = words if reference == "intersection" else f"{method} {words}"
            ious = [r["iou"] for r in ds if r["iou"] is not None]
            iou = (f"; masks {min(ious):.2f}-{max(ious):.2f} IoU apart" if ious else "")
            parts.append(f"{label}: {_counts(ds)} over {len(ds)} (k', density) cells; lowest "
                         f"{_cell(worst)}{iou}")
    noise = "; ".join(dict.fromkeys(r["noise"] for r in mine))
    return ("; ".join(parts) + f". Verdicts use Holm's correction over the run's {len(methods)} "
            f"comparisons against one-shot and of union against intersection (the dense "
            f"comparisons as a family of their own); \"equivalent\" means the corrected "
            f"two one-sided tests put the difference within +-{statistics.MARGIN_POINTS:g} "
            f"point. " + control_sentence(rows) + f" Noise: {noise}.")


def _counts(rows: list[dict]) -> str:
    counts = {v: sum(r["verdict"] == v for r in rows) for v in dict.fromkeys(r["verdict"] for r in rows)}
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def _cell(r: dict) -> str:
    ci = "" if r["ci_low"] is None else f", 95% CI {r['ci_low']:+.2f}..{r['ci_high']:+.2f}"
    return f"{r['delta_points']:+.2f} (k'={r['k']}, {100 * r['density']:.1f}%{ci})"


def control_sentence(rows: list[dict]) -> str:
    """Whether the design detected the positive control at each density."""
    control = [r for r in rows if r["section"] == "random_baselines" and r["method"] == CONTROL]
    if not control:
        return ("No positive control was retrained (layer-matched random masks, "
                "--positive_control): this run cannot show it could see a difference, so none of "
                "its \"equivalent\" verdicts stands.")
    parts = [f"{'detected' if control_detected(r) else 'NOT detected'} at "
             f"{100 * r['density']:.1f}% "
             f"(t = {r['spawn_epoch']}: {r['delta_points']:+.2f} points against one-shot, "
             f"Holm p = {r['p_holm']:.3g})" if r["p_holm"] is not None else
             f"not judged at {100 * r['density']:.1f}% (no noise estimate)" for r in control]
    missed = [r for r in control if not control_detected(r)]
    line = "Positive control (layer-matched random masks, one per one-shot mask): " + "; ".join(parts)
    if missed:
        line += ("; where it was not detected, no \"equivalent\" stands (read as inconclusive)")
    return line + "."


def natural_verdict(results: dict) -> str:
    rows = natural_comparisons(results)
    mine = [r for r in rows if r["section"] == "composition" and r["reference"] == "baseline"]
    if not mine:
        return "No composed masks were retrained at their natural density (--natural_density)."
    parts = [f"{r['method']} of {r['k']} from {100 * r['from_density']:.1f}% keeps "
             f"{100 * r['density']:.1f}%: {r['delta_points']:+.2f} points against one-shot at "
             f"that density (95% CI {r['ci_low']:+.2f}..{r['ci_high']:+.2f}; {r['verdict']})"
             if r["ci_low"] is not None else
             f"{r['method']} of {r['k']} from {100 * r['from_density']:.1f}% keeps "
             f"{100 * r['density']:.1f}%: {r['delta_points']:+.2f} points ({r['verdict']})"
             for r in mine]
    return ("At their natural density (the siblings pruned to the target, then composed; "
            "union lands denser, intersection sparser), each composed mask against one-shot "
            "masks at the same density, i.e. above or below the one-shot accuracy-density "
            "curve: " + "; ".join(parts) + f". Holm over these {len(mine)} comparisons. "
            + control_sentence(rows))


def natural_differences(results: dict) -> list[dict]:
    """The natural-density comparisons as differences.csv rows (section `natural_*`)."""
    return [dict(d, section=f"natural_{d['section']}") for d in natural_comparisons(results)]


def section(results: dict) -> list[str]:
    """Claim 2's section: the retrained masks, their paired differences and the verdict."""
    cfg = results["config"]
    if not results["composition"]:
        return ["\n## Claim 2: composability\n",
                "Not run: no spawn point was retrained (`--retrain_spawn_epochs` empty).\n"]
    return ["\n## Claim 2: composability\n",
            "Union, intersection and vote of k' siblings' masks at matched density, each method "
            f"at each k' from up to {cfg.get('mask_replicates', 1)} disjoint groups of siblings "
            "(its replicate masks), retrained from W_t, against one-shot magnitude pruning of "
            "single siblings (baseline), the unpruned network (dense) and layer-matched random "
            f"masks (the positive control); each retrained with {cfg.get('retrain_seeds', 1)} "
            "data order(s), order r shared by every mask. `runs`: the retraining runs a row "
            "averages (masks x orders):\n",
            markdown_table(results["composition"],
                           [("spawn_epoch", "t", ""), ("method", "method", ""), ("k", "k", ""),
                            ("target_density", "target", ".4f"),
                            ("achieved_density", "achieved", ".4f"),
                            ("sibling_density", "per-sibling", ".4f"),
                            ("test_accuracy_mean", "test acc", ".4f"),
                            ("test_accuracy_std", "std", ".4f"),
                            ("test_accuracy_stderr", "stderr", ".4f"), ("runs", "runs", "")]),
            "\nDifferences of family means (accuracy points). The model: a mask's mean over the "
            "orders varies with both the mask (which siblings it came from) and the orders; its "
            "spread within each family, pooled over the cell, gives every difference its "
            "standard error, and p-values are Holm-corrected over the run "
            "(`jaxlottery.composability`). `equivalent within`: the smallest margin the 95% "
            "interval fits in; `IoU with ref.`: how different the compared masks are; `IoU of "
            "replicates`: how different one method's masks are from each other:\n",
            markdown_table([r for r in comparisons(results) if r["section"] == "composition"],
                           COMPARISON_COLUMNS),
            f"\n**Verdict:** {composition_verdict(results)}\n",
            f"\n![accuracy]({paths.FIGURES['accuracy']})\n", *natural_section(results)]


def natural_section(results: dict) -> list[str]:
    """`--natural_density`: the composed masks at their own density, on the one-shot curve."""
    if not results.get("natural_density"):
        return []
    return ["\n### Composed masks at their natural density\n",
            "Each sibling pruned one-shot to the target density, then composed: the mask keeps "
            "the density composition gives it (`from`: the target). Beside it, one-shot masks "
            "and layer-matched random masks retrained at that same density; hollow markers in "
            "the figure above. Differences in accuracy points, the model above, Holm over these "
            "comparisons:\n",
            markdown_table(natural_comparisons(results),
                           [("from_density", "from", ".4f")] + COMPARISON_COLUMNS),
            f"\n**Verdict:** {natural_verdict(results)}\n"]


def figure_accuracy(results: dict, path: str) -> list[str]:
    """Test accuracy against density: one panel per (spawn epoch, k), methods vs baseline."""
    plt = pyplot()
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
    styles = {m: style(m) for m in methods_in(rows) if m not in ("baseline", "dense")}
    styles["baseline"] = ("baseline", "black", "D")
    for ax, (t, kk) in zip(axes[0], cells):
        for method, (label, color, marker) in styles.items():
            rs = sorted((r for r in rows if r["spawn_epoch"] == t and r["method"] == method
                         and (r["k"] == kk or method == "baseline")),
                        key=lambda r: r["target_density"])
            if rs:
                ax.errorbar([100 * r["target_density"] for r in rs],
                            [100 * r["test_accuracy_mean"] for r in rs],
                            yerr=error_bars(rs), color=color, marker=marker, capsize=3, label=label,
                            lw=1)
        _natural_points(ax, results.get("natural_density") or [], t, kk, styles)
        if dense.get(t) is not None:
            ax.axhline(100 * dense[t], color="k", ls="--", lw=0.8, label="dense")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(pyplot().FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(pyplot().NullFormatter())
        ax.set_xlabel("density (% kept)")
        ax.set_title(f"k = {kk}, rewound to epoch {t}", fontsize=9)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.suptitle(ERROR_BARS, fontsize=8)
    axes[0][-1].legend(fontsize=7)
    labels = sorted({label for ax in axes[0] for label in ax.get_legend_handles_labels()[1]})
    save(fig, path)
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
                                else styles.get(r["method"], style(r["method"])))
        label = ("one-shot at a natural density" if r["method"] == "baseline"
                 else f"{label}, natural density")
        if label in ax.get_legend_handles_labels()[1]:
            label = "_nolegend_"  # one legend entry per kind of point
        ax.errorbar([100 * r["achieved_density"]], [100 * r["test_accuracy_mean"]],
                    yerr=error_bars([r]), color=color, marker=marker, mfc="none", capsize=3,
                    ls="none", label=label)

