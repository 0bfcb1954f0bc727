"""Two runs of one design that differ only in how they compute (the compute dtype, a sibling
strategy), compared statistic by statistic against the run-to-run noise of the reference.

A setting meant to change speed and not science (bfloat16 arithmetic, say) may change results
by rounding; the question is whether it changes them more than rerunning the study with another
seed would. Both runs use the same seed (the same initializations and data orders), so each
reported statistic (a cell's mean sibling test accuracy; its kappa, IoU, pruned-set IoU and
kappa with the spawn mask; the control's kappa; the overlap and accuracy at every snapshot of
training) has a paired difference B - A. Its noise is the reference's own replication: with
`--inits` >= 2 the design ran from several initializations, and the root-mean-square
difference of the statistic between two of them, pooled over the cells of one spawn point (and
one of siblings or control), is what a rerun with another seed changes it by. A difference is
"inside the noise" within two of those. With one initialization the noise falls back to the
cell's within-run standard error (the spread over siblings or pairs over the root of their
number), which misses how a rerun changes the shared weights W_t and so understates it: the
comparison says which basis each cell used.

    python experiments/paired.py --preset=imprint --dataset=DIR --vary=compute_dtype=bfloat16

runs the design as given (A) and with the one setting changed (B), both ordinary resumable
study runs in `--workdir`, and writes `comparison.json` and `comparison.csv` into `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import typing
from typing import Any, Callable

import numpy as np

from jaxlottery import statistics
from jaxlottery.config import Config, ConfigError

INSIDE = 2.0  # standard errors of a rerun: the band a difference is judged inside of
# Settings allowed to differ between the two runs (they change how, not what, is computed).
COMPARABLE = ("compute_dtype", "strategy", "steps_per_call", "retrain_chunk", "eval_batch",
              "checkpoint_every", "shard", "data_dir")
COMPARISON, TABLE, FIGURE = "comparison.json", "comparison.csv", "comparison.png"
# (section, statistic, the keys of its cells besides the initialization)
STATISTICS = (("dense", "mean", ("spawn_epoch", "control")),
              *(("consistency", stat, ("spawn_epoch", "density")) for stat in (
                  "kappa_mean", "iou_mean", "pruned_iou_mean", "kappa_with_spawn_mask",
                  "kappa_independent_inits")),
              ("trajectory", "kappa_mean", ("spawn_epoch", "density", "step", "control")),
              ("trajectory", "test_accuracy_mean", ("spawn_epoch", "step", "control")))
# The within-run spread (and the count it is over) of the statistics that have one: the noise
# when the reference ran from one initialization.
SPREADS = {("dense", "mean"): ("std", "runs"), ("consistency", "kappa_mean"): ("kappa_std", "pairs"),
           ("consistency", "iou_mean"): ("iou_std", "pairs"),
           ("trajectory", "kappa_mean"): ("kappa_std", "pairs")}


class IncomparableRuns(ValueError):
    """The two runs differ in what they compute, not only in how."""


def design_differences(a: dict, b: dict) -> dict[str, tuple[Any, Any]]:
    """Config fields (other than the comparable execution settings) on which two results differ."""
    ca, cb = a["config"], b["config"]
    return {k: (ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb))
            if k not in COMPARABLE and ca.get(k) != cb.get(k)}


def _cells(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, dict]:
    """Rows by cell; a key a row lacks reads None (the sibling rows of a section without
    independent-init control rows)."""
    return {tuple(round(r[k], 9) if isinstance(r.get(k), float) else r.get(k) for k in keys): r
            for r in rows}


def compare(a: dict, b: dict) -> dict:
    """Every statistic of `STATISTICS` in both results (`results.json` of run A, the reference,
    and run B), paired by cell. Returns {"setting": {field: (A, B)}, "judged": rows with delta,
    noise, its basis ("rerun": between initializations of A; "within": A's within-run standard
    error), z = delta / noise and `inside` (None where no noise could be estimated),
    "summary": per statistic the cells, how many inside, the largest |z|, the mean delta with
    its t interval over cells}. Raises IncomparableRuns when the designs differ."""
    differ = design_differences(a, b)
    if differ:
        raise IncomparableRuns("the runs differ in what they compute, not only how: " + ", ".join(
            f"{k} {va!r} vs {vb!r}" for k, (va, vb) in differ.items()))
    setting = {k: (a["config"].get(k), b["config"].get(k)) for k in COMPARABLE
               if a["config"].get(k) != b["config"].get(k)}
    judged = []
    for section, stat, keys in STATISTICS:
        ra = _cells(a.get(section) or [], ("init", *keys))
        rb = _cells(b.get(section) or [], ("init", *keys))
        rerun = rerun_noise({c: r[stat] for c, r in ra.items() if r.get(stat) is not None}, keys)
        for cell in sorted(set(ra) & set(rb), key=str):
            x, y = ra[cell], rb[cell]
            if x.get(stat) is None or y.get(stat) is None:
                continue
            where = dict(zip(("init", *keys), cell))
            noise, basis = rerun.get(_group(where)), "rerun"
            if not noise and (section, stat) in SPREADS:  # one init, or inits that agree
                spread, count = SPREADS[section, stat]
                if x.get(spread) and x.get(count):
                    noise, basis = x[spread] / math.sqrt(x[count]), "within"
            delta = y[stat] - x[stat]
            z = delta / noise if noise else None
            judged.append({"section": section, "statistic": stat, **where, "a": x[stat],
                           "b": y[stat], "delta": delta, "noise": noise,
                           "noise_basis": basis if noise else None, "z": z,
                           "inside": None if z is None else bool(abs(z) <= INSIDE)})
    return {"setting": setting, "judged": judged, "summary": summary(judged), "inside": INSIDE}


def _group(where: dict) -> tuple:
    """The cells whose rerun noise is pooled: one spawn point, siblings or the control."""
    return where.get("spawn_epoch"), where.get("control")


def rerun_noise(values: dict[tuple, float], keys: tuple[str, ...]) -> dict[tuple, float]:
    """{noise group: the root-mean-square difference of a statistic between two
    initializations}, from {(init, *keys): value}: for each cell of the design, the differences
    between its initializations' values (every pair), pooled over the cells of a group. Groups
    with a single initialization are left out."""
    design: dict[tuple, list[float]] = {}
    for cell, value in values.items():
        design.setdefault(cell[1:], []).append(value)
    squares: dict[tuple, list[float]] = {}
    for rest, xs in design.items():
        group = _group(dict(zip(keys, rest)))
        squares.setdefault(group, []).extend(
            (xs[i] - xs[j]) ** 2 for i in range(len(xs)) for j in range(i + 1, len(xs)))
    return {g: math.sqrt(float(np.mean(sq))) for g, sq in squares.items() if sq}


def summary(rows: list[dict]) -> list[dict]:
    """Per (section, statistic): cells, how many were judged inside the noise, the largest |z|,
    and the mean difference over cells with a 95% t interval (a shift common to all cells)."""
    out = []
    for key in dict.fromkeys((r["section"], r["statistic"]) for r in rows):
        group = [r for r in rows if (r["section"], r["statistic"]) == key]
        deltas = np.array([r["delta"] for r in group], float)
        zs = [abs(r["z"]) for r in group if r.get("z") is not None]
        mean = float(deltas.mean())
        half = (statistics.t975(len(deltas) - 1) * deltas.std(ddof=1)
                / math.sqrt(len(deltas)) if len(deltas) > 1 else None)
        out.append({"section": key[0], "statistic": key[1], "cells": len(group),
                    "judged": len(zs),
                    "inside": sum(1 for r in group if r.get("inside")),
                    "max_abs_z": max(zs) if zs else None,
                    "mean_delta": mean, "ci_low": None if half is None else mean - half,
                    "ci_high": None if half is None else mean + half,
                    "max_abs_delta": float(np.max(np.abs(deltas)))})
    return out


def verdict(comparison: dict) -> str:
    """One sentence: is every judged statistic inside the noise, and against which noise."""
    judged = [s for s in comparison["summary"] if s["judged"]]
    total = sum(s["judged"] for s in judged)
    inside = sum(s["inside"] for s in judged)
    if not total:
        return "nothing could be judged: no statistic has a noise estimate in the reference"
    bases = {r["noise_basis"] for r in comparison["judged"] if r["noise_basis"]}
    noise = " or ".join(sorted({"rerun": "the change a rerun with another seed makes",
                                "within": "within-run standard errors"}[b] for b in bases))
    if inside == total:
        return (f"every judged statistic ({total} cells) is inside the noise: within "
                f"{INSIDE:g} x {noise}")
    worst = max(judged, key=lambda s: s["max_abs_z"] or 0)
    return (f"{total - inside} of {total} judged cells lie outside the noise (more than "
            f"{INSIDE:g} x {noise}; largest: {worst['section']} {worst['statistic']}, "
            f"{worst['max_abs_z']:.1f} x)")


def run(base: Config, field: str, value: Any, workdir: str = "runs", out: str | None = None,
        progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run A (`base`) and B (`base` with `field` set to `value`), then compare them; with `out`,
    write the comparison there. Returns the comparison, with both run ids."""
    from jaxlottery import experiment

    if field not in COMPARABLE:
        raise ConfigError(f"--vary: {field!r} changes what a run computes; vary one of "
                          f"{', '.join(COMPARABLE)}")
    a = base.validate()
    b = dataclasses.replace(base, **{field: value}).validate()
    if getattr(a, field) == getattr(b, field):
        raise ConfigError(f"--vary: {field} is already {value!r}; give the other value")
    if a.inits < 2:
        log("paired runs: one initialization (--inits=1): the noise is each cell's within-run "
            "standard error, which understates a rerun's; --inits=2 measures it")
    results = []
    for name, cfg in (("A", a), ("B", b)):
        log(f"paired runs: {name}, {field} = {getattr(cfg, field)!r}")
        results.append(experiment.run(cfg, workdir=workdir, progress=progress, log=log))
    comparison = dict(compare(*results), runs={
        "A": {"run_id": results[0]["run_id"], "timing": results[0]["timing"]},
        "B": {"run_id": results[1]["run_id"], "timing": results[1]["timing"]}},
        config=results[0]["config"], dataset=results[0]["dataset"],
        environment=results[0]["environment"], imprint=results[0]["imprint"])
    comparison["verdict"] = verdict(comparison)
    if out is not None:
        write(out, comparison)
    return comparison


