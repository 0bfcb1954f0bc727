"""The study, as stages with cached, resumable outputs: `run(config)`.

`run` validates the configuration, loads the data (bad or missing data fails here, before
any work), takes the run directory's lock and runs `stages.STAGES` in order, each skipping
what is already done, so a killed run restarted with the same command finishes with the same
results as an uninterrupted one. The stages and what they write: `jaxlottery.stages`; the
shared context, seed tree and checkpointed training: `jaxlottery.pipeline`; the run
directory's files: `jaxlottery.paths`.

Errors: `ConfigMismatch` (the run directory holds another configuration),
`TrainingDiverged` (a loss went NaN or Inf), `files.RunLocked` (another process holds the run),
and the data module's `DatasetUnavailableError` / `DataFormatError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Callable

import jax
import numpy as np

import jaxlottery
from jaxlottery import (checkpoint, estimate, files, hardware, imp, models, paths, provenance,
                        sharding, siblings, stages)
from jaxlottery import data as data_lib
from jaxlottery import train as train_lib
from jaxlottery.config import NOT_HASHED, Config, ConfigError
from jaxlottery.pipeline import (SUBSET, ConfigMismatch, Context, TrainingDiverged,  # noqa: F401
                                 write)  # the errors are raised by run

__all__ = ["ConfigMismatch", "TrainingDiverged", "load_dataset", "run", "run_dir"]


def run_dir(config: Config, workdir: str) -> str:
    return os.path.join(workdir, config.run_id())


# What a results.json must hold to be trusted as a finished run's (else it is recomputed).
RESULT_SECTIONS = ("config", "run_id", "dataset", "dense", "consistency", "composition")


def run(config: Config, workdir: str = "runs", progress: bool = True,
        log: Callable[[str], None] = print, lock_expiry: float = 300.0,
        break_lock: bool = False) -> dict:
    """Run (or resume, or just read back) the whole study; returns the results dict.

    The run directory is locked while it runs (`files.RunLock`): a lock whose holder has not
    refreshed it for `lock_expiry` seconds (a disconnected Colab VM) is taken over;
    `break_lock` takes any lock."""
    config.validate()
    rundir = run_dir(config, workdir)
    results_path = os.path.join(rundir, paths.RESULTS)
    if sharding.agree(checkpoint.readable(results_path, log, require=RESULT_SECTIONS)):
        _check_config(rundir, config)
        log(f"all stages done: {results_path}")
        return checkpoint.read_json(results_path)
    dataset = load_dataset(config)  # bad or missing data fails here, before any work
    check_feasible(config, dataset)
    os.makedirs(rundir, exist_ok=True)
    lock = (files.RunLock(rundir, log, expiry=lock_expiry, break_lock=break_lock)
            if sharding.is_main() else contextlib.nullcontext())
    with lock:
        return _run_stages(config, rundir, dataset, progress, log)


def _context(config: Config, rundir: str, dataset: data_lib.Dataset, progress: bool,
             log: Callable[[str], None]) -> Context:
    main = sharding.is_main()
    n = len(stages.STAGES)
    return Context(config, rundir, dataset, data_lib.to_device(dataset),
                   models.create(config.model, dataset.num_classes, config.compute_dtype),
                   train_lib.Recipe.from_config(config), jax.random.key(config.seed),
                   progress and main, log if main else (lambda _: None),
                   labels={s.name: f"[{i}/{n}]" for i, s in enumerate(stages.STAGES, 1)},
                   mesh=sharding.sibling_mesh() if config.shard and jax.device_count() > 1 else None)


def dry_run(config: Config, workdir: str = "runs", log: Callable[[str], None] = print) -> dict:
    """What `run` would do, checked as `run` checks it but without training or writing
    anything: the run directory, the data, each stage's network-epochs and the training time,
    measured on this machine by timing the sibling stage's compiled program. Returns these."""
    config.validate()
    rundir = run_dir(config, workdir)
    dataset = load_dataset(config)
    check_feasible(config, dataset)
    ctx = _context(config, rundir, dataset, progress=False, log=log)
    n = dataset.x_train.shape[0]
    cost = config.network_epochs(n)
    state = ("finished" if os.path.exists(os.path.join(rundir, paths.RESULTS)) else
             "started earlier: it would resume" if os.path.exists(rundir) else "new")
    img_s = estimate.measure_throughput(ctx)
    seconds = sum(cost.values()) * n / img_s
    log(f"run directory: {rundir} ({state})")
    log(f"data: {dataset.name}, {n:,} train / {dataset.x_test.shape[0]:,} test images of "
        f"{dataset.image_shape}; model {models.get(config.model).description}")
    for i, stage in enumerate(stages.STAGES, 1):
        epochs = cost.get(stage.name, 0) + (cost.get("independent", 0)
                                             if stage.name == "siblings" else 0)
        if stage.name == "replicates" and config.inits == 1:
            continue
        log(f"  [{i}/{len(stages.STAGES)}] {stage.name}: {stage.label}"
            + (f", {epochs:,.0f} network-epochs" if epochs else ""))
    for line in estimate.science_notes(config, n):
        log(line)
    log(f"training: {sum(cost.values()):,.0f} network-epochs, about {estimate.duration(seconds)} "
        f"at {img_s:,.0f} images/s measured on {jax.devices()[0].device_kind} (evaluation "
        "not counted); nothing was written")
    return {"rundir": rundir, "state": state, "network_epochs": cost, "images_per_s": img_s,
            "seconds": seconds}


