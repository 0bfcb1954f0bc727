"""Is claim 1 a matter of training length? The imprint experiment.

Claim 1 says siblings spawned at initialization end with masks barely more alike than chance.
With coupled weight decay a weight keeps exp(-wd / (1 - momentum) * sum of learning rates) of its
initial value (`jaxlottery.imprint`): the paper's 160 epochs keep 0.04, a short CPU run
0.98. This experiment holds everything but the weight decay fixed (preset `imprint`: t = 0
siblings and the independent-init control, several inits, no retraining) and sweeps it so that
the retained imprint spans 0.98 to about 0.05; if the siblings' kappa at t = 0 falls toward the
control's (chance) as the imprint fades, the consistency of short runs is the initialization's.
Caveat the readings carry: weight decay also changes the training itself (the effective
learning rate of weights followed by BatchNorm, the final accuracy), so the sweep varies the
imprint and the regime together.

    python experiments/imprint.py --dataset=/usr/share/datasets/fashion-mnist --out=DIR

Each weight decay is an ordinary, resumable study run (`experiment.run`) in `--workdir`; the
sweep writes `summary.json` (one row per weight decay, init and density), `imprint.csv` and
`kappa_vs_imprint.png` into `--out`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Callable

import numpy as np

from jaxlottery import statistics
from jaxlottery.config import Config, ConfigError

WEIGHT_DECAYS = (1e-4, 1e-3, 3e-3, 1e-2, 1.5e-2)
SUMMARY, TABLE, FIGURE = "summary.json", "imprint.csv", "kappa_vs_imprint.png"


def run(base: Config, weight_decays=WEIGHT_DECAYS, workdir: str = "runs", out: str | None = None,
        progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """One study per weight decay (t = 0 must be among the spawn points), then the summary: its
    rows, and (with `out`) the summary file, table and figure. Returns the summary."""
    from jaxlottery import experiment

    if 0 not in base.spawn_epochs:
        raise ConfigError("--spawn_epochs: the imprint sweep reads siblings spawned at t = 0; "
                          "include 0")
    if len(set(weight_decays)) != len(weight_decays) or not weight_decays:
        raise ConfigError(f"--weight_decays: give distinct values, got {list(weight_decays)}")
    configs = [dataclasses.replace(base, weight_decay=wd).validate() for wd in weight_decays]
    results = []
    for i, cfg in enumerate(configs, 1):
        log(f"imprint sweep {i}/{len(configs)}: weight decay {cfg.weight_decay:g}")
        results.append(experiment.run(cfg, workdir=workdir, progress=progress, log=log))
    summary = summarize(results)
    if out is not None:
        write(out, summary)
    return summary


def summarize(results: list[dict]) -> dict:
    """The sweep's rows from its runs' results: per (weight decay, init, density) the retained
    imprint, the t = 0 siblings' kappa and IoU, their kappa with W_0's own mask, the control's
    kappa and the siblings' final test accuracy."""
    rows = []
    for res in results:
        cfg, imprint = res["config"], res["imprint"]
        dense = {r["init"]: r["mean"] for r in res["dense"]
                 if r.get("spawn_epoch") == 0 and r.get("control") is None}
        for r in res["consistency"]:
            if r["spawn_epoch"] != 0:
                continue
            rows.append({"weight_decay": cfg["weight_decay"], "retained": imprint["retained"],
                         "init": r["init"], "density": r["density"],
                         "kappa": r["kappa_mean"], "kappa_std": r["kappa_std"],
                         "iou": r["iou_mean"], "layer_matched_chance_iou": r["layer_matched_chance_iou"],
                         "kappa_with_spawn_mask": r["kappa_with_spawn_mask"],
                         "kappa_control": r["kappa_independent_inits"],
                         "test_accuracy": dense.get(r["init"]), "run_id": res["run_id"]})
    trajectory = [{"weight_decay": res["config"]["weight_decay"],
                   "retained": res["imprint"]["retained"], "init": r["init"], "epoch": r["epoch"],
                   "density": r["density"], "kappa": r["kappa_mean"],
                   "kappa_with_spawn_mask": r["kappa_with_spawn_mask"]}
                  for res in results for r in res.get("trajectory") or []
                  if r["control"] is None and r["spawn_epoch"] == 0]
    return {"rows": rows, "means": means(rows), "trajectory": trajectory,
            "runs": [{"run_id": r["run_id"], "weight_decay": r["config"]["weight_decay"],
                      "retained": r["imprint"]["retained"],
                      "train_images": r["timing"]["train_images"],
                      "training_seconds": sum(r["timing"]["seconds_per_stage"].values())}
                     for r in results],
            "config": {k: v for k, v in results[0]["config"].items() if k != "weight_decay"},
            "dataset": results[0]["dataset"], "environment": results[0]["environment"]}


