"""The command line of `experiments/run.py`: one flag per Config field, presets, exit codes.

Exit status: 0 done; 2 bad input (a flag, a dataset that is missing or malformed), reported
in one line before any work; 1 a failure during the run (traceback with --debug).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from jaxlottery import config as config_lib
from jaxlottery.config import Config, ConfigError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, exit 2
        self.exit(2, f"error: {message} (see --help)\n")


def _parse(kind, name: str):
    """A parser for one flag of type `kind` (from Config's annotations)."""
    def none_or(inner):
        return lambda s: None if s.lower() in ("none", "") else inner(s)

    def tuple_of(inner):
        return lambda s: tuple(inner(x) for x in s.split(",") if x.strip())

    def boolean(s: str) -> bool:
        if s.lower() in ("1", "true", "yes"):
            return True
        if s.lower() in ("0", "false", "no"):
            return False
        raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")

    args = typing.get_args(kind)
    if kind is bool:
        return boolean
    if typing.get_origin(kind) is tuple:
        return tuple_of(args[0])
    if type(None) in args:
        return none_or(next(a for a in args if a is not type(None)))
    return kind


HELP = {
    "seed": "root seed: init, data orders, augmentation, subsets, random masks",
    "dataset": "a TFDS name (cifar10, cifar100, mnist, fashion_mnist, svhn_cropped), "
               "'synthetic', or the path of an .npz file",
    "data_dir": "where datasets are (or get) prepared; TFDS's default when none",
    "train_subset": "train on a seeded random subset of this many images (none: all)",
    "test_subset": "evaluate on a seeded random subset of this many test images",
    "model_depth": "ResNet depth 6n+2 (8, 14, 20, 32, 56)",
    "model_width": "channels of the first stage (ResNet-20: 16)",
    "epochs": "length of the schedule; every network trains to its end",
    "batch_size": "SGD batch size",
    "lr": "initial learning rate",
    "momentum": "SGD momentum (PyTorch form)",
    "weight_decay": "added to every parameter's gradient before momentum",
    "lr_drop_epochs": "epochs at which the learning rate is multiplied by 0.1",
    "augment": "random flips and 4-pixel padded crops (true/false)",
    "k": "siblings spawned at every spawn point",
    "spawn_epochs": "epochs of shared training before the siblings split",
    "densities": "fractions of weights kept, for the consistency analysis",
    "independent_inits": "control networks trained from different inits (0 or >= 2)",
    "k_values": "numbers of siblings whose masks are composed (capped at --k)",
    "compose": "composition methods: union, intersection, vote (majority)",
    "retrain_spawn_epochs": "spawn points whose composed masks are retrained (rewound to W_t)",
    "retrain_densities": "densities at which composed and baseline masks are retrained",
    "baseline_siblings": "single siblings pruned one-shot and retrained as the baseline",
    "random_baselines": "extra retrained baselines: random (same global density), "
                        "random_matched (same per-layer densities), reinit (the masks, fresh init)",
    "lmc_pairs": "disjoint sibling pairs per spawn point for linear mode connectivity (0: off)",
    "lmc_points": "evenly spaced points on the line between two siblings (31 in the LMC paper)",
    "lmc_bn": "BatchNorm statistics on the path: interpolate, recompute (on training data), or both",
    "imp_levels": "iterative magnitude pruning levels, rewound each time (0: off)",
    "imp_rate": "fraction of the remaining weights IMP prunes per level (level L keeps "
                "(1 - rate)^L)",
    "imp_rewind_epoch": "epoch IMP rewinds to (a spawn epoch; none: the last retraining spawn point)",
    "imp_k": "siblings trained per level of parallel IMP (none: k)",
    "imp_compose": "how parallel IMP composes its siblings' masks: union, intersection, vote",
    "strategy": "how siblings share a program: vmap, loop, map (lax.map) or separate "
                "(none: per backend)",
    "steps_per_call": "training iterations per compiled call; 1 dispatches every iteration, a "
                      "number >= an epoch's iterations makes each epoch one program (none: per "
                      "backend)",
    "shard": "split sibling stacks over all devices (and hosts) when there are several",
    "checkpoint_every": "epochs between checkpoints of a training stage (always at its end)",
    "retrain_chunk": "masks retrained together in one program (none: k on CPU; on a GPU/TPU "
                     "as many as half its free memory holds)",
    "eval_batch": "test-set batch size",
}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="run.py", description="Consistency and composability of lottery-ticket "
                "masks (Movva, Frankle & Carbin 2021), end to end. Run the same command again "
                "to resume.")
    p.add_argument("--preset", default="paper", help=f"bundle of settings, one of "
                   f"{sorted(config_lib.PRESETS)}; flags given explicitly override it "
                   "(default: paper)")
    p.add_argument("--workdir", default="runs", help="runs go to WORKDIR/<run id> (default: runs)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--coordinator", default=None, help="multi-host: address:port of process 0 "
                   "(TPU pods, SLURM and Open MPI need none: jax.distributed finds it)")
    p.add_argument("--num_processes", type=int, default=None, help="multi-host: process count")
    p.add_argument("--process_id", type=int, default=None, help="multi-host: this process")
    p.add_argument("--cpu_devices", type=int, default=None, help="CPU only: split the CPU into "
                   "this many XLA devices so sibling stacks are sharded over them (measured: no "
                   "gain on a 2-core VM; see BUILD_NOTES)")
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        default = f.default
        shown = ",".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in default) \
            if isinstance(default, tuple) else default
        p.add_argument(f"--{f.name}", type=_parse(hints[f.name], f.name), default=None,
                       help=f"{HELP[f.name]} (paper default: {shown})")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    """The preset with every explicitly given flag applied on top.

    When --k is given and the k-dependent lists are not, they are capped at k, as the
    protocol's defaults say (k_values 2, 3, 5, 10 capped at k; baseline siblings at most k).
    """
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if getattr(args, f.name) is not None}
    base = config_lib.preset(args.preset)
    k = overrides.get("k", base.k)
    if "k_values" not in overrides and isinstance(k, int) and k >= 1:
        overrides["k_values"] = tuple(sorted({min(v, k) for v in base.k_values}))
    if "baseline_siblings" not in overrides and isinstance(k, int) and k >= 1:
        overrides["baseline_siblings"] = min(base.baseline_siblings, k)
    return config_lib.preset(args.preset, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args).validate()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from jaxlottery import data, experiment, files, report, sharding

    if args.cpu_devices:
        sharding.use_cpu_devices(args.cpu_devices)
    sharding.initialize(args.coordinator, args.num_processes, args.process_id)
    try:
        results = experiment.run(cfg, workdir=args.workdir, progress=not args.no_progress)
    except (data.DatasetUnavailableError, data.DataFormatError) as e:
        if args.debug:
            raise
        first, *rest = str(e).splitlines()
        print(f"error: --dataset: {first}", file=sys.stderr)
        for line in rest:  # how to get the data, where the error says
            print(f"  {line}", file=sys.stderr)
        return 2
    except (files.RunLocked, experiment.ConfigMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one line for users; --debug for the traceback
        if args.debug:
            raise
        print(f"error: {type(e).__name__}: {e} (run again with --debug for the traceback)",
              file=sys.stderr)
        return 1
    if not sharding.is_main():
        return 0
    print()
    print(report.summary(results))
    print("Claim 1 (consistency): " + report.consistency_verdict(results))
    print("Claim 2 (composability): " + report.composition_verdict(results))
    for name, section, verdict in (("Mode connectivity", "connectivity", report.connectivity_verdict),
                                   ("Baselines", "random_baselines", report.baselines_verdict),
                                   ("IMP", "imp", report.imp_verdict)):
        if results.get(section):
            print(f"{name}: {verdict(results)}")
    print(f"report: {experiment.run_dir(cfg, args.workdir)}/report.md")
    return 0
