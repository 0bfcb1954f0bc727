"""The study, as stages with cached, resumable outputs: `run(config)`.

Stages (folders of the run directory `<workdir>/<run_id>/`):
1. `shared/`: one network from the seed's init, trained to the last spawn point; its weights
   and BN statistics W_t are kept at every spawn epoch t.
2. `siblings/e<t>/`: k siblings spawned from W_t, trained to the end with their own data keys.
   `independent/`: the control, networks from different inits trained the same way.
3. `masks/`: one-shot global magnitude masks of every sibling at every density.
4. `consistency.json`: pairwise IoU and overlap, against the naive and layer-matched chance,
   the spawn weights' own mask, and independently initialized networks; per layer too.
5. `connectivity/e<t>.json`: the error barrier on the line between disjoint sibling pairs.
6. `composition/e<t>.npz`: union / intersection / majority-vote masks at matched density from
   the first k' siblings, one-shot baselines (single siblings), and the random and
   re-initialized baselines.
7. `retrain/e<t>/`: every mask of stage 6 retrained from W_t (or a fresh init, for the
   re-initialized baselines) for the rest of the schedule, stacked and trained together.
8. `imp/level<L>/`: iterative magnitude pruning rewound to W_t, single-network and parallel
   (k siblings per level, masks composed), with one-shot masks at the same densities.
9. `results.json`, CSV tables, figures and `report.md` (jaxlottery.report).

A stage whose output exists is skipped; a training stage checkpoints every epoch and resumes
from its newest checkpoint, so a killed run restarted with the same command finishes with
the same results as an uninterrupted one.

Randomness: all keys derive from `key(config.seed)` with these `fold_in` names:
INIT (the shared network's init), SHARED_DATA (its data key), SIBLING_DATA -> t -> i (sibling
i spawned at epoch t), INDEPENDENT -> j (init of control network j; its data key is
`fold_in(init key, 1)`), RETRAIN_DATA -> t (one data key for every mask retrained from W_t, so
masks are compared on the same data order), RANDOM_MASKS -> t -> density index -> 0 (global)
or 1 (layer-matched), SUBSET (the training/test subsets), REINIT -> t (the fresh init of the
re-initialized baselines), IMP_DATA -> level -> i (sibling i of every IMP chain at a level;
single-network IMP and its one-shot baseline use i = 0).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

import jaxlottery
from jaxlottery import checkpoint, connectivity, data as data_lib, files, imp, masks, models
from jaxlottery import sharding, siblings
from jaxlottery import train as train_lib
from jaxlottery.config import NOT_HASHED, Config

(INIT, SHARED_DATA, SIBLING_DATA, INDEPENDENT, RETRAIN_DATA, RANDOM_MASKS, SUBSET, REINIT,
 IMP_DATA) = range(9)


class ConfigMismatch(RuntimeError):
    """The run directory was made by a different configuration."""


class TrainingDiverged(RuntimeError):
    """A loss went NaN or Inf: the run stops, its results are marked failed."""


@dataclasses.dataclass
class Context:
    """What every stage needs: the configuration, the run directory, data and model."""

    config: Config
    rundir: str
    dataset: data_lib.Dataset
    data: data_lib.DeviceData
    model: Any
    recipe: train_lib.Recipe
    root: jax.Array
    progress: bool
    log: Callable[[str], None]
    timing: dict = dataclasses.field(default_factory=dict)  # training seconds per folder
    evaluation_seconds: float | None = None  # stage 5 (connectivity), when it ran here
    images: dict = dataclasses.field(default_factory=dict)
    mesh: Any = None  # the sibling axis over all devices, when there are several

    @property
    def spe(self) -> int:
        return self.recipe.steps_per_epoch(self.dataset.x_train.shape[0])

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.spe

    def path(self, *parts: str) -> str:
        p = os.path.join(self.rundir, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    @property
    def how(self) -> dict:
        """How stacks are compiled (strategy, iterations per call): for training and evaluation."""
        return {"strategy": self.config.strategy, "steps_per_call": self.config.steps_per_call}

    def key(self, *names: int) -> jax.Array:
        k = self.root
        for n in names:
            k = jax.random.fold_in(k, n)
        return k


def run_dir(config: Config, workdir: str) -> str:
    return os.path.join(workdir, config.run_id())


def run(config: Config, workdir: str = "runs", progress: bool = True,
        log: Callable[[str], None] = print) -> dict:
    """Run (or resume, or just read back) the whole study; returns the results dict."""
    config.validate()
    rundir = run_dir(config, workdir)
    results_path = os.path.join(rundir, "results.json")
    if sharding.agree(checkpoint.readable(results_path, log)):
        _check_config(rundir, config)
        log(f"all stages done: {results_path}")
        return checkpoint.read_json(results_path)
    dataset = load_dataset(config)  # bad or missing data fails here, before any work
    os.makedirs(rundir, exist_ok=True)
    with files.RunLock(rundir, log) if sharding.is_main() else contextlib.nullcontext():
        return _run_stages(config, rundir, dataset, progress, log)


def _run_stages(config: Config, rundir: str, dataset: data_lib.Dataset, progress: bool,
                log: Callable[[str], None]) -> dict:
    _check_config(rundir, config)
    results_path = os.path.join(rundir, "results.json")
    main = sharding.is_main()
    ctx = Context(config, rundir, dataset, data_lib.to_device(dataset),
                  models.resnet(config.model_depth, config.model_width, dataset.num_classes),
                  config.recipe(), jax.random.key(config.seed), progress and main,
                  log if main else (lambda _: None),
                  mesh=sharding.sibling_mesh() if config.shard and jax.device_count() > 1 else None)
    _summary(ctx)
    shared = stage_shared(ctx)
    sibs = {t: stage_siblings(ctx, t, shared[t]) for t in config.spawn_epochs}
    indep = stage_independent(ctx)
    mask_files = stage_masks(ctx, sibs, indep, shared)
    consistency = stage_consistency(ctx, mask_files)
    lmc = stage_connectivity(ctx, sibs)
    composed = {t: stage_composition(ctx, t, sibs[t], shared[t]) for t in config.retrain_spawn_epochs}
    retrained = {t: stage_retrain(ctx, t, shared[t], composed[t]) for t in config.retrain_spawn_epochs}
    t_imp = config.imp_rewind()
    imp_rows = stage_imp(ctx, sibs[t_imp], shared[t_imp]) if config.imp_levels else None
    results = assemble(ctx, sibs, indep, consistency, retrained, lmc, imp_rows)
    from jaxlottery import report

    _write(report.write, rundir, results)
    _write(checkpoint.write_json, results_path, results)
    return results


# --- data -----------------------------------------------------------------------------------


def load_dataset(config: Config) -> data_lib.Dataset:
    """The configured dataset, with seeded subsets of its splits if asked for."""
    ds = data_lib.load(config.dataset, config.data_dir)
    rng = np.random.default_rng([config.seed, SUBSET])
    x_tr, y_tr, x_te, y_te = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if config.train_subset and config.train_subset < len(x_tr):
        idx = np.sort(rng.permutation(len(x_tr))[:config.train_subset])
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    if config.test_subset and config.test_subset < len(x_te):
        idx = np.sort(rng.permutation(len(x_te))[:config.test_subset])
        x_te, y_te = x_te[idx], y_te[idx]
    return dataclasses.replace(ds, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


# --- training with checkpoints ----------------------------------------------------------------


def train_stage(ctx: Context, folder: str, states: train_lib.TrainState, keys: jax.Array,
                bar: Any, *, until: int | None = None, ms: Any = None, evaluate: bool = True,
                on_epoch: Callable | None = None) -> tuple[train_lib.TrainState, list[dict]]:
    """Train a stack to iteration `until` (default: the end of the schedule), checkpointing
    every epoch in `<folder>/ckpt` and resuming from its newest checkpoint."""
    until = ctx.total_steps if until is None else until
    ckpts = checkpoint.Checkpoints(ctx.path(folder, "ckpt"))
    first = int(states.step[0])
    history: list[dict] = []
    restored = ckpts.restore(states, log=ctx.log)
    if restored is not None:
        states, meta = restored
        history = meta["history"]
        if bar is not None:
            bar.update(int(states.step[0]) - first)

    def save(epoch: int, st, record: dict):
        files.fault_point(f"epoch {folder}")
        history.append(record)
        step = int(sharding.gather(st.step)[0])
        if (epoch + 1) % ctx.config.checkpoint_every == 0 or step == until:
            ckpts.save(step, st, {"history": history})
        if on_epoch is not None:
            on_epoch(epoch, st, record)

    t0, step0 = time.perf_counter(), int(states.step[0])
    try:
        states, _ = siblings.train(states, keys, ctx.data, ctx.model, ctx.recipe, until=until,
                                   ms=ms, evaluate=evaluate, eval_batch=ctx.config.eval_batch,
                                   progress=bar, on_epoch=save,
                                   mesh=ctx.mesh if siblings.size(states) > 1 else None,
                                   **ctx.how)
    except FloatingPointError as e:
        failure = {"stage": folder, "error": str(e), "last_good_checkpoint": ckpts.latest_step(),
                   "checkpoints": ckpts.directory}
        _write(checkpoint.write_json, ctx.path("failed.json"), failure)
        raise TrainingDiverged(f"stage {folder}: {e}; the last good checkpoint (iteration "
                               f"{failure['last_good_checkpoint']}) is kept in {ckpts.directory}; "
                               f"no results are reported (see {ctx.path('failed.json')})") from None
    finally:
        ckpts.close()  # waits for the last (asynchronous) checkpoint to be complete
    images = (until - step0) * ctx.config.batch_size * siblings.size(states)
    ctx.images[folder] = ctx.images.get(folder, 0) + images
    ctx.timing[folder] = ctx.timing.get(folder, 0.0) + time.perf_counter() - t0
    return states, history


def _bar(ctx: Context, desc: str, total: int):
    if not ctx.progress or total <= 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)


# --- stage 1: shared training ----------------------------------------------------------------


def stage_shared(ctx: Context) -> dict[int, dict]:
    """W_t for every spawn epoch t: the shared network's variables after t epochs."""
    cfg = ctx.config
    files = {t: ctx.path("shared", f"spawn_e{t}.npz") for t in cfg.spawn_epochs}
    init = models.init(ctx.key(INIT), cfg.model_depth, cfg.model_width,
                       ctx.dataset.num_classes, ctx.dataset.image_shape)
    if not all([_done(ctx, f) for f in files.values()]):
        if 0 in files:
            _write(checkpoint.save_arrays, files[0], init)
        last = max(cfg.spawn_epochs)
        if last > 0:
            states = siblings.spawn(init, 1, ctx.recipe)
            keys = ctx.key(SHARED_DATA)[None]

            def keep_spawn_points(epoch, st, record):
                if epoch + 1 in files:
                    _write(checkpoint.save_arrays, files[epoch + 1],
                           train_lib.variables(siblings.index(st, 0)))

            bar = _bar(ctx, "[1/9] shared training", last * ctx.spe)
            train_stage(ctx, "shared", states, keys, bar, until=last * ctx.spe, evaluate=False,
                        on_epoch=keep_spawn_points)
            if bar is not None:
                bar.close()
    return {t: checkpoint.load_arrays(f, init) for t, f in files.items()}


