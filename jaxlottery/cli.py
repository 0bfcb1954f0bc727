"""The command line of `experiments/run.py`: one flag per Config field, presets, exit codes.

Exit status: 0 done; 2 bad input (a flag, a dataset that is missing or malformed), reported
in one line before any work; 1 a failure during the run (traceback with --debug).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import typing

from jaxlottery import config as config_lib
from jaxlottery.config import Config, ConfigError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, exit 2
        if "--model_depth" in message or "--model_width" in message:
            message += ("; the network is named by --model now: --model=cifar_resnet_<depth> "
                        "(width 16) or cifar_resnet_<depth>_<width>")
        self.exit(2, f"error: {message} (see --help)\n")


_KINDS = {int: "an integer", float: "a number", str: "a word"}
# A flag left out (None is a value: --train_subset=none unsets a preset's subset).
NOT_GIVEN = argparse.SUPPRESS


def _scalar(kind):
    """A converter for one value of `kind` whose error says what was expected."""
    def convert(s: str):
        if kind is str:
            return s
        try:
            return kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_KINDS[kind]}, got {s!r}") from None
    return convert


def _parse(kind, name: str):
    """A parser for one flag of type `kind` (from Config's annotations), with messages that
    name what was expected (never argparse's "invalid <lambda> value")."""
    def none_or(inner):
        return lambda s: None if s.lower() in ("none", "") else inner(s)

    def tuple_of(inner):
        what = {int: "integers", float: "numbers", str: "names"}[inner]

        def convert(s: str) -> tuple:
            try:
                return tuple(_scalar(inner)(x.strip()) for x in s.split(",") if x.strip())
            except argparse.ArgumentTypeError:
                raise argparse.ArgumentTypeError(
                    f"expected a comma-separated list of {what}, got {s!r}") from None
        return convert

    def boolean(s: str) -> bool:
        if s.lower() in ("1", "true", "yes"):
            return True
        if s.lower() in ("0", "false", "no"):
            return False
        raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")

    def auto_or(inner):
        def convert(s: str):
            if s.strip().lower() == "auto":
                return "auto"
            try:
                return inner("" if s.strip().lower() == "none" else s)
            except argparse.ArgumentTypeError:
                raise argparse.ArgumentTypeError(f"expected auto, none or a comma-separated list "
                                                 f"of integers, got {s!r}") from None
        return convert

    args = typing.get_args(kind)
    if kind is bool:
        return boolean
    if str in args and any(typing.get_origin(a) is tuple for a in args):  # a list, or "auto"
        return auto_or(tuple_of(typing.get_args(next(a for a in args if a is not str))[0]))
    if typing.get_origin(kind) is tuple:
        return tuple_of(args[0])
    if type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return none_or(boolean if inner is bool else _scalar(inner))
    return _scalar(kind)


def command_name() -> str:
    """How the user started us, for help and usage lines: `jaxlottery`, `python -m jaxlottery`
    or the script's name (experiments/run.py)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "jaxlottery"
    return "python -m jaxlottery" if name == "__main__.py" else name


def provenance_line() -> str:
    from jaxlottery import provenance

    return provenance.describe()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=command_name(), description="Consistency and composability of lottery-ticket "
                "masks (Movva, Frankle & Carbin 2021), end to end. Run the same command again "
                "to resume.")
    p.add_argument("--version", action="version", version=provenance_line())
    p.add_argument("--preset", default=None, help=f"bundle of settings, one of "
                   f"{sorted(config_lib.PRESETS)}; flags given explicitly override it "
                   "(default: paper)")
    p.add_argument("--config", default=None, metavar="RUN/config.json", help="start from the "
                   "exact settings of an earlier run (its config.json) instead of a preset; flags "
                   "given explicitly override them")
    p.add_argument("--dry_run", action="store_true", help="check everything, print the run "
                   "directory, the stages with their network-epochs and the time measured on "
                   "this machine, and exit without training or writing anything")
    p.add_argument("--workdir", default="runs", help="runs go to WORKDIR/<run id> (default: runs)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--compilation_cache", default=None, metavar="DIR", help="JAX's persistent "
                   "compilation cache: a resumed or repeated run loads the programs it compiled "
                   "before instead of compiling them again (default: WORKDIR/compilation_cache; "
                   "none: off)")
    p.add_argument("--lock_expiry", type=_scalar(float), default=300.0, help="seconds after "
                   "which the lock of a run whose holder stopped refreshing it (a lost Colab "
                   "runtime, a dead host) is taken over (default: 300)")
    p.add_argument("--break_lock", action="store_true", help="take the run directory's lock "
                   "whatever holds it (only when you know its holder is gone)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--coordinator", default=None, help="multi-host: address:port of process 0 "
                   "(TPU pods, SLURM and Open MPI need none: jax.distributed finds it)")
    p.add_argument("--num_processes", type=_scalar(int), default=None,
                   help="multi-host: process count")
    p.add_argument("--process_id", type=_scalar(int), default=None, help="multi-host: this process")
    p.add_argument("--allow_cpu", action="store_true", help="train on the CPU even though this "
                   "machine shows a GPU or TPU that JAX is not using (by default such a run "
                   "stops before loading data and names the package to install)")
    p.add_argument("--cpu_devices", type=_scalar(int), default=None, help="CPU only: split the CPU into "
                   "this many XLA devices so sibling stacks are sharded over them (measured "
                   "speed-ups: BUILD_NOTES.md)")
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        default = f.default
        shown = ",".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in default) \
            if isinstance(default, tuple) else default
        p.add_argument(f"--{f.name}", type=_parse(hints[f.name], f.name), default=NOT_GIVEN,
                       help=f"{f.metadata['help']} (paper default: {shown})")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    """The preset with every explicitly given flag applied on top.

    When --k is given and the k-dependent lists are not, they are capped at k, as the
    protocol's defaults say (k_values 2, 3, 5, 10 capped at k; baseline siblings at most k).
    """
    given = vars(args)  # a flag left out is absent (NOT_GIVEN)
    overrides = {f.name: given[f.name] for f in dataclasses.fields(Config) if f.name in given}
    if args.config is not None:
        if args.preset is not None:
            raise ConfigError("--config and --preset: give one (a run's settings, or a preset)")
        base = _settings_of(args.config)
        return dataclasses.replace(base, **overrides)
    base = config_lib.preset(args.preset or "paper")
    k = overrides.get("k", base.k)
    if "k_values" not in overrides and isinstance(k, int) and k >= 1:
        overrides["k_values"] = tuple(sorted({min(v, k) for v in base.k_values}))
    if "baseline_siblings" not in overrides and isinstance(k, int) and k >= 1:
        overrides["baseline_siblings"] = min(base.baseline_siblings, k)
    return config_lib.preset(args.preset or "paper", **overrides)


def _settings_of(path: str) -> Config:
    """The Config recorded in a run's config.json (or its folder), or ConfigError naming it."""
    import json

    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--config: cannot read {path} ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ConfigError(f"--config: {path} is not a run's config.json (no 'config' settings)")
    return Config.from_dict(record["config"])


def check_launch(args: argparse.Namespace) -> None:
    """Raise ConfigError for launch settings that cannot work: where the run goes (an empty
    --workdir, a file, a folder this user cannot write) and the device and process flags."""
    from jaxlottery import sharding

    workdir = args.workdir
    if not workdir.strip():
        raise ConfigError("--workdir: is empty; name a folder (it is created if missing)")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir: {workdir} is a file, not a folder")
    existing = os.path.abspath(workdir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--workdir: {existing} is a file, so {workdir} cannot be created")
    try:  # what counts is whether a file can be made there (read-only mounts, permissions)
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
        raise ConfigError(f"--workdir: cannot write in {existing} ({e.strerror or e}); choose "
                          "another folder") from None
    if not args.lock_expiry > 0 or args.lock_expiry == float("inf"):
        raise ConfigError(f"--lock_expiry: must be a positive number of seconds, got "
                          f"{args.lock_expiry}")
    cache = args.compilation_cache
    if cache is not None and cache.lower() != "none" and (
            not cache.strip() or (os.path.exists(cache) and not os.path.isdir(cache))):
        raise ConfigError(f"--compilation_cache: {cache!r} is not a folder; name one, or none")
    if args.cpu_devices is not None and args.cpu_devices < 1:
        raise ConfigError(f"--cpu_devices: must be >= 1, got {args.cpu_devices}")
    try:
        sharding.launch(args.coordinator, args.num_processes, args.process_id)
    except ValueError as e:
        raise ConfigError(str(e)) from None


@contextlib.contextmanager
def compilation_cache(args: argparse.Namespace):
    """JAX's persistent compilation cache in --compilation_cache (default:
    WORKDIR/compilation_cache) while the block runs, unless it is "none" or the caller already
    set one (JAX_COMPILATION_CACHE_DIR, jax.config): a resumed or repeated run loads what it
    compiled before. Programs compiled in under JAX's threshold (1 s) are not stored. The
    process is left as it was found (a notebook calling `main` keeps its own settings)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    path = args.compilation_cache or os.path.join(args.workdir, "compilation_cache")
    if path.lower() == "none" or jax.config.jax_compilation_cache_dir:
        yield jax.config.jax_compilation_cache_dir
        return
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))
    jax_cache.reset_cache()  # JAX decides once per process whether a cache is used
    try:
        yield path
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        jax_cache.reset_cache()


def check_accelerator(args: argparse.Namespace) -> None:
    """Stop (AcceleratorUnused, a ConfigError) when the machine has an accelerator JAX is not
    using, unless --allow_cpu; else print the backend and its devices: every run's first line."""
    from jaxlottery import hardware, sharding

    hardware.check(args.allow_cpu)
    if sharding.is_main():
        print(hardware.describe(), flush=True)


class Stopped(BaseException):
    """SIGTERM or Ctrl-C: unwinds the run like KeyboardInterrupt (locks released, half-written
    files removed; what was checkpointed stays), then `main` says how to resume."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def stoppable():
    """SIGTERM (a preemptible VM's or a scheduler's stop) raises `Stopped` in the main thread
    while the block runs; the previous handler comes back afterwards."""
    import signal

    def stop(signum, frame):
        raise Stopped(signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a notebook's worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def console() -> None:
    """The `jaxlottery` command (and `python -m jaxlottery`): the same as experiments/run.py."""
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args).validate()
        check_launch(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from jaxlottery import data, experiment, files, reading, report, sharding

    if args.cpu_devices:
        sharding.use_cpu_devices(args.cpu_devices)
    sharding.initialize(args.coordinator, args.num_processes, args.process_id)
    try:
        check_accelerator(args)
        if args.dry_run:  # the same checks and errors as a run, then nothing written
            experiment.dry_run(cfg, workdir=args.workdir)
            return 0
        with compilation_cache(args), stoppable():
            results = experiment.run(cfg, workdir=args.workdir, progress=not args.no_progress,
                                     lock_expiry=args.lock_expiry, break_lock=args.break_lock)
        if sharding.is_main():  # inside the handlers: a results.json it cannot read is our bug
            print()
            print(report.summary(results))
            for name, sentence in reading.readings(results).items():
                print(f"{name}: {sentence}")
            print(f"report: {experiment.run_dir(cfg, args.workdir)}/report.md")
    except (data.DatasetUnavailableError, data.DataFormatError) as e:
        if args.debug:
            raise
        first, *rest = str(e).splitlines()
        print(f"error: --dataset: {first}", file=sys.stderr)
        for line in rest:  # how to get the data, where the error says
            print(f"  {line}", file=sys.stderr)
        return 2
    except (files.RunLocked, experiment.ConfigMismatch, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (Stopped, KeyboardInterrupt) as e:
        import signal

        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        print(f"stopped by {signal.Signals(signum).name}: nothing checkpointed is lost; run the "
              f"same command again to resume {experiment.run_dir(cfg, args.workdir)}",
              file=sys.stderr)
        return 128 + signum
    except Exception as e:  # noqa: BLE001 - one line for users; --debug for the traceback
        if args.debug:
            raise
        print(f"error: {type(e).__name__}: {e} (run again with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0