def means(rows: list[dict]) -> list[dict]:
    """Per (weight decay, density), over inits: the mean kappa of the t = 0 siblings with its
    spread and 95% interval (Student's t, inits - 1 df), and the means of their kappa with W_0's
    mask, of the control's kappa and of the test accuracy."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["weight_decay"], r["density"]), []).append(r)
    out = []
    for (wd, d), rs in groups.items():
        sp = statistics.spread([r["kappa"] for r in rs])
        ci = statistics.interval(sp["mean"], sp["stderr"], len(rs) - 1)
        mean = lambda key: (float(np.mean([r[key] for r in rs]))  # noqa: E731
                            if all(r[key] is not None for r in rs) else None)
        out.append({"weight_decay": wd, "retained": rs[0]["retained"], "density": d,
                    "inits": len(rs), "kappa": sp["mean"], "kappa_std_over_inits": sp["std"],
                    "kappa_ci_low": ci and ci[0], "kappa_ci_high": ci and ci[1],
                    "kappa_with_spawn_mask": mean("kappa_with_spawn_mask"),
                    "kappa_control": mean("kappa_control"), "iou": mean("iou"),
                    "layer_matched_chance_iou": mean("layer_matched_chance_iou"),
                    "test_accuracy": mean("test_accuracy")})
    return out


def write(out: str, summary: dict) -> None:
    """summary.json, imprint.csv and kappa_vs_imprint.png into the folder `out`."""
    from jaxlottery import checkpoint
    from jaxlottery.reading.common import write_csv

    os.makedirs(out, exist_ok=True)
    checkpoint.write_json(os.path.join(out, SUMMARY), summary)
    write_csv(os.path.join(out, TABLE), summary["rows"])
    figure(summary, os.path.join(out, FIGURE))


def figure(summary: dict, path: str) -> list[str]:
    """Left: kappa at t = 0 against the retained imprint, one color per density (each init a
    point, their mean a line), the siblings' kappa with W_0's own mask dotted and the
    independent-init control in gray (chance is 0). Middle: kappa through training at the
    density nearest 10.7%, one color per weight decay (the first init solid). Right: the
    siblings' test accuracy, the confound: weight decay changes the training too."""
    from jaxlottery.reading.common import legend_labels, pyplot, reference_density, save

    plt = pyplot()
    rows = summary["rows"]
    densities = sorted({r["density"] for r in rows}, reverse=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(densities)))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4), gridspec_kw={"width_ratios": [2, 1.4, 1]})
    for n, (d, c) in enumerate(zip(densities, colors)):
        rs = [r for r in rows if r["density"] == d]
        xs = sorted({r["retained"] for r in rs})
        mean = lambda key: [np.mean([r[key] for r in rs if r["retained"] == x  # noqa: E731
                                     and r[key] is not None]) for x in xs]
        axes[0].scatter([r["retained"] for r in rs], [r["kappa"] for r in rs], color=c, s=14)
        axes[0].plot(xs, mean("kappa"), color=c, marker="o", lw=1.5, label=f"{100 * d:.1f}%")
        axes[0].plot(xs, mean("kappa_with_spawn_mask"), color=c, ls=":", lw=1.2)
        if all(r["kappa_control"] is not None for r in rs):
            axes[0].plot(xs, mean("kappa_control"), color="gray", marker="x", lw=0.8,
                         label="independent inits" if n == len(densities) - 1 else None)
    axes[0].axhline(0, color="gray", lw=0.6)
    axes[0].invert_xaxis()
    axes[0].set_xlabel("fraction of the initial value retained at the end (imprint; fades ->)")
    axes[0].set_ylabel("kappa of t = 0 sibling masks")
    axes[0].set_title("Siblings spawned at initialization, weight decay swept\n(points: each "
                      "init; dotted: kappa with W_0's own mask; gray x: independent inits)",
                      fontsize=9)
    axes[0].legend(title="density", fontsize=7)
    traj = summary.get("trajectory") or []
    if traj:
        d = reference_density(sorted({r["density"] for r in traj}))
        decays = sorted({r["weight_decay"] for r in traj})
        shades = dict(zip(decays, plt.cm.magma(np.linspace(0.1, 0.8, len(decays)))))
        inits = sorted({r["init"] for r in traj})
        for wd in decays:
            for i in inits:
                rs = sorted((r for r in traj if r["weight_decay"] == wd and r["init"] == i
                             and r["density"] == d), key=lambda r: r["epoch"])
                axes[1].plot([r["epoch"] for r in rs], [r["kappa"] for r in rs], color=shades[wd],
                             marker="o" if i == inits[0] else None, ms=3,
                             alpha=1.0 if i == inits[0] else 0.4,
                             label=f"{rs[0]['retained']:.2f} (wd {wd:g})" if i == inits[0] else None)
        for drop in summary["config"].get("lr_drop_epochs") or []:
            axes[1].axvline(drop, color="k", ls="--", lw=0.6, alpha=0.5)
        axes[1].axhline(0, color="gray", lw=0.6)
        axes[1].set_xlabel("epoch (dashed: learning-rate drops)")
        axes[1].set_ylabel(f"kappa of t = 0 siblings at {100 * d:.1f}%")
        axes[1].set_title("Through training (first init solid)", fontsize=9)
        axes[1].legend(title="imprint retained", fontsize=7)
    acc = {}
    for r in rows:
        if r["test_accuracy"] is not None:
            acc.setdefault(r["retained"], {})[r["init"]] = r["test_accuracy"]
    xs = sorted(acc)
    axes[2].plot(xs, [100 * np.mean(list(acc[x].values())) for x in xs], marker="o", color="k")
    for x in xs:
        axes[2].scatter([x] * len(acc[x]), [100 * a for a in acc[x].values()], color="k", s=10)
    axes[2].invert_xaxis()
    axes[2].set_xlabel("imprint retained")
    axes[2].set_ylabel("siblings' test accuracy (%)")
    axes[2].set_title("The confound: weight decay changes training too", fontsize=9)
    labels = legend_labels(axes[0])
    save(fig, path)
    return labels