# --- stage 2: siblings and the independent-init control ----------------------------------------


def stage_siblings(ctx: Context, t: int, spawn_vars: dict) -> dict:
    """k siblings spawned at epoch t, trained to the end: final variables and history."""
    cfg = ctx.config
    states = siblings.spawn(spawn_vars, cfg.k, ctx.recipe, step=t * ctx.spe)
    keys = [ctx.key(SIBLING_DATA, t, i) for i in range(cfg.k)]
    return _trained(ctx, os.path.join("siblings", f"e{t}"), states, keys,
                    f"[2/9] siblings spawned at epoch {t}")


def stage_independent(ctx: Context) -> dict | None:
    """The control: `independent_inits` networks from different inits, full schedule."""
    cfg = ctx.config
    if cfg.independent_inits == 0:
        return None
    inits = [models.init(ctx.key(INDEPENDENT, j), cfg.model_depth, cfg.model_width,
                         ctx.dataset.num_classes, ctx.dataset.image_shape)
             for j in range(cfg.independent_inits)]
    states = siblings.stack([train_lib.init_state(v, ctx.recipe) for v in inits])
    keys = [ctx.key(INDEPENDENT, j, 1) for j in range(cfg.independent_inits)]
    return _trained(ctx, "independent", states, keys, "[2/9] independent inits (control)")


