"""report.md, CSV tables and figures from a results dict (jaxlottery.experiment.run's output).

Everything here reads `results` only, so a report can be redrawn from a results.json alone:
`python -m jaxlottery.report RUN_DIR`. The readings are `jaxlottery.verdicts`, the drawings
`jaxlottery.figures`, the file names `jaxlottery.paths`.
"""

from __future__ import annotations

import csv
import io
import os
import sys

from jaxlottery import figures as figs
from jaxlottery import composability, paths, verdicts
from jaxlottery.composability import baselines_verdict, composition_deltas, composition_verdict
from jaxlottery.files import atomic_write_bytes
from jaxlottery.verdicts import (connectivity_table, connectivity_verdict, consistency_verdict,
                                 imp_deltas, imp_verdict, reference_density)

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

DRAW = {"overlap": figs.figure_overlap, "accuracy": figs.figure_accuracy,
        "layers": figs.figure_layers, "trajectory": figs.figure_trajectory,
        "connectivity": figs.figure_connectivity,
        "random_baselines": figs.figure_baselines, "imp": figs.figure_imp}


def figures(results: dict) -> list[str]:
    """The figures a results dict gets: the paper's three (the per-layer one where the results
    have per-layer rows: older files do not), and one per analysis beyond the paper that ran
    (connectivity, random baselines, IMP)."""
    drawn = {"layers": bool(results.get("consistency_layers")),
             "accuracy": bool(results.get("composition"))}
    return [f for key, f in paths.FIGURES.items() if drawn.get(key, True)] + [
        f for section, f in paths.EXTRA_FIGURES.items() if results.get(section)]


# What a results.json needs for a report; the sections beyond it are drawn where present.
REQUIRED = ("config", "run_id", "dataset", "environment", "timing", "dense", "consistency",
            "composition")
OPTIONAL = ("consistency_layers", "random_baselines", "connectivity", "imp", "retrained_masks",
            "mask_overlaps", "trajectory", "imprint", "natural_density")


def write(rundir: str, results: dict) -> dict[str, list[str]]:
    """CSV tables, PNG figures and report.md into `rundir`, each written atomically. Returns
    each figure's legend labels, by file name."""
    computed = {"connectivity": connectivity_table, "differences": verdicts.differences}
    for name in paths.TABLES:
        rows = computed[name](results) if name in computed else results.get(name)
        if rows:  # an empty section (no inits to compare, no retraining) gets no table
            _write_csv(os.path.join(rundir, paths.csv(name)), rows)
    names = {**paths.FIGURES, **paths.EXTRA_FIGURES}
    legends = {}
    for key, name in names.items():
        if name in figures(results):
            legends[name] = DRAW[key](results, os.path.join(rundir, name))
    atomic_write_bytes(os.path.join(rundir, paths.REPORT), markdown(results).encode())
    return legends