def _run_stages(config: Config, rundir: str, dataset: data_lib.Dataset, progress: bool,
                log: Callable[[str], None]) -> dict:
    _check_config(rundir, config)
    ctx = _context(config, rundir, dataset, progress, log)
    estimate.announce(ctx)
    out: dict = {}
    for stage in stages.STAGES:
        t0 = time.perf_counter()
        out[stage.name] = stage.run(ctx, out)
        if not ctx.progress:  # without bars, a line per stage says how far the run is
            ctx.log(f"{ctx.labels[stage.name]} {stage.label}: {time.perf_counter() - t0:.1f} s")
    return out[stages.STAGES[-1].name]


def check_feasible(config: Config, dataset: data_lib.Dataset) -> None:
    """Raise ConfigError, before any training, for a setting the model's actual size makes
    empty: a density or IMP level that keeps no weight of the network's prunable weights, a
    batch larger than the training set."""
    if config.batch_size > len(dataset.y_train):
        raise ConfigError(f"--batch_size: {config.batch_size} is more than the "
                          f"{len(dataset.y_train):,} training images of {dataset.name}")
    n_train = len(dataset.y_train)
    spe, total = config.steps_per_epoch(n_train), config.epochs * config.steps_per_epoch(n_train)
    for s in config.spawn_iterations:
        if s >= total:
            raise ConfigError(f"--spawn_iterations: {s} is not inside the schedule: {config.epochs} "
                              f"epochs of {spe} iterations ({n_train:,} images, batch "
                              f"{config.batch_size}) are {total} iterations")
        if s % spe == 0 and s // spe in config.spawn_epochs:
            raise ConfigError(f"--spawn_iterations: {s} iterations is spawn epoch {s // spe} "
                              f"({spe} iterations per epoch); give each spawn point once")
    network = models.get(config.model)
    n = network.prunable_weights(dataset.num_classes, tuple(dataset.image_shape))
    model = network.description
    for flag in ("densities", "retrain_densities"):
        for d in getattr(config, flag):
            if np.floor(d * n + 0.5) < 1:
                raise ConfigError(f"--{flag}: density {d:g} keeps no weight of the {n:,} "
                                  f"prunable weights of {model}; the smallest that keeps one "
                                  f"is {0.5 / n:.2g}")
    if config.imp_levels:
        last = imp.level_density(config.imp_levels, config.imp_rate)
        if np.floor(last * n + 0.5) < 1:
            raise ConfigError(f"--imp_levels: level {config.imp_levels} at --imp_rate="
                              f"{config.imp_rate:g} keeps no weight of the {n:,} prunable "
                              f"weights of {model} ({last:.2g} of them)")
    check_memory(config, dataset)


def check_memory(config: Config, dataset: data_lib.Dataset) -> None:
    """Raise ConfigError, before any training, when the largest stack cannot fit the memory it
    will live in: a GPU's or TPU's (which report it) or, on the CPU backend, the host's memory
    available now (`hardware.host_available_bytes`; unchecked where the OS does not say). The
    need is the dataset plus the training program's (`siblings.member_bytes` per network: all k
    members at once for vmap and hybrid, one at a time plus k states for the strategies that
    run members in sequence). The estimate and what to change are in the message."""
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        free, where = stats["bytes_limit"] - stats.get("bytes_in_use", 0), device.device_kind
    elif jax.default_backend() == "cpu" and (free := hardware.host_available_bytes()) is not None:
        where = "this host's memory (the CPU backend)"
    else:
        return
    n, shape = len(dataset.y_train), tuple(dataset.image_shape)
    model = models.create(config.model, dataset.num_classes, config.compute_dtype)
    recipe = train_lib.Recipe.from_config(config)
    per_member = siblings.member_bytes(model, recipe, n, shape)
    state = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(jax.eval_shape(
        lambda: siblings.spawn(models.init(jax.random.key(0), config.model, dataset.num_classes,
                                           shape), 1, recipe))))
    stack = max(config.k, config.retrain_chunk or 0)
    together = siblings.resolve(config.strategy).strategy in ("vmap", "hybrid")
    data_bytes = dataset.x_train.nbytes + dataset.x_test.nbytes
    need = data_bytes + (stack * per_member if together else per_member + 2 * stack * state)
    if need > free:
        gb = lambda b: f"{b / 1e9:.2f} GB" if b >= 1e8 else f"{b / 1e6:.1f} MB"  # noqa: E731
        raise ConfigError(
            f"--k: a stack of {stack} networks ({models.get(config.model).description}, "
            f"batch {config.batch_size}) needs about {gb(need)} on "
            f"{where} ({gb(per_member)} per network{' at once' if together else ''}, "
            f"{gb(data_bytes)} of data) and {gb(free)} are free; lower --k, --retrain_chunk, "
            f"--batch_size or --model (a smaller network)"
            f"{', or run members in sequence (--strategy=map)' if together else ''}")


