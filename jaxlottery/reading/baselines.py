"""Random and re-initialized baselines: reads the results' `random_baselines` table and its
judged comparisons with the rewound one-shot masks (`jaxlottery.composability`); produces the
reading, the report's section and the figure."""

from __future__ import annotations

import numpy as np

from jaxlottery import paths
from jaxlottery.composability import comparisons, composition_deltas
from jaxlottery.reading.common import ERROR_BARS, error_bars, markdown_table, pyplot, save
from jaxlottery.reading.composition import COMPARISON_COLUMNS


def baselines_verdict(results: dict) -> str:
    rows = [r for r in comparisons(results) if r["section"] == "random_baselines"]
    if not rows:
        return "No random or re-initialized baselines were retrained (--random_baselines)."
    parts = []
    for method in dict.fromkeys(r["method"] for r in rows):
        parts.append(f"{method} " + ", ".join(
            f"{r['delta_points']:+.2f} at {100 * r['density']:.1f}%"
            for r in sorted((r for r in rows if r["method"] == method), key=lambda r: -r["density"])))
    below = [r for r in rows if r["delta_points"] < 0 and r["verdict"].startswith("effect")]
    line = ("Accuracy minus the rewound one-shot masks, points: " + "; ".join(parts) + ". "
            f"{len(below)} of {len(rows)} cells fall below them (Holm-corrected within each "
            "baseline family; noise: " + "; ".join(dict.fromkeys(r["noise"] for r in rows)) + ")")
    if len(below) == len(rows):
        line += ": both the magnitude masks and the rewound weights matter here"
    return line + "."


def section(results: dict) -> list[str]:
    """The section: the baselines' accuracies, their differences to the one-shot baseline, the
    reading, the figure."""
    return ["\n## Random and re-initialized baselines\n",
            "`random`: uniformly random masks at the same global density; `random_matched`: "
            "random within each layer at the one-shot mask's per-layer densities; `*_reinit`: "
            "the one-shot and composed masks trained from a fresh initialization instead of "
            "the rewound weights W_t. All retrained like the others:\n",
            markdown_table(results["random_baselines"],
                           [("spawn_epoch", "t", ""), ("method", "method", ""), ("k", "k", ""),
                            ("target_density", "density", ".4f"),
                            ("test_accuracy_mean", "test acc", ".4f"),
                            ("test_accuracy_std", "std", ".4f"),
                            ("test_accuracy_stderr", "stderr", ".4f"), ("runs", "runs", "")]),
            "\nDifferences to the one-shot baseline (accuracy points; the model of claim 2's "
            "section; `random_matched` is the positive control):\n",
            markdown_table(composition_deltas(results, "random_baselines"), COMPARISON_COLUMNS),
            f"\n**Reading:** {baselines_verdict(results)}\n",
            f"\n![baselines]({paths.EXTRA_FIGURES['random_baselines']})\n"]


def figure_baselines(results: dict, path: str) -> list[str]:
    """Test accuracy per mask kind, one panel per (spawn epoch, density): the one-shot baseline
    and the composed masks at the largest k' (rewound to W_t) against random masks and the
    same masks re-initialized. The dashed line is the one-shot baseline."""
    plt = pyplot()
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
        err = [error_bars([at[m]])[0] if m in at else 0 for m in methods]
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
                 f"gray: random masks; {ERROR_BARS})", fontsize=8, y=1.0)
    save(fig, path)
    return methods

