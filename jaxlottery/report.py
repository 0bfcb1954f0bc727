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


def write(rundir: str, results: dict) -> None:
    """CSV tables, PNG figures and report.md into `rundir`, each written atomically."""
    for name in ("dense", "consistency", "consistency_layers", "composition"):
        _write_csv(os.path.join(rundir, f"{name}.csv"), results[name])
    figure_overlap(results, os.path.join(rundir, FIGURES[0]))
    figure_accuracy(results, os.path.join(rundir, FIGURES[1]))
    figure_layers(results, os.path.join(rundir, FIGURES[2]))
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


def composition_deltas(results: dict) -> list[dict]:
    """For each (spawn epoch, k, density, method): accuracy minus the one-shot baseline."""
    rows = results["composition"]
    base = {(r["spawn_epoch"], r["target_density"]): r for r in rows if r["method"] == "baseline"}
    out = []
    for r in rows:
        b = base.get((r["spawn_epoch"], r["target_density"]))
        if r["method"] in ("baseline", "random") or b is None:
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
    for r in results["composition"]:
        lines.append(f"  {r['spawn_epoch']:3d} {100 * r['target_density']:7.1f}% {r['method']:>12s} "
                     f"{r['k']:3d} {100 * r['test_accuracy_mean']:6.2f} "
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
    cells = sorted({(r["spawn_epoch"], r["k"]) for r in rows if r["method"] not in ("baseline", "random")})
    if not cells:
        cells = [(rows[0]["spawn_epoch"], 1)] if rows else [(0, 1)]
    fig, axes = plt.subplots(1, len(cells), figsize=(3.3 * len(cells), 3.4), squeeze=False,
                             sharey=True)
    dense = {r["spawn_epoch"]: r["mean"] for r in results["dense"] if r.get("spawn_epoch") is not None}
    styles = {"union": ("tab:blue", "o"), "intersection": ("tab:orange", "s"),
              "vote": ("tab:green", "^"), "baseline": ("black", "D"), "random": ("tab:gray", "v")}
    for ax, (t, kk) in zip(axes[0], cells):
        for method, (color, marker) in styles.items():
            rs = sorted((r for r in rows if r["spawn_epoch"] == t and r["method"] == method
                         and (r["k"] == kk or method in ("baseline", "random"))),
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
    """Per-layer sibling IoU over layer-matched chance, layers x spawn epoch, at the reference density."""
    plt = _plt()
    rows = results["consistency_layers"]
    d = reference_density(sorted({r["density"] for r in rows}))
    rs = [r for r in rows if r["density"] == d]
    layers = sorted(dict.fromkeys(r["layer"] for r in rs), key=_network_order)
    epochs = sorted({r["spawn_epoch"] for r in rs})
    grid = np.full((len(layers), len(epochs)), np.nan)
    for r in rs:
        grid[layers.index(r["layer"]), epochs.index(r["spawn_epoch"])] = r["iou_mean"] - r["chance_iou"]
    fig, ax = plt.subplots(figsize=(1.2 * len(epochs) + 4, 0.28 * len(layers) + 1.5))
    im = ax.imshow(grid, aspect="auto", cmap="magma")
    ax.set_xticks(range(len(epochs)), [str(e) for e in epochs])
    ax.set_yticks(range(len(layers)), [name.removesuffix("/kernel") for name in layers], fontsize=7)
    ax.set_xlabel("spawn epoch t")
    ax.set_title(f"Per-layer sibling IoU minus chance at {100 * d:.1f}% density", fontsize=9)
    fig.colorbar(im, ax=ax)
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
    return "\n".join(out)


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