def summary(results: dict) -> str:
    """The terminal summary: consistency at the reference density, composition accuracies."""
    rows = results["consistency"]
    d = reference_density(sorted({r["density"] for r in rows}))
    lines = [f"Consistency at density {100 * d:.1f}% (kappa: 0 = layer-matched chance, "
             "1 = identical; the first init):",
             f"  {'t':>6s} {'kappa':>6s} {'IoU':>6s} {'matched':>8s} {'W_t mask':>9s} "
             f"{'indep.':>7s}"]
    for r in sorted((r for r in rows if r["density"] == d and r.get("init", 0) == 0),
                    key=lambda r: r["spawn_epoch"]):
        kappa = r.get("kappa_mean")
        with_spawn = r.get("kappa_with_spawn_mask", r["iou_with_spawn_mask"])
        indep = r.get("kappa_independent_inits", r["iou_independent_inits"])
        lines.append(f"  {r['spawn_epoch']:6g} {_num(kappa, '6.3f')} {r['iou_mean']:6.3f} "
                     f"{r['layer_matched_chance_iou']:8.3f} {_num(with_spawn, '9.3f')} "
                     f"{_num(indep, '7.3f')}")
    retrained = results["composition"] + (results.get("random_baselines") or [])
    if retrained:
        lines.append("Composition (test accuracy %, retrained from W_t):")
        lines.append(f"  {'t':>3s} {'density':>8s} {'method':>19s} {'k':>3s} {'acc':>6s} "
                     f"{'stderr':>6s} {'runs':>4s}")
    for r in retrained:
        lines.append(f"  {r['spawn_epoch']:3d} {100 * r['target_density']:7.1f}% {r['method']:>19s} "
                     f"{r['k']:3d} {100 * r['test_accuracy_mean']:6.2f} "
                     f"{_points(r.get('test_accuracy_stderr')):>6s} {r.get('runs', '-'):>4}")
    if results.get("connectivity"):
        lines.append("Mode connectivity (error barrier, points; stable under 2):")
        for r in connectivity_table(results):
            lines.append(f"  t={r['spawn_epoch']:<3g} {r['bn']:>11s} {r['barrier_points']:6.2f} "
                         f"stderr {_points(r['barrier_stderr'], 1)} over {r['pairs']} pair(s): "
                         f"{r['reading']}")
    if results.get("imp"):
        lines.append("IMP (test accuracy %, rewound to epoch "
                     f"{results['imp'][0]['spawn_epoch']}):")
        for r in sorted(results["imp"], key=lambda r: (r["level"], r["chain"])):
            lines.append(f"  level {r['level']:2d} {100 * r['target_density']:6.1f}% "
                         f"{r['chain']:>12s} {100 * r['test_accuracy_mean']:6.2f} "
                         f"stderr {_points(r.get('test_accuracy_stderr'))} "
                         f"({r.get('runs', '-')} run(s))")
    return "\n".join(lines)


def _num(value: float | None, fmt: str) -> str:
    """A number formatted, or "-" right-aligned in its width where there is none."""
    return format(value, fmt) if value is not None else "-".rjust(int(fmt.split(".")[0]))


def _points(fraction: float | None, scale: float = 100) -> str:
    """A spread in points ("-" where one run leaves it undefined)."""
    return "-" if fraction is None else f"{scale * fraction:.2f}"


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


def model_description(results: dict) -> str:
    """What the run's network is called ("ResNet-20 width 16"); a record written before models
    had names gives its ResNet's depth and width."""
    if "model" in results:
        return results["model"]["description"]
    cfg = results["config"]
    return f"ResNet-{cfg.get('model_depth', 20)} width {cfg.get('model_width', 16)}"


def markdown(results: dict) -> str:
    cfg, ds, env = results["config"], results["dataset"], results["environment"]
    timing = results["timing"]
    synthetic = " **(synthetic data: numbers say nothing about the paper)**" if ds["synthetic"] else ""
    out = [f"# jaxlottery report: run {results['run_id']}\n",
           f"Data: {ds['name']}{synthetic}, {ds['train']} train / {ds['test']} test images "
           f"{tuple(ds['image_shape'])}, {ds['num_classes']} classes. Model: "
           f"{model_description(results)}. {cfg['epochs']} epochs, batch "
           f"{cfg['batch_size']}, k = {cfg['k']} siblings, seed {cfg['seed']}. "
           + _criterion_words(cfg) + "\n",
           f"Ran on {env['device_kind']} ({env['backend']}, {env['device_count']} device(s)), "
           f"jax {env['jax']}: {sum(timing['seconds_per_stage'].values()):.0f} s of training, "
           f"{timing['images_per_s'] or 0:.0f} images/s.\n",
           "## Dense accuracy\n",
           _table([dict(r, who=r.get("control") or f"siblings spawned at epoch {r['spawn_epoch']:g}"
                              + (f", init {r['init']}" if r.get("init") else ""))
                   for r in results["dense"]],
                  [("who", "networks", ""), ("mean", "test accuracy", ".4f"),
                   ("std", "std (ddof=1)", ".4f"), ("stderr", "stderr", ".4f"), ("runs", "runs", "")]),
           "\n## Claim 1: consistency\n",
           "Siblings spawned later share more of their masks; at t = 0 they should overlap "
           "barely more than chance. **kappa** is Cohen's kappa of two masks computed within "
           "each layer and combined over layers: 0 means no more agreement than random masks "
           "with the same per-layer densities (the layer-matched chance), 1 identical masks. "
           "Pairwise over all sibling pairs, beside the IoU of the kept weights, the IoU of the "
           "pruned weights and the agreement with the spawn weights' own magnitude mask:\n",
           _table(results["consistency"], CONSISTENCY_COLUMNS if len(_inits(results)) > 1
                  else CONSISTENCY_COLUMNS[1:]),
           *_over_inits(results),
           f"\n**Verdict:** {consistency_verdict(results)}\n",
           f"\n![overlap]({paths.FIGURES['overlap']})\n"
           + (f"\n![layers]({paths.FIGURES['layers']})\n"
              if paths.FIGURES["layers"] in figures(results) else ""),
           *_trajectory(results),
           *_composition(results)]
    out += _beyond_the_paper(results)
    return "\n".join(out)