def _trained(ctx: Context, folder: str, states, keys: list, desc: str) -> dict:
    """A stack trained to the end of the schedule (or read back): variables and history."""
    final = ctx.path(folder, "final.npz")
    hist_path = ctx.path(folder, "history.json")
    if not _done(ctx, final):
        bar = _bar(ctx, desc, ctx.total_steps - int(states.step[0]))
        states, history = train_stage(ctx, folder, states, jnp.stack(keys), bar)
        if bar is not None:
            bar.close()
        _write(checkpoint.write_json, hist_path, history)
        _write(checkpoint.save_arrays, final, train_lib.variables(states))
    variables = checkpoint.load_arrays(final, train_lib.variables(states))
    return {"variables": variables, "history": checkpoint.read_json(hist_path)}


# --- stage 3: masks ------------------------------------------------------------------------------


def stage_masks(ctx: Context, sibs: dict, indep: dict | None, shared: dict) -> dict:
    """Mask files per (kind, t, density index): siblings, spawn weights, independent inits."""
    cfg = ctx.config
    files = {}
    for t in cfg.spawn_epochs:
        for i, d in enumerate(cfg.densities):
            for kind, params, stacked in (("siblings", sibs[t]["variables"]["params"], True),
                                          ("spawn", shared[t]["params"], False)):
                path = ctx.path("masks", f"{kind}_e{t}_d{i}.npz")
                if not _done(ctx, path):
                    _write(masks.save, path, masks.magnitude_prune(params, d, stacked=stacked))
                files[kind, t, i] = path
    if indep is not None:
        for i, d in enumerate(cfg.densities):
            path = ctx.path("masks", f"independent_d{i}.npz")
            if not _done(ctx, path):
                _write(masks.save, path,
                       masks.magnitude_prune(indep["variables"]["params"], d, stacked=True))
            files["independent", None, i] = path
    return files


# --- stage 4: consistency --------------------------------------------------------------------------


