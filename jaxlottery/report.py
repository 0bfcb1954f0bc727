"""report.md, the CSV tables and the figures of a run, and its terminal summary, from its
results dict (jaxlottery.experiment.run's output) alone, so a report can be redrawn from a
results.json: `python -m jaxlottery.report RUN_DIR`.

The assembler: the run's header and dense accuracy, then each analysis of
`jaxlottery.reading.ANALYSES` in turn, with its report section, figures and derived tables
(the readings themselves live there, one module per analysis); the file names are
`jaxlottery.paths`.
"""

from __future__ import annotations

import os
import sys

from jaxlottery import paths, reading
from jaxlottery.files import atomic_write_bytes
from jaxlottery.reading.common import markdown_table, num, points, reference_density, write_csv
from jaxlottery.reading.connectivity import connectivity_table


def figures(results: dict) -> list[str]:
    """The figures a results dict gets: the paper's three (the per-layer one where the results
    have per-layer rows: older files do not), and one per analysis beyond the paper that ran
    (connectivity, random baselines, IMP)."""
    drawn = {f.file for a in reading.ANALYSES if a.present(results)
             for f in a.figures if f.drawn(results)}
    return [f for f in (*paths.FIGURES.values(), *paths.EXTRA_FIGURES.values()) if f in drawn]


# What a results.json needs for a report; the sections beyond it are drawn where present.
REQUIRED = ("config", "run_id", "dataset", "environment", "timing", "dense", "consistency",
            "composition")
OPTIONAL = ("consistency_layers", "random_baselines", "connectivity", "imp", "retrained_masks",
            "mask_overlaps", "trajectory", "imprint", "natural_density")


def write(rundir: str, results: dict) -> dict[str, list[str]]:
    """CSV tables, PNG figures and report.md into `rundir`, each written atomically. Returns
    each figure's legend labels, by file name."""
    derived = {"differences": reading.differences}
    derived.update(table for a in reading.ANALYSES for table in a.tables.items())
    for name in paths.TABLES:
        rows = derived[name](results) if name in derived else results.get(name)
        if rows:  # an empty section (no inits to compare, no retraining) gets no table
            write_csv(os.path.join(rundir, paths.csv(name)), rows)
    draw = {f.file: f.draw for a in reading.ANALYSES for f in a.figures}
    legends = {}
    for name in figures(results):
        legends[name] = draw[name](results, os.path.join(rundir, name))
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
        lines.append(f"  {r['spawn_epoch']:6g} {num(kappa, '6.3f')} {r['iou_mean']:6.3f} "
                     f"{r['layer_matched_chance_iou']:8.3f} {num(with_spawn, '9.3f')} "
                     f"{num(indep, '7.3f')}")
    retrained = results["composition"] + (results.get("random_baselines") or [])
    if retrained:
        lines.append("Composition (test accuracy %, retrained from W_t):")
        lines.append(f"  {'t':>3s} {'density':>8s} {'method':>19s} {'k':>3s} {'acc':>6s} "
                     f"{'stderr':>6s} {'runs':>4s}")
    for r in retrained:
        lines.append(f"  {r['spawn_epoch']:3d} {100 * r['target_density']:7.1f}% {r['method']:>19s} "
                     f"{r['k']:3d} {100 * r['test_accuracy_mean']:6.2f} "
                     f"{points(r.get('test_accuracy_stderr')):>6s} {r.get('runs', '-'):>4}")
    if results.get("connectivity"):
        lines.append("Mode connectivity (error barrier, points; stable under 2):")
        for r in connectivity_table(results):
            lines.append(f"  t={r['spawn_epoch']:<3g} {r['bn']:>11s} {r['barrier_points']:6.2f} "
                         f"stderr {points(r['barrier_stderr'], 1)} over {r['pairs']} pair(s): "
                         f"{r['reading']}")
    if results.get("imp"):
        lines.append("IMP (test accuracy %, rewound to epoch "
                     f"{results['imp'][0]['spawn_epoch']}):")
        for r in sorted(results["imp"], key=lambda r: (r["level"], r["chain"])):
            lines.append(f"  level {r['level']:2d} {100 * r['target_density']:6.1f}% "
                         f"{r['chain']:>12s} {100 * r['test_accuracy_mean']:6.2f} "
                         f"stderr {points(r.get('test_accuracy_stderr'))} "
                         f"({r.get('runs', '-')} run(s))")
    return "\n".join(lines)


def model_description(results: dict) -> str:
    """What the run's network is called ("ResNet-20 width 16"); a record written before models
    had names gives its ResNet's depth and width."""
    if "model" in results:
        return results["model"]["description"]
    cfg = results["config"]
    return f"ResNet-{cfg.get('model_depth', 20)} width {cfg.get('model_width', 16)}"


def markdown(results: dict) -> str:
    """report.md: the run's header and dense accuracy, then each analysis's section."""
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
           markdown_table(
               [dict(r, who=r.get("control") or f"siblings spawned at epoch {r['spawn_epoch']:g}"
                     + (f", init {r['init']}" if r.get("init") else ""))
                for r in results["dense"]],
               [("who", "networks", ""), ("mean", "test accuracy", ".4f"),
                ("std", "std (ddof=1)", ".4f"), ("stderr", "stderr", ".4f"), ("runs", "runs", "")])]
    for analysis in reading.ANALYSES:
        if analysis.section is not None and analysis.present(results):
            out += analysis.section(results)
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


def main(argv: list[str] | None = None) -> int:
    """Redraw a run's tables, figures and report from its results.json, and record there the
    verdicts of the current rule (`reading.judged`). Exit status 2, one line, for a folder
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
    results = reading.judged(results)
    write_json(path, results)
    write(args.rundir, results)
    print(os.path.join(args.rundir, paths.REPORT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