def _criterion_words(cfg: dict) -> str:
    """What ranked the weights for every mask: the paper's |w_T|, or another criterion (whose
    masks then are not the paper's; W_t's reference masks stay magnitude masks)."""
    name = cfg.get("criterion", "magnitude")
    if name == "magnitude":
        return "Masks: global magnitude |w_T| (the paper's)."
    return (f"Masks: the **{name}** criterion ranks the weights of every mask (one-shot, "
            f"composed, IMP; `jaxlottery.criteria`), not the paper's magnitude; the spawn "
            f"weights' reference masks stay magnitude masks.")


def _composition(results: dict) -> list[str]:
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
            _table(results["composition"],
                   [("spawn_epoch", "t", ""), ("method", "method", ""), ("k", "k", ""),
                    ("target_density", "target", ".4f"), ("achieved_density", "achieved", ".4f"),
                    ("sibling_density", "per-sibling", ".4f"),
                    ("test_accuracy_mean", "test acc", ".4f"), ("test_accuracy_std", "std", ".4f"),
                    ("test_accuracy_stderr", "stderr", ".4f"), ("runs", "runs", "")]),
            "\nDifferences of family means (accuracy points). The model: a mask's mean over the "
            "orders varies with both the mask (which siblings it came from) and the orders; its "
            "spread within each family, pooled over the cell, gives every difference its "
            "standard error, and p-values are Holm-corrected over the run "
            "(`jaxlottery.composability`). `equivalent within`: the smallest margin the 95% "
            "interval fits in; `IoU with ref.`: how different the compared masks are; `IoU of "
            "replicates`: how different one method's masks are from each other:\n",
            _table([r for r in composability.comparisons(results)
                    if r["section"] == "composition"], COMPARISON_COLUMNS),
            f"\n**Verdict:** {composition_verdict(results)}\n",
            f"\n![accuracy]({paths.FIGURES['accuracy']})\n", *_natural(results)]


def _natural(results: dict) -> list[str]:
    """`--natural_density`: the composed masks at their own density, on the one-shot curve."""
    if not results.get("natural_density"):
        return []
    return ["\n### Composed masks at their natural density\n",
            "Each sibling pruned one-shot to the target density, then composed: the mask keeps "
            "the density composition gives it (`from`: the target). Beside it, one-shot masks "
            "and layer-matched random masks retrained at that same density; hollow markers in "
            "the figure above. Differences in accuracy points, the model above, Holm over these "
            "comparisons:\n",
            _table(composability.natural_comparisons(results),
                   [("from_density", "from", ".4f")] + COMPARISON_COLUMNS),
            f"\n**Verdict:** {composability.natural_verdict(results)}\n"]


CONSISTENCY_COLUMNS = [
    ("init", "init", ""), ("spawn_epoch", "t", "g"), ("density", "density", ".3f"),
    ("kappa_mean", "kappa", ".3f"), ("kappa_std", "std", ".3f"), ("iou_mean", "IoU", ".3f"),
    ("chance_iou", "chance", ".3f"), ("layer_matched_chance_iou", "layer-matched", ".3f"),
    ("pruned_iou_mean", "pruned IoU", ".3f"), ("kappa_with_spawn_mask", "kappa with W_t mask", ".3f"),
    ("iou_with_spawn_mask", "IoU with W_t mask", ".3f"),
    ("kappa_independent_inits", "kappa indep. inits", ".3f"),
    ("iou_independent_inits", "IoU indep. inits", ".3f")]