def stage_consistency(ctx: Context, files: dict) -> dict:
    """Rows of pairwise overlap statistics per (spawn point, density), overall and per layer."""
    path = ctx.path("consistency.json")
    if _done(ctx, path):
        return checkpoint.read_json(path)
    cfg = ctx.config
    rows, layer_rows = [], []
    indep_iou = {}
    for i, d in enumerate(cfg.densities):
        if ("independent", None, i) in files:
            indep_iou[i] = _offdiag(masks.pairwise_iou(masks.load(files["independent", None, i])))
    for t in cfg.spawn_epochs:
        for i, d in enumerate(cfg.densities):
            stack = masks.load(files["siblings", t, i])
            spawn_mask = masks.load(files["spawn", t, i])
            ious = _offdiag(masks.pairwise_iou(stack))
            overlaps = _offdiag(masks.pairwise_overlap(stack))
            members = masks.unstack(stack)
            matched = [float(masks.chance_iou_matched(members[a], members[b]))
                       for a in range(cfg.k) for b in range(a + 1, cfg.k)]
            with_spawn = [float(masks.iou(m, spawn_mask)) for m in members]
            achieved = float(np.mean(np.asarray(masks.density(stack, stacked=True))))
            rows.append({
                "spawn_epoch": t, "density": d, "achieved_density": achieved,
                "iou_mean": float(np.mean(ious)), "iou_std": float(np.std(ious)),
                "chance_iou": float(masks.chance_iou(achieved, achieved)),
                "layer_matched_chance_iou": float(np.mean(matched)),
                "overlap_mean": float(np.mean(overlaps)),
                "iou_with_spawn_mask": float(np.mean(with_spawn)),
                "iou_independent_inits": (float(np.mean(indep_iou[i])) if i in indep_iou else None),
                "pairs": len(ious),
            })
            per_layer = masks.pairwise_iou_by_layer(stack)
            densities = masks.layer_densities(stack, stacked=True)
            for layer, mat in per_layer.items():
                ld = float(np.mean(np.asarray(densities[layer])))
                layer_rows.append({"spawn_epoch": t, "density": d, "layer": layer,
                                   "layer_density": ld, "iou_mean": float(np.mean(_offdiag(mat))),
                                   "chance_iou": float(masks.chance_iou(ld, ld))})
    out = {"rows": rows, "layers": layer_rows}
    _write(checkpoint.write_json, path, out)
    return out


def _offdiag(mat) -> np.ndarray:
    mat = np.asarray(mat)
    return mat[np.triu_indices(mat.shape[0], 1)]


# --- stage 5: linear mode connectivity ---------------------------------------------------------------


def stage_connectivity(ctx: Context, sibs: dict) -> list[dict]:
    """The error barrier between disjoint sibling pairs (0, 1), (2, 3), ... at every spawn point,
    with BN statistics interpolated and/or recomputed (`lmc_bn`); one row per curve."""
    cfg = ctx.config
    if cfg.lmc_pairs == 0:
        return []
    paths = {t: ctx.path("connectivity", f"e{t}.json") for t in cfg.spawn_epochs}
    todo = [t for t in cfg.spawn_epochs if not _done(ctx, paths[t])]
    bar = _bar(ctx, "[5/9] mode connectivity (points evaluated)",
               len(todo) * cfg.lmc_pairs * len(cfg.lmc_bn) * cfg.lmc_points)
    for t in todo:
        t0, rows = time.perf_counter(), []
        variables = sibs[t]["variables"]
        for p in range(cfg.lmc_pairs):
            a, b = siblings.index(variables, 2 * p), siblings.index(variables, 2 * p + 1)
            for bn in cfg.lmc_bn:
                res = connectivity.error_barrier(  # stacks of k points: the siblings' shape
                    a, b, ctx.data, ctx.model, points=cfg.lmc_points, bn=bn,
                    eval_batch=cfg.eval_batch, on_point=None if bar is None else bar.update,
                    chunk=cfg.k, **ctx.how)
                rows.append(dict(res, spawn_epoch=t, pair=[2 * p, 2 * p + 1]))
        ctx.evaluation_seconds = (ctx.evaluation_seconds or 0.0) + time.perf_counter() - t0
        _write(checkpoint.write_json, paths[t], rows)
    if bar is not None:
        bar.close()
    return [r for t in cfg.spawn_epochs for r in checkpoint.read_json(paths[t])]


# --- stage 6: composition ----------------------------------------------------------------------------


def _compose(params: Any, density: float, how: str, k: int):
    """Compose k siblings by name (vote: a majority); returns (mask, at_least, sibling density)."""
    at_least = imp.at_least(how, k)
    m, sd = masks.compose(params, density, how=at_least)
    return m, at_least, float(sd)