def check_data(dataset: data_lib.Dataset) -> None:
    """Raise ConfigError for data that loads but cannot give meaningful numbers: labels that
    are not the classes 0..C-1 all present in training, a constant channel (normalization
    divides by its spread). Checked on the whole dataset, before any subset is drawn."""
    name, y_train = dataset.name, dataset.y_train
    present = np.unique(y_train)
    if len(present) < 2:
        raise ConfigError(f"--dataset: {name}: every training label is {present.tolist()}; a "
                          "classifier needs at least 2 classes")
    if dataset.num_classes > 100_000:
        raise ConfigError(f"--dataset: {name}: labels reach {dataset.num_classes - 1:,}, which "
                          "would make a classifier with that many outputs; labels must be class "
                          "ids 0..C-1 (remap with np.unique(y, return_inverse=True))")
    missing = sorted(set(range(dataset.num_classes)) - set(present.tolist()))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise ConfigError(f"--dataset: {name}: class ids must be 0..{dataset.num_classes - 1}, "
                          f"each present in training; missing from training: {shown}. Remap "
                          "the labels with np.unique(y, return_inverse=True)")
    flat = [c for c, s in enumerate(dataset.std) if not s > 0]
    if flat:
        raise ConfigError(f"--dataset: {name}: image channel(s) {flat} are constant over the "
                          "training set, so normalization would divide by zero; drop the channel")


def load_dataset(config: Config) -> data_lib.Dataset:
    """The configured dataset, with seeded subsets of its splits if asked for."""
    ds = data_lib.load(config.dataset, config.data_dir)
    check_data(ds)
    rng = np.random.default_rng([config.seed, SUBSET])
    x_tr, y_tr, x_te, y_te = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    for flag, n, split in (("train_subset", len(x_tr), "training"), ("test_subset", len(x_te), "test")):
        asked = getattr(config, flag)
        if asked is not None and asked > n:
            raise ConfigError(f"--{flag}: {asked:,} is more than the {n:,} {split} images of "
                              f"{ds.name}; pass --{flag}={n} or less, or --{flag}=none for all "
                              "(presets set one)")
    if config.train_subset and config.train_subset < len(x_tr):
        idx = np.sort(rng.permutation(len(x_tr))[:config.train_subset])
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    if config.test_subset and config.test_subset < len(x_te):
        idx = np.sort(rng.permutation(len(x_te))[:config.test_subset])
        x_te, y_te = x_te[idx], y_te[idx]
    return dataclasses.replace(ds, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


def _check_config(rundir: str, config: Config) -> None:
    """Write config.json, or check that the one there describes the same computation."""
    path = os.path.join(rundir, paths.CONFIG)
    if checkpoint.readable(path, print, require=("config",)):
        record = checkpoint.read_json(path)
        if not isinstance(record["config"], dict):
            raise ConfigMismatch(f"{path}: 'config' is not a set of settings; use another "
                                 "--workdir, or delete the run directory to start it again")
        try:
            old = Config.from_dict(record["config"])
        except ConfigError as e:
            raise ConfigMismatch(
                f"{path} was written by jaxlottery {record.get('jaxlottery', '?')} ({e}); rerun "
                "it with that version, or use another --workdir") from None
        diff = {k: (getattr(old, k), v) for k, v in config.to_dict().items()
                if k not in NOT_HASHED and getattr(old, k) != getattr(config, k)}
        if diff:
            raise ConfigMismatch(f"{path} holds a different configuration (field: (there, "
                                 f"asked)): {diff}; use another --workdir for a new run")
        return
    write(checkpoint.write_json, path, {"config": config.to_dict(), "run_id": config.run_id(),
                                        "jaxlottery": jaxlottery.__version__,
                                        "commit": provenance.source()["commit"]})