def _inits(results: dict) -> list[int]:
    return sorted({r.get("init", 0) for r in results["consistency"]})


def _over_inits(results: dict) -> list[str]:
    """The consistency over initializations, when the run has several."""
    rows = results.get("consistency_over_inits")
    if not rows:
        return []
    return [f"\nOver {rows[0]['inits']} initializations (the unit of replication of a claim "
            "about inits): the mean of the per-init means, their spread (ddof=1) and 95% "
            "interval (Student's t):\n",
            _table(rows, [("spawn_epoch", "t", "g"), ("density", "density", ".3f"),
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
            _table(table, cols),
            f"\n![trajectory]({paths.EXTRA_FIGURES['trajectory']})\n"]


def _beyond_the_paper(results: dict) -> list[str]:
    """Report sections for the analyses that ran beyond the paper (the trajectory is drawn
    with claim 1)."""
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
                        ("ci_low", "95% CI low", ".2f"), ("ci_high", "high", ".2f"),
                        ("pairs", "pairs", ""), ("reading", "reading", ""),
                        ("iou_mean", "mask IoU", ".3f"), ("iou_excess", "IoU - matched chance", "+.3f")]),
                f"\n**Reading:** {connectivity_verdict(results)}\n",
                f"\n![connectivity]({paths.EXTRA_FIGURES['connectivity']})\n"]
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
                        ("test_accuracy_stderr", "stderr", ".4f"), ("runs", "runs", "")]),
                "\nDifferences to the one-shot baseline (accuracy points; the model of claim 2's "
                "section; `random_matched` is the positive control):\n",
                _table(composition_deltas(results, "random_baselines"), COMPARISON_COLUMNS),
                f"\n**Reading:** {baselines_verdict(results)}\n",
                f"\n![baselines]({paths.EXTRA_FIGURES['random_baselines']})\n"]
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
                        ("test_accuracy_std", "std", ".4f"), ("runs", "runs", "")]),
                "\nDifferences to single-network IMP (accuracy points, 95% intervals):\n",
                _table(imp_deltas(results),
                       [("level", "level", ""), ("density", "density", ".4f"), ("chain", "chain", ""),
                        ("delta_points", "minus IMP", "+.2f"), ("ci_low", "95% CI low", "+.2f"),
                        ("ci_high", "high", "+.2f"), ("verdict", "verdict", ""),
                        ("noise", "noise from", "")]),
                f"\n**Reading:** {imp_verdict(results)}\n",
                f"\n![imp]({paths.EXTRA_FIGURES['imp']})\n"]
    return out


def _write_csv(path: str, rows: list[dict]) -> None:
    buf = io.StringIO()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def main(argv: list[str] | None = None) -> int:
    """Redraw a run's tables, figures and report from its results.json, and record there the
    verdicts of the current rule (`verdicts.judged`). Exit status 2, one line, for a folder
    that holds no usable results.json; sections an older version did not write are skipped
    with a note."""
    import argparse
    import json

    from jaxlottery.files import read_json, write_json

    parser = argparse.ArgumentParser(prog="python -m jaxlottery.report",
                                     description="Redraw report.md, the CSVs and the figures "
                                     "of a run directory from its results.json.")
    parser.add_argument("rundir", help="a run directory (WORKDIR/<run id>)")
    args = parser.parse_args(argv)
    path = os.path.join(args.rundir, paths.RESULTS)
    try:
        if not os.path.isdir(args.rundir):
            raise ValueError(f"{args.rundir} is not a folder")
        if not os.path.exists(path):
            raise ValueError(f"{args.rundir} has no {paths.RESULTS} (the run has not finished)")
        try:
            results = read_json(path)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is unreadable ({type(e).__name__}: {str(e)[:120]})") from None
        missing = [k for k in REQUIRED if not isinstance(results, dict) or k not in results]
        if missing:
            raise ValueError(f"{path} has no {', '.join(missing)}: not a jaxlottery results file")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key in OPTIONAL:
        if key not in results:
            print(f"note: {path} has no '{key}' (written by an older version): skipped")
    results = verdicts.judged(results)
    write_json(path, results)
    write(args.rundir, results)
    print(os.path.join(args.rundir, paths.REPORT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