def stage_composition(ctx: Context, t: int, sib: dict, spawn_vars: dict) -> dict:
    """The masks to retrain from W_t: composed, one-shot baselines, random and re-initialized
    baselines; with their metadata (method, k, densities, whether re-initialized)."""
    cfg = ctx.config
    mask_path = ctx.path("composition", f"e{t}.npz")
    meta_path = ctx.path("composition", f"e{t}.json")
    if not (_done(ctx, mask_path) and _done(ctx, meta_path)):
        params = sib["variables"]["params"]
        entries, ms = [], []

        def add(entry: dict, m, d: float):
            entries.append(dict({"reinit": False}, **entry, target_density=d,
                                achieved_density=float(masks.density(m))))
            ms.append(m)

        k_max = cfg.effective_k_values()[-1]
        for j, d in enumerate(cfg.retrain_densities):
            composed = {}
            for how, kk in cfg.compose_methods(cfg.effective_k_values()):
                m, at_least, sd = _compose(jax.tree.map(lambda x: x[:kk], params), d, how, kk)
                composed[how, kk] = (m, at_least, sd)
                add({"method": how, "k": kk, "at_least": at_least, "sibling_density": sd}, m, d)
            one_shot = [masks.magnitude_prune(siblings.index(params, i), d)
                        for i in range(cfg.baseline_siblings)]
            for i, m in enumerate(one_shot):
                add({"method": "baseline", "k": 1, "sibling": i, "sibling_density": d}, m, d)
            for method in cfg.random_baseline_methods():
                if method == "random":
                    m = masks.random_mask(ctx.key(RANDOM_MASKS, t, j, 0), spawn_vars["params"], d)
                    add({"method": method, "k": 1, "sibling_density": d}, m, d)
                elif method == "random_matched":
                    m = masks.random_mask_like(ctx.key(RANDOM_MASKS, t, j, 1), one_shot[0])
                    add({"method": method, "k": 1, "sibling_density": d}, m, d)
                elif method == "baseline_reinit":
                    add({"method": method, "k": 1, "sibling": 0, "sibling_density": d,
                         "reinit": True}, one_shot[0], d)
                else:
                    m, at_least, sd = composed[method.removesuffix("_reinit"), k_max]
                    add({"method": method, "k": k_max, "at_least": at_least,
                         "sibling_density": sd, "reinit": True}, m, d)
        _write(masks.save, mask_path, masks.stack(ms))
        _write(checkpoint.write_json, meta_path, entries)
    return {"masks": mask_path, "entries": checkpoint.read_json(meta_path)}


# --- stage 7: retraining ------------------------------------------------------------------------------


def stage_retrain(ctx: Context, t: int, spawn_vars: dict, composed: dict) -> list[dict]:
    """Retrain every mask of stage 6 from W_t (the re-initialized baselines from the fresh init
    REINIT -> t), all on one data order, in chunks trained together like siblings."""
    cfg = ctx.config
    entries = composed["entries"]
    stack = masks.load(composed["masks"], like=spawn_vars["params"])
    fresh = None
    if any(e.get("reinit") for e in entries):
        fresh = models.init(ctx.key(REINIT, t), cfg.model_depth, cfg.model_width,
                            ctx.dataset.num_classes, ctx.dataset.image_shape)
    outcome = _retrain(ctx, os.path.join("retrain", f"e{t}"), t, spawn_vars, stack,
                       [ctx.key(RETRAIN_DATA, t)] * len(entries),
                       f"[7/9] retraining masks from epoch {t}",
                       fresh=fresh, reinit=[bool(e.get("reinit")) for e in entries])
    return [dict(e, spawn_epoch=t, test_accuracy=acc)
            for e, acc in zip(entries, outcome["test_accuracy"])]