def main(argv: list[str] | None = None) -> int:
    """`experiments/imprint.py`: the study's flags (preset `imprint` by default), plus
    --weight_decays and --out."""
    from jaxlottery import cli, data, experiment, files

    parser = cli.build_parser()
    parser.prog = "experiments/imprint.py"
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--weight_decays", default=",".join(f"{w:g}" for w in WEIGHT_DECAYS),
                        help="weight decays to sweep, comma-separated (default: %(default)s)")
    parser.add_argument("--out", default=None, help="folder for summary.json, imprint.csv and "
                        "kappa_vs_imprint.png (default: WORKDIR/imprint_sweep)")
    args = parser.parse_args(argv)
    if args.preset is None and args.config is None:
        args.preset = "imprint"
    try:
        try:
            decays = [float(x) for x in args.weight_decays.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--weight_decays: expected comma-separated numbers, got "
                              f"{args.weight_decays!r}") from None
        base = cli.config_from_args(args).validate()
        cli.check_launch(args)
        cli.check_accelerator(args)
        out = args.out or os.path.join(args.workdir, "imprint_sweep")
        with cli.compilation_cache(args):
            run(base, decays, workdir=args.workdir, out=out, progress=not args.no_progress)
    except (ConfigError, data.DatasetUnavailableError, data.DataFormatError, files.RunLocked,
            experiment.ConfigMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(os.path.join(out, SUMMARY))
    return 0