def write(out: str, comparison: dict) -> None:
    """comparison.json, comparison.csv (every cell) and comparison.png into `out`."""
    from jaxlottery import checkpoint
    from jaxlottery.reading.common import write_csv

    os.makedirs(out, exist_ok=True)
    checkpoint.write_json(os.path.join(out, COMPARISON), comparison)
    write_csv(os.path.join(out, TABLE), comparison["judged"])
    figure(comparison, os.path.join(out, FIGURE))


def figure(comparison: dict, path: str) -> None:
    """One panel per judged statistic (four to a row): each cell's difference B - A in units of
    its noise (z), the band of +-INSIDE shaded, cells outside it red; cells in the comparison's
    order (by initialization, then spawn point, density, step)."""
    from jaxlottery.reading.common import pyplot, save

    plt = pyplot()
    groups = [s for s in comparison["summary"] if s["judged"]]
    cols = min(4, max(1, len(groups)))
    rows = -(-max(1, len(groups)) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.0 * rows), squeeze=False)
    setting = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in comparison["setting"].items())
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    for ax, s in zip(axes.flat, groups):
        zs = [r["z"] for r in comparison["judged"] if (r["section"], r["statistic"]) ==
              (s["section"], s["statistic"]) and r["z"] is not None]
        ax.axhspan(-comparison["inside"], comparison["inside"], color="0.9")
        ax.axhline(0, color="gray", lw=0.6)
        ax.scatter(range(len(zs)), zs, s=10,
                   c=["k" if abs(z) <= comparison["inside"] else "tab:red" for z in zs])
        ax.set_title(f"{s['section']} {s['statistic']}\n{s['inside']} of {s['judged']} inside",
                     fontsize=8)
        ax.set_xlabel("cell", fontsize=8)
        ax.set_ylabel("(B - A) / noise", fontsize=8)
    fig.suptitle(f"Paired runs ({setting}); shaded: inside the noise", fontsize=10)
    fig.tight_layout()
    save(fig, path)


