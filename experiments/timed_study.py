"""A full-size study on real data, sized to fit a time budget from measured rates.

    PYTHONPATH=. python experiments/timed_study.py --dataset=DATA --budget=330 \\
        --bench=BENCH/accelerator.json --out=OUT
    python experiments/timed_study.py --dataset=DATA --size=tiny --out=OUT   # CPU: toy size

ResNet-20 (width 16) on the whole dataset with the paper's recipe shape scaled down: k = 4
siblings spawned at epochs 0, 2 and 5, densities 21%, 10.7% and 4.4%, two independent inits,
composition (union, intersection, vote of 2 and 4 siblings) retrained from W_2 at 10.7% beside
two one-shot baselines and the dense control, two connectivity pairs per spawn point. The
schedule's length E is the only thing cut to fit the budget (drops at E/2 and 22E/30, the
paper's 80/120 of 160 in proportion to the 15/22 of a 30-epoch schedule): the largest E in
`EPOCHS`, tried first with two retraining data orders, whose predicted time fits.

The prediction uses `benchmarks/accelerator.py`'s measured rates (`--bench`): training images
at each stage's stack size, in the fastest way measured near k siblings; test images per
second for the per-epoch evaluations; its measured compile times for the programs the study
compiles. Without a benchmark it assumes the rates given by --images_per_s.

`--design=claim1` is the decisive run of claim 1 instead (siblings at t = 0 only, PROTOCOL.md's
"what a run can test"): the paper's recipe (drops at 50% and 75% of the schedule) for as many of
the paper's 160 epochs as fit, `CLAIM1_EPOCHS` tried longest first, at each length cutting the
siblings and then the control (`CLAIM1_SHAPES`) before the schedule; snapshots of the overlap at
about ten epochs (auto); no retraining. It states the initialization's imprint its schedule
keeps (`jaxlottery.imprint`).

Writes to OUT: results.json, report.md, run.json (device, date, chosen schedule, predicted and
measured seconds, peak memory), log.txt and report.tar.gz (the CSVs and figures), at most 8
files, as a lent device's call brings back.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # noqa: E402

from jaxlottery import experiment, paths  # noqa: E402
from jaxlottery.config import Config  # noqa: E402

EPOCHS = (30, 24, 20, 16, 12, 10, 8)
PROGRAMS = 14  # large compiled programs of a study of this shape (training and evaluation)
FIXED_S = 40.0  # start-up, data, masks, consistency, report and figures (an estimate)


SIZES = {"full": {},
         "calibrate": dict(train_subset=2048, test_subset=1000),
         "tiny": dict(model="cifar_resnet_8_4", train_subset=2000, test_subset=500)}


def study(dataset: str, epochs: int, retrain_seeds: int, size: str = "full") -> Config:
    """The study's configuration at schedule length `epochs`; `size` "calibrate" keeps the
    model and every program but trains on subsets (its wall time is the study's fixed cost:
    compilation, evaluation set-up, report), "tiny" also shrinks the model (a CPU check)."""
    drops = (epochs // 2, round(epochs * 22 / 30))
    return Config(dataset=dataset, epochs=epochs, lr_drop_epochs=tuple(sorted(set(drops))), k=4,
                  spawn_epochs=(0, 2, 5), densities=(0.8**7, 0.8**10, 0.8**14),
                  independent_inits=2, k_values=(2, 4), retrain_spawn_epochs=(2,),
                  retrain_densities=(0.8**10,), baseline_siblings=2, retrain_seeds=retrain_seeds,
                  lmc_pairs=2, **SIZES[size])


CLAIM1_PROGRAMS = 6  # two stacks (siblings, control), each a full and a tail program and evaluation
CLAIM1_EPOCHS = (160, 120, 100, 80, 60, 50, 40, 30, 20, 12)
CLAIM1_SHAPES = ((4, 2), (3, 2), (2, 2), (2, 0))  # (siblings, control networks), in cutting order


def claim1(dataset: str, epochs: int, k: int, control: int, size: str = "full") -> Config:
    """Claim 1 at schedule length `epochs`: k siblings spawned at initialization and `control`
    independently initialized networks, the paper's recipe with drops at 50% and 75%."""
    drops = tuple(sorted({epochs // 2, epochs * 3 // 4} - {0}))
    return Config(dataset=dataset, epochs=epochs, lr_drop_epochs=drops, k=k, spawn_epochs=(0,),
                  densities=(0.8**7, 0.8**10, 0.8**14), independent_inits=control,
                  k_values=(2,), retrain_spawn_epochs=(), baseline_siblings=1, lmc_pairs=0,
                  **SIZES[size])


def stack_sizes(cfg: Config) -> dict[str, int]:
    masks = cfg.masks_per_density() * len(cfg.retrain_densities) + cfg.baseline_siblings + 1
    return {"shared": 1, "siblings": cfg.k, "independent": cfg.independent_inits,
            "retrain": masks * cfg.retrain_seeds}


def _way(row: dict) -> str:
    """A benchmark row's way (rows written before ways had names: MODE:STRATEGY)."""
    return row.get("way") or f"{row['mode']}:{row['strategy']}"


def rates(bench: dict | None, fallback: float,
          way: str | None = None) -> tuple[dict, float, float, dict]:
    """From a benchmark: training images/s per measured stack size in `way` (MODE:STRATEGY
    [+VARIANT], as the benchmark names it), by default the fastest float32 way measured at the
    stack size nearest k = 4 (bfloat16 changes the arithmetic: only when asked); evaluation
    images/s; the median compile seconds of a program in that way; the way as Config fields."""
    if not bench or not bench.get("training"):
        return {}, fallback, 20.0, {}
    rows = [r for r in bench["training"] if "images_per_s" in r]
    if way is None:
        plain = [r for r in rows if r.get("dtype", "float32") == "float32"]
        nearest = min({r["k"] for r in plain}, key=lambda k: (abs(k - 4), -k))
        way = _way(max((r for r in plain if r["k"] == nearest), key=lambda r: r["images_per_s"]))
    same = [r for r in rows if _way(r) == way]
    if not same:
        raise SystemExit(f"the benchmark measured no row of {way}")
    row = same[0]
    by_k = {r["k"]: r["images_per_s"] for r in same}
    evaluation = max((r["images_per_s"] for r in bench.get("evaluation", [])), default=fallback)
    compile_s = sorted(r["compile_s"] for r in same)[len(same) // 2]
    how = {"strategy": row["strategy"],
           "steps_per_call": 1 if row["mode"] == "step" else bench["size"]["per_call"],
           "xla_options": row.get("xla_options", "none"),
           "flat_update": row.get("flat_update", False),
           "compute_dtype": row.get("dtype", "float32")}
    return by_k, evaluation, compile_s, how


def predict(cfg: Config, n_train: int, n_test: int, by_k: dict, fallback: float,
            eval_rate: float, fixed_s: float, checkpoint_s: float = 0.0,
            sequential: bool = False) -> float:
    """Seconds the study should take: training at the measured rate of the nearest stack size
    (per image of the stack), per-epoch evaluations, a checkpoint per epoch of every stage
    (`checkpoint_s` each: the full write, as the next save waits for it) and the fixed cost
    (compilation, set-up, report). A stack smaller than the nearest one measured trains at
    the same images/s when its members run one after another (`sequential`: loop, map,
    separate; time per step grows with k), else at that rate times k / measured k (vmap: a
    step of the smaller stack is assumed to take as long)."""
    cost = cfg.network_epochs()
    seconds = fixed_s
    for stage, k in stack_sizes(cfg).items():
        rate = fallback
        if by_k:
            near = min(by_k, key=lambda m: (abs(m - k), -m))
            rate = by_k[near] * (1.0 if sequential else min(1.0, k / near))
        seconds += cost.get(stage, 0.0) * n_train / rate
        seconds += cost.get(stage, 0.0) * n_test / eval_rate
    saves = max(cfg.spawn_epochs) + sum(cfg.epochs - t for t in cfg.spawn_epochs) + cfg.epochs \
        + sum(cfg.epochs - t for t in cfg.retrain_spawn_epochs)
    lmc = cfg.lmc_pairs * cfg.lmc_points * len(cfg.spawn_epochs)
    return seconds + saves * checkpoint_s + lmc * (len(cfg.lmc_bn) * n_test + 20 * 500) / eval_rate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, help="the data, as run.py's --dataset")
    ap.add_argument("--out", required=True, help="folder for what comes back")
    ap.add_argument("--workdir", default="/tmp/timed_study", help="where the run directory goes")
    ap.add_argument("--budget", type=float, default=330.0, help="seconds the study may take")
    ap.add_argument("--bench", default=None, help="accelerator.json of benchmarks/accelerator.py")
    ap.add_argument("--images_per_s", type=float, default=20_000.0,
                    help="training (and evaluation) rate assumed without a benchmark")
    ap.add_argument("--way", default=None, help="the benchmark's way to run and size with "
                    "(step:vmap, program:map+concurrent, ...; default: the fastest float32 way "
                    "near k = 4)")
    ap.add_argument("--epochs", type=int, default=None, help="the schedule's length, instead of "
                    "the largest that fits the budget")
    ap.add_argument("--size", choices=sorted(SIZES), default="full",
                    help="full; calibrate (the full model on subsets, 6 epochs: the fixed cost); "
                    "tiny (a toy model too: a CPU check)")
    ap.add_argument("--design", choices=("composition", "claim1"), default="composition",
                    help="composition: the study above; claim1: siblings at t = 0 only, as long a "
                    "schedule as fits (the module docstring)")
    ap.add_argument("--calibration", default=None, help="run.json of a --size=calibrate run on "
                    "the same device: its wall time is used as the fixed cost")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    log_file = open(os.path.join(args.out, "log.txt"), "w")

    def log(msg: str) -> None:
        line = f"[{time.perf_counter() - started:7.1f}s] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    bench = None
    if args.bench and os.path.exists(args.bench):
        with open(args.bench) as f:
            bench = json.load(f)
    by_k, eval_rate, compile_s, how = rates(bench, args.images_per_s, args.way)
    programs = PROGRAMS if args.design == "composition" else CLAIM1_PROGRAMS
    fixed_s, fixed_from = FIXED_S + programs * compile_s, "estimated"
    if args.calibration and os.path.exists(args.calibration):
        with open(args.calibration) as f:
            fixed_s, fixed_from = float(json.load(f)["wall_seconds"]), args.calibration
    probe = experiment.load_dataset(study(args.dataset, 30, 1, args.size))
    n_train, n_test = len(probe.y_train), len(probe.y_test)
    if args.design == "claim1":
        options = [lambda e=e, k=k, c=c: claim1(args.dataset, e, k, c, args.size)
                   for e in ([args.epochs] if args.epochs else CLAIM1_EPOCHS)
                   for k, c in CLAIM1_SHAPES]
    else:
        options = [lambda e=e, r=r: study(args.dataset, e, r)
                   for e in ([args.epochs] if args.epochs else EPOCHS)
                   for r in ((2, 1) if e == EPOCHS[0] and not args.epochs else (1,))]
    if args.size != "full" and args.design == "composition":
        choice, predicted = study(args.dataset, 6, 1, args.size), 0.0
    else:
        for option in options:
            choice = option()
            predicted = predict(choice, n_train, n_test, by_k, args.images_per_s, eval_rate,
                                fixed_s, ((bench or {}).get("checkpoint") or {}).get("total_s", 0.0),
                                how.get("strategy") in ("loop", "map", "streams", "separate"))
            if predicted <= args.budget:
                break
    choice = dataclasses.replace(choice, **how)
    log(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); way: "
        f"{how or 'backend defaults'}; rates by stack size: {by_k or args.images_per_s}")
    if predicted > args.budget:
        log(f"WARNING: even the shortest schedule is predicted at {predicted:.0f} s, over the "
            f"{args.budget:.0f} s budget")
    log(f"chosen: {choice.epochs} epochs (drops {list(choice.lr_drop_epochs)}), k = {choice.k} "
        f"siblings, {choice.independent_inits} control networks, retrain_seeds "
        f"{choice.retrain_seeds}, {sum(choice.network_epochs().values()):,.0f} network-epochs; "
        f"predicted {predicted:.0f} s of a {args.budget:.0f} s budget (fixed cost "
        f"{fixed_s:.0f} s, {fixed_from}); the schedule keeps {choice.imprint(n_train):.2f} of "
        "the initialization's value in the final weights")
    t0 = time.perf_counter()
    results = experiment.run(choice, args.workdir, progress=False, log=log)
    wall = time.perf_counter() - t0
    rundir = experiment.run_dir(choice, args.workdir)
    stats = jax.devices()[0].memory_stats() or {}
    record = {"date": datetime.date.today().isoformat(),
              "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
              "jax": jax.__version__, "wall_seconds": round(wall),
              "predicted_seconds": round(predicted), "budget_seconds": args.budget,
              "design": args.design, "epochs": choice.epochs, "k": choice.k,
              "independent_inits": choice.independent_inits, "retrain_seeds": choice.retrain_seeds,
              "imprint_retained": choice.imprint(n_train),
              "network_epochs": sum(choice.network_epochs().values()),
              "images_per_s": results.get("timing", {}).get("images_per_s"),
              "peak_device_gb": round(stats.get("peak_bytes_in_use", 0) / 2**30, 2) or None,
              "strategy": choice.strategy, "steps_per_call": choice.steps_per_call,
              "measured": "wall: experiment.run from start to results on a fresh machine, "
                          "compilation included"}
    with open(os.path.join(args.out, "run.json"), "w") as f:
        json.dump(record, f, indent=1)
    for name in (paths.RESULTS, "report.md"):
        shutil.copy(os.path.join(rundir, name), args.out)
    with tarfile.open(os.path.join(args.out, "report.tar.gz"), "w:gz") as tar:
        for name in sorted(os.listdir(rundir)):
            if name.endswith((".csv", ".png")) or name == paths.CONFIG:
                tar.add(os.path.join(rundir, name), arcname=name)
    log(f"done in {wall:.0f} s (predicted {predicted:.0f} s); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
