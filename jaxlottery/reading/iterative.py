"""Iterative magnitude pruning, single and parallel: reads the results' `imp` table (and the
dense siblings' spread, `dense`, where a chain has one run); produces each chain's judged
difference to single-network IMP, the reading, the report's section and the figure."""

from __future__ import annotations

import numpy as np

from jaxlottery import paths, statistics
from jaxlottery.composability import dense_noise
from jaxlottery.reading.common import (ERROR_BARS, error_bars, legend_labels, markdown_table,
                                       methods_in, pyplot, save, style)


def _measured(j: dict) -> dict:
    """A judged difference's numbers as table columns (points; the interval as low, high)."""
    ci = j["interval"]
    return {"delta_points": j["difference"], "stderr_points": j["stderr"],
            "ci_low": ci and ci[0], "ci_high": ci and ci[1]}


def _count_verdicts(ds: list[dict]) -> str:
    counts = {v: sum(x["verdict"] == v for x in ds) for v in dict.fromkeys(x["verdict"] for x in ds)}
    return ", ".join(f"{v} in {n}" for v, n in counts.items())


def imp_deltas(results: dict) -> list[dict]:
    """Each chain's accuracy minus single-network IMP's, level by level (levels >= 1; a row
    that is IMP's own, one-shot's level 1, is the reference, not compared), in points, judged
    by `statistics.judge`. The chains train different networks (unpaired): the
    variance of each mean is its runs' spread over its run count, where a chain with one run
    takes the dense siblings' spread at the rewind epoch; df is the smallest of those used."""
    rows = [r for r in results.get("imp") or [] if r["level"] > 0 and not r.get("same_as")]
    ref = {r["level"]: r for r in rows if r["chain"] == "imp"}
    out = []
    for r in rows:
        if r["chain"] == "imp" or r["level"] not in ref:
            continue
        sd_dense, df_dense, k = dense_noise(results, r.get("spawn_epoch"))
        var, dfs, sources = 0.0, [], []
        for g in (r, ref[r["level"]]):
            runs = g.get("runs", 1)
            if runs > 1 and g.get("test_accuracy_std") is not None:
                var += (100 * g["test_accuracy_std"]) ** 2 / runs
                dfs.append(runs - 1)
                sources.append(f"{g['chain']}: its {runs} runs")
            elif sd_dense is not None:
                var += sd_dense**2 / runs
                dfs.append(df_dense)
                sources.append(f"{g['chain']}: one run, the {k} dense siblings' spread")
            else:
                var = float("nan")
        se = float(np.sqrt(var)) if np.isfinite(var) else None
        j = statistics.judge(100 * (r["test_accuracy_mean"] - ref[r["level"]]["test_accuracy_mean"]),
                             se, min(dfs) if dfs and se is not None else None, r.get("runs", 1),
                             "; ".join(sources) or "none")
        out.append({"chain": r["chain"], "level": r["level"], "density": r["target_density"],
                    **_measured(j), "df": j["df"], "verdict": j["verdict"], "noise": j["noise"]})
    return out


def imp_verdict(results: dict) -> str:
    deltas = imp_deltas(results)
    if not deltas:
        return "IMP did not run (--imp_levels=0)."
    parts = []
    for chain in dict.fromkeys(x["chain"] for x in deltas):
        ds = [x for x in deltas if x["chain"] == chain]
        last = max(ds, key=lambda x: x["level"])
        name = "one-shot" if chain == "oneshot" else f"parallel IMP ({chain})"
        ci = ("" if last["ci_low"] is None else
              f", 95% CI {last['ci_low']:+.2f}..{last['ci_high']:+.2f}")
        parts.append(f"{name} - IMP: mean {np.mean([x['delta_points'] for x in ds]):+.2f} points, "
                     f"{last['delta_points']:+.2f} at the last level ({100 * last['density']:.1f}%"
                     f"{ci}: {last['verdict']}; levels: {_count_verdicts(ds)})")
    return "; ".join(parts) + "."


def imp_differences(results: dict) -> list[dict]:
    """The IMP chains minus single-network IMP as differences.csv rows (reference "imp")."""
    return [dict(d, method=d["chain"], reference="imp") for d in imp_deltas(results)]


def section(results: dict) -> list[str]:
    """The section: the chains' accuracies level by level, their differences to single-network
    IMP, the reading, the figure."""
    cfg = results["config"]
    return ["\n## Iterative magnitude pruning, single and parallel\n",
            f"IMP prunes {100 * cfg['imp_rate']:.0f}% of the remaining weights per level and "
            f"rewinds to epoch {results['imp'][0]['spawn_epoch']}. Parallel IMP trains "
            f"{cfg['imp_k'] or cfg['k']} siblings per level and composes their masks into the "
            "next level's mask at exactly the level's density; one-shot prunes the dense "
            "network straight to each density. Level 0 is the dense network:\n",
            markdown_table(sorted(results["imp"], key=lambda r: (r["level"], r["chain"])),
                           [("level", "level", ""), ("target_density", "density", ".4f"),
                            ("chain", "chain", ""), ("test_accuracy_mean", "test acc", ".4f"),
                            ("test_accuracy_std", "std", ".4f"), ("runs", "runs", "")]),
            "\nDifferences to single-network IMP (accuracy points, 95% intervals):\n",
            markdown_table(imp_deltas(results),
                           [("level", "level", ""), ("density", "density", ".4f"),
                            ("chain", "chain", ""), ("delta_points", "minus IMP", "+.2f"),
                            ("ci_low", "95% CI low", "+.2f"), ("ci_high", "high", "+.2f"),
                            ("verdict", "verdict", ""), ("noise", "noise from", "")]),
            f"\n**Reading:** {imp_verdict(results)}\n",
            f"\n![imp]({paths.EXTRA_FIGURES['imp']})\n"]


def figure_imp(results: dict, path: str) -> list[str]:
    """Test accuracy against density for IMP, parallel IMP (each composition), one-shot."""
    plt = pyplot()
    rows = results["imp"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    fixed = {"imp": ("IMP", "black", "D"), "oneshot": ("one-shot", "tab:gray", "v")}
    for chain in [c for c in fixed if any(r["chain"] == c for r in rows)] + [
            c for c in methods_in(rows, "chain") if c not in fixed]:
        rs = sorted((r for r in rows if r["chain"] == chain), key=lambda r: -r["target_density"])
        label, color, marker = fixed.get(chain) or style(chain)
        if chain not in fixed:
            label = f"parallel IMP, {label}"
        ax.errorbar([100 * r["target_density"] for r in rs],
                    [100 * r["test_accuracy_mean"] for r in rs],
                    yerr=error_bars(rs), color=color, marker=marker, capsize=3, lw=1, label=label)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ticks = sorted({100 * r["target_density"] for r in rows})
    ax.set_xticks(ticks, [f"{v:.3g}" for v in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("density (% kept; IMP level L keeps (1 - rate)^L)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Iterative pruning, rewound to epoch {rows[0]['spawn_epoch']}\n{ERROR_BARS}",
                 fontsize=9)
    ax.legend(fontsize=7)
    labels = legend_labels(ax)
    save(fig, path)
    return labels