def main(argv: list[str] | None = None) -> int:
    """`experiments/paired.py`: the study's flags, plus --vary=FIELD=VALUE and --out."""
    from jaxlottery import cli, data, experiment, files

    parser = cli.build_parser()
    parser.prog = "experiments/paired.py"
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--vary", default="compute_dtype=bfloat16", help="the one setting run "
                        "B changes, FIELD=VALUE, FIELD one of " + ", ".join(COMPARABLE)
                        + " (default: %(default)s)")
    parser.add_argument("--out", default=None, help="folder for comparison.json and "
                        "comparison.csv (default: WORKDIR/paired)")
    args = parser.parse_args(argv)
    try:
        field, sep, text = args.vary.partition("=")
        if not sep or field not in COMPARABLE:
            raise ConfigError(f"--vary: expected FIELD=VALUE with FIELD one of "
                              f"{', '.join(COMPARABLE)}, got {args.vary!r}")
        try:
            value = cli._parse(typing.get_type_hints(Config)[field], field)(text)
        except argparse.ArgumentTypeError as e:
            raise ConfigError(f"--vary: {field}: {e}") from None
        base = cli.config_from_args(args).validate()
        cli.check_launch(args)
        cli.check_accelerator(args)
        out = args.out or os.path.join(args.workdir, "paired")
        with cli.compilation_cache(args):
            comparison = run(base, field, value, workdir=args.workdir, out=out,
                             progress=not args.no_progress)
    except (ConfigError, data.DatasetUnavailableError, data.DataFormatError, files.RunLocked,
            experiment.ConfigMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(comparison["verdict"])
    print(os.path.join(out, COMPARISON))
    return 0