def _retrain(ctx: Context, folder: str, t: int, spawn_vars: dict, stack: Any, keys: list,
             desc: str, fresh: dict | None = None, reinit: list[bool] | None = None,
             keep_params: bool = False) -> dict:
    """Train every mask of `stack` from W_t (member i from `fresh` where `reinit[i]`) to the
    end of the schedule with data key `keys[i]`, in chunks of `retrain_chunk` (default k)
    members of one compiled shape. Each chunk's test accuracies (and with `keep_params` its
    final weights) are a finished output of its own, so a rerun skips finished chunks.
    Returns test_accuracy per member and, with keep_params, the final params as a stack."""
    cfg = ctx.config
    n = masks.stack_size(stack)
    chunk = _retrain_chunk(ctx, folder, n)
    n_chunks = -(-n // chunk)
    done_paths = [ctx.path(folder, f"chunk{c}.json") for c in range(n_chunks)]
    param_paths = [ctx.path(folder, f"chunk{c}.npz") for c in range(n_chunks)]
    remaining = [c for c in range(n_chunks)
                 if not (_done(ctx, done_paths[c]) and (not keep_params or _done(ctx, param_paths[c])))]
    bar = _bar(ctx, desc, len(remaining) * (ctx.total_steps - t * ctx.spe))
    for c in remaining:
        ids = list(range(c * chunk, min((c + 1) * chunk, n)))
        padded = np.asarray(ids + [ids[-1]] * (chunk - len(ids)))  # one shape: one compile
        ms = siblings.take(stack, padded)
        states = siblings.spawn(spawn_vars, chunk, ctx.recipe, step=t * ctx.spe)
        if reinit is not None and any(reinit[i] for i in padded):
            states = _start_fresh(states, fresh, np.asarray([reinit[i] for i in padded]))
        states, history = train_stage(ctx, os.path.join(folder, f"chunk{c}"), states,
                                      jnp.stack([keys[i] for i in padded]), bar, ms=ms,
                                      evaluate=False)
        final = siblings.evaluate_stack(states, ctx.data, ctx.model, cfg.eval_batch, **ctx.how)
        if keep_params:
            _write(checkpoint.save_arrays, param_paths[c],
                   jax.tree.map(lambda x: x[:len(ids)], states.params))
        _write(checkpoint.write_json, done_paths[c], {
            "ids": ids, "test_accuracy": [final[i]["accuracy"] for i in range(len(ids))],
            "train_loss": history[-1]["train_loss"][:len(ids)] if history else None})
    if bar is not None:
        bar.close()
    accuracy = [None] * n
    for c in range(n_chunks):
        res = checkpoint.read_json(done_paths[c])
        for i, acc in zip(res["ids"], res["test_accuracy"]):
            accuracy[i] = acc
    out = {"test_accuracy": accuracy}
    if keep_params:
        like = spawn_vars["params"]
        parts = [checkpoint.load_arrays(param_paths[c], like, as_numpy=True) for c in range(n_chunks)]
        out["params"] = jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
    return out


def _retrain_chunk(ctx: Context, folder: str, n: int) -> int:
    """Members per retraining program: `retrain_chunk`, or (none) as many as the device holds
    (`siblings.stack_capacity`; k on CPU). Fixed in `<folder>/plan.json` when the folder is
    first trained, so a run resumed on another device keeps its chunks (and their files)."""
    cfg = ctx.config
    plan_path = ctx.path(folder, "plan.json")
    if _done(ctx, plan_path):
        plan = checkpoint.read_json(plan_path)
        if isinstance(plan, dict) and plan.get("members") == n and isinstance(plan.get("chunk"), int):
            return plan["chunk"]
        ctx.log(f"{plan_path} does not describe {n} members; planning again")
    if os.path.exists(ctx.path(folder, "chunk0")) or _done(ctx, ctx.path(folder, "chunk0.json")):
        chunk = min(cfg.retrain_chunk or cfg.k, n)  # started before plans were written: k
    elif cfg.retrain_chunk:
        chunk = min(cfg.retrain_chunk, n)
    else:
        capacity = siblings.stack_capacity(ctx.model, ctx.recipe, ctx.dataset.x_train.shape[0],
                                           tuple(ctx.dataset.image_shape),
                                           cfg.strategy or siblings.default_strategy())
        if capacity is not None and ctx.mesh is not None:
            capacity *= ctx.mesh.devices.size  # the stack is split over the devices
        chunk = siblings.chunk_size(n, cfg.k, capacity)
        if capacity is not None:
            ctx.log(f"{folder}: {n} networks in stacks of {chunk} (room for {capacity} on "
                    f"{jax.device_count()} x {jax.devices()[0].device_kind})")
    _write(checkpoint.write_json, plan_path, {"members": n, "chunk": chunk})
    return checkpoint.read_json(plan_path)["chunk"]  # process 0's plan, on every process


def _start_fresh(states: train_lib.TrainState, fresh: dict, which: np.ndarray) -> train_lib.TrainState:
    """Members `which` of a freshly spawned stack start from `fresh` variables instead."""
    def pick(stacked, new):
        sel = which.reshape((-1,) + (1,) * new.ndim)
        return jnp.where(sel, new[None], stacked)

    return states._replace(params=jax.tree.map(pick, states.params, fresh["params"]),
                           batch_stats=jax.tree.map(pick, states.batch_stats, fresh["batch_stats"]))


# --- stage 8: iterative magnitude pruning -------------------------------------------------------------


def stage_imp(ctx: Context, sib: dict, spawn_vars: dict) -> list[dict]:
    """IMP rewound to W_t (t = imp_rewind()), `imp_levels` levels of `imp_rate` each.

    Level 0 is the siblings stage: single-network IMP starts from sibling 0, every parallel
    chain from siblings 0..imp_k-1. At level L each chain's mask is made from its level L-1
    networks (pruned further, or composed at exactly the level's density), and all chains'
    networks train together from W_t; `oneshot` prunes the dense sibling 0 straight to the
    level's density (its level 1 is IMP's level 1, so it is not trained twice). Returns one
    row per (chain, level, member) with its mask density and test accuracy."""
    cfg = ctx.config
    t, n_sib, chains = cfg.imp_rewind(), cfg.imp_siblings(), cfg.imp_chains()
    dense = jax.tree.map(np.asarray, sib["variables"]["params"])  # host: slicing compiles nothing
    current = {"imp": (masks.ones_like(siblings.index(dense, 0)), jax.tree.map(lambda x: x[:1], dense))}
    for how in chains[2:]:
        current[how] = (masks.ones_like(siblings.index(dense, 0)),
                        jax.tree.map(lambda x: x[:n_sib], dense))
    rows = []
    for level in range(1, cfg.imp_levels + 1):
        d = imp.level_density(level, cfg.imp_rate)
        folder = os.path.join("imp", f"level{level}")
        mask_path, meta_path = ctx.path(folder, "masks.npz"), ctx.path(folder, "members.json")
        if not (_done(ctx, mask_path) and _done(ctx, meta_path)):
            members, ms = [], []
            for chain in chains:
                if chain == "imp":
                    m, size = imp.prune_further(siblings.index(current["imp"][1], 0),
                                                current["imp"][0], d), 1
                elif chain == "oneshot":
                    if level == 1:
                        continue
                    m, size = masks.magnitude_prune(siblings.index(dense, 0), d), 1
                else:
                    m, size = imp.compose_further(current[chain][1], current[chain][0], d,
                                                  imp.at_least(chain, n_sib)), n_sib
                for i in range(size):
                    members.append({"chain": chain, "member": i, "level": level,
                                    "target_density": d, "achieved_density": float(masks.density(m))})
                    ms.append(m)
            _write(masks.save, mask_path, masks.stack(ms))
            _write(checkpoint.write_json, meta_path, members)
        members = checkpoint.read_json(meta_path)
        stack = masks.load(mask_path, like=spawn_vars["params"])
        keys = [ctx.key(IMP_DATA, level, m["member"]) for m in members]
        outcome = _retrain(ctx, folder, t, spawn_vars, stack, keys,
                           f"[8/9] IMP level {level}/{cfg.imp_levels} ({100 * d:.1f}%)",
                           keep_params=True)
        for i, m in enumerate(members):
            rows.append(dict(m, spawn_epoch=t, test_accuracy=outcome["test_accuracy"][i]))
            if level == 1 and m["chain"] == "imp" and "oneshot" in chains:
                rows.append(dict(rows[-1], chain="oneshot", same_as="imp"))
        for chain in chains:
            if chain == "oneshot":
                continue
            idx = np.asarray([i for i, m in enumerate(members) if m["chain"] == chain])
            current[chain] = (siblings.index(stack, int(idx[0])),
                              jax.tree.map(lambda x: x[idx], outcome["params"]))
    return rows


# --- results ------------------------------------------------------------------------------------------


def assemble(ctx: Context, sibs: dict, indep: dict | None, consistency: dict,
             retrained: dict, lmc: list[dict] | None = None, imp_rows: list[dict] | None = None) -> dict:
    cfg = ctx.config
    dense = []
    for t, s in sibs.items():
        acc = s["history"][-1]["test_accuracy"] if s["history"] else None
        dense.append({"spawn_epoch": t, "test_accuracy": acc,
                      "mean": float(np.mean(acc)) if acc else None,
                      "std": float(np.std(acc)) if acc else None})
    if indep is not None and indep["history"]:
        acc = indep["history"][-1]["test_accuracy"]
        dense.append({"spawn_epoch": None, "control": "independent_inits", "test_accuracy": acc,
                      "mean": float(np.mean(acc)), "std": float(np.std(acc))})
    retrained_rows = _grouped([e for es in retrained.values() for e in es],
                              ("spawn_epoch", "method", "k", "target_density"))
    extra = set(cfg.random_baseline_methods())
    images = sum(ctx.images.values())
    seconds = sum(ctx.timing.values())
    return {
        "config": cfg.to_dict(),
        "run_id": cfg.run_id(),
        "dataset": {"name": ctx.dataset.name, "synthetic": ctx.dataset.synthetic,
                    "train": int(ctx.dataset.x_train.shape[0]),
                    "test": int(ctx.dataset.x_test.shape[0]),
                    "image_shape": list(ctx.dataset.image_shape),
                    "num_classes": ctx.dataset.num_classes},
        "dense": dense,
        "consistency": consistency["rows"],
        "consistency_layers": consistency["layers"],
        "composition": [r for r in retrained_rows if r["method"] not in extra],
        "random_baselines": [r for r in retrained_rows if r["method"] in extra],
        "connectivity": lmc or [],
        "imp": (_grouped(imp_rows, ("chain", "level", "target_density"))
                + _imp_dense(cfg, sibs) if imp_rows else []),
        "retrained_masks": [e for es in retrained.values() for e in es],
        "imp_members": imp_rows or [],
        "timing": {"seconds_per_stage": dict(ctx.timing), "train_images": images,
                   "connectivity_seconds": ctx.evaluation_seconds,
                   "images_per_s": images / seconds if seconds else None,
                   "device": jax.devices()[0].device_kind},
        "environment": environment(),
    }


def _grouped(entries: list[dict], by: tuple[str, ...]) -> list[dict]:
    """Mean and std of test accuracy (and mean densities) over entries sharing the `by` fields."""
    groups: dict = {}
    for e in entries:
        groups.setdefault(tuple(e[f] for f in by), []).append(e)
    rows = []
    for values, es in groups.items():
        accs = [e["test_accuracy"] for e in es]
        row = dict(zip(by, values))
        for f in ("spawn_epoch", "reinit"):
            if f in es[0] and f not in row:
                row[f] = es[0][f]
        row["achieved_density"] = float(np.mean([e["achieved_density"] for e in es]))
        if "sibling_density" in es[0]:
            row["sibling_density"] = float(np.mean([e["sibling_density"] for e in es]))
        row.update(test_accuracy_mean=float(np.mean(accs)), test_accuracy_std=float(np.std(accs)),
                   n=len(accs))
        rows.append(row)
    return rows


def _imp_dense(cfg: Config, sibs: dict) -> list[dict]:
    """Level 0 of every IMP chain: the dense siblings it starts from."""
    t = cfg.imp_rewind()
    hist = sibs[t]["history"]
    if not hist:
        return []
    acc = hist[-1]["test_accuracy"]
    return [{"chain": chain, "level": 0, "target_density": 1.0, "achieved_density": 1.0,
             "spawn_epoch": t, "test_accuracy_mean": float(np.mean(acc[:n])),
             "test_accuracy_std": float(np.std(acc[:n])), "n": n}
            for chain in cfg.imp_chains()
            for n in [1 if chain in ("imp", "oneshot") else cfg.imp_siblings()]]


def environment() -> dict:
    return {"jaxlottery": jaxlottery.__version__, "jax": jax.__version__,
            "flax": flax.__version__, "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
            "process_count": jax.process_count(), "python": platform.python_version()}


# --- bookkeeping ------------------------------------------------------------------------------------


def _done(ctx: Context, path: str) -> bool:
    """Whether a stage's output is there and whole (a corrupt one is reported and set aside);
    process 0 decides for all processes."""
    return sharding.agree(checkpoint.readable(path, ctx.log) if sharding.is_main()
                          else os.path.exists(path))


def _write(write: Callable, path: str, obj: Any) -> None:
    """Run files are written by process 0 only (arrays gathered from every process first);
    all processes wait until the file is there, so they skip and read stages alike."""
    obj = sharding.gather(obj)
    if sharding.is_main():
        write(path, obj)
    sharding.barrier(f"write {path}")


def _check_config(rundir: str, config: Config) -> None:
    """Write config.json, or check that the one there describes the same computation."""
    path = os.path.join(rundir, "config.json")
    if checkpoint.readable(path, print):
        old = Config.from_dict(checkpoint.read_json(path)["config"])
        diff = {k: (getattr(old, k), v) for k, v in config.to_dict().items()
                if k not in NOT_HASHED and getattr(old, k) != getattr(config, k)}
        if diff:
            raise ConfigMismatch(f"{path} holds a different configuration (field: (there, "
                                 f"asked)): {diff}; use another --workdir for a new run")
        return
    _write(checkpoint.write_json, path, {"config": config.to_dict(), "run_id": config.run_id(),
                                         "jaxlottery": jaxlottery.__version__})


def _summary(ctx: Context) -> None:
    cfg = ctx.config
    cost = cfg.network_epochs()
    n = ctx.dataset.x_train.shape[0]
    total = sum(cost.values())
    ctx.log(f"run {cfg.run_id()} in {ctx.rundir}")
    ctx.log(f"data: {ctx.dataset.name}{' (SYNTHETIC)' if ctx.dataset.synthetic else ''}, "
            f"{n} train / {ctx.dataset.x_test.shape[0]} test images of {ctx.dataset.image_shape}; "
            f"model ResNet-{cfg.model_depth} width {cfg.model_width}")
    ctx.log("stages: " + ", ".join(f"{k} {v:,.0f}" for k, v in cost.items())
            + f" network-epochs; {total:,.0f} in all = {total * n:,.0f} training images")
    ctx.log(siblings.strategy_note(cfg.strategy, cfg.steps_per_call))
    if all(os.path.exists(ctx.path("siblings", f"e{t}", "final.npz")) for t in cfg.spawn_epochs):
        ctx.log("estimate: skipped, the sibling stages are done (resuming); what remains is "
                "retraining and evaluation")
        return
    img_s = _measure_throughput(ctx)
    seconds = total * n / img_s
    ctx.log(f"estimate: {duration(seconds)} of training at {img_s:,.0f} images/s for {cfg.k} "
            f"siblings, measured on {jax.devices()[0].device_kind} (evaluation and finished "
            "stages not counted)")
    if jax.default_backend() == "cpu" and seconds > 86400:
        ctx.log(f"WARNING: this configuration needs about {duration(seconds)} on this CPU; "
                "use --preset=quick here, or a GPU/TPU")


def duration(seconds: float) -> str:
    """A human-sized duration: 40 s, 12 min, 3.5 h, 9 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} days"


def _measure_throughput(ctx: Context) -> float:
    """Images/s of the sibling stage's first program (the same compiled program the stage then
    reuses): compiled and run once, then timed over one more call (at least 3 iterations).
    A program of more than 20 iterations (a whole epoch) is not run twice for an estimate: a
    3-iteration program of the same kind is timed instead."""
    cfg = ctx.config
    init = models.init(ctx.key(INIT), cfg.model_depth, cfg.model_width, ctx.dataset.num_classes,
                       ctx.dataset.image_shape)
    n = ctx.dataset.x_train.shape[0]
    per_call = cfg.steps_per_call or siblings.default_steps_per_call()
    iterations, count, tail = siblings.calls(0, ctx.spe, ctx.spe, n, cfg.batch_size, per_call)[0]
    if iterations > 20:
        iterations, count, tail = 3, 3, False
    fn = siblings.program(cfg.strategy or siblings.default_strategy(), cfg.k, ctx.model,
                          ctx.recipe, n, count, tail)
    states = siblings.spawn(init, cfg.k, ctx.recipe)
    keys = jnp.stack([ctx.key(SIBLING_DATA, 0, i) for i in range(cfg.k)])
    perms = siblings.permutations(keys, jnp.asarray(0, jnp.int32), n)
    states, sums = fn(states, siblings.zero_sums(cfg.k), None, keys, perms, ctx.data)
    jax.block_until_ready(states)
    repeats = -(-3 // iterations)
    t0 = time.perf_counter()
    for _ in range(repeats):
        states, sums = fn(states, sums, None, keys, perms, ctx.data)
    jax.block_until_ready(states)
    images = repeats * cfg.k * (count * cfg.batch_size + tail * (n - (ctx.spe - 1) * cfg.batch_size))
    return images / (time.perf_counter() - t0)
