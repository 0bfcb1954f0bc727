"""The study's stages, in order: `STAGES`. Each is a small function `(ctx, out) -> output` that
reads the earlier stages' outputs from `out` (by stage name), writes its files (named in
`jaxlottery.paths`) and is skipped where they exist (`pipeline.done`).

1. shared: one network from the seed's init, trained to the last spawn point; W_t kept at
   every spawn epoch t.
2. siblings: k siblings spawned from every W_t, trained to the end with their own data keys;
   and the control, networks from independent inits trained the same way.
3. masks: one-shot global magnitude masks of every sibling (and of W_t, and of the control)
   at every density.
4. consistency: pairwise IoU and overlap against naive and layer-matched chance, the spawn
   weights' own mask and the control; per layer too.
5. connectivity: the error barrier on the line between disjoint sibling pairs.
6. composition: composed masks at matched density from the first k' siblings (every method of
   `masks.COMPOSITIONS` asked for), one-shot baselines, random and re-initialized baselines.
7. retrain: every mask of stage 6 retrained from W_t (jaxlottery.retraining).
8. imp: iterative magnitude pruning rewound to W_t, single-network and parallel.
9. results: results.json, CSV tables, figures and report.md (jaxlottery.results, report).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from jaxlottery import checkpoint, connectivity, masks, models, paths, report, results
from jaxlottery import retraining, siblings, stacks, statistics
from jaxlottery import train as train_lib
from jaxlottery.pipeline import (INDEPENDENT, INIT, RANDOM_MASKS, SHARED_DATA, SIBLING_DATA,
                                 Context, done, train_stage, write)


def shared(ctx: Context, out: dict) -> dict[int, dict]:
    """W_t for every spawn epoch t: the shared network's variables after t epochs."""
    cfg = ctx.config
    files = {t: ctx.path(paths.spawn_weights(t)) for t in cfg.spawn_epochs}
    init = _init(ctx, ctx.key(INIT))
    if not all([done(ctx, f) for f in files.values()]):
        if 0 in files:
            write(checkpoint.save_arrays, files[0], init)
        last = max(cfg.spawn_epochs)
        if last > 0:
            states = siblings.spawn(init, 1, ctx.recipe)

            def keep_spawn_points(epoch, st, record):
                if epoch + 1 in files:
                    write(checkpoint.save_arrays, files[epoch + 1],
                          train_lib.variables(stacks.index(st, 0)))

            bar = ctx.bar("shared", "shared training", last * ctx.spe)
            train_stage(ctx, paths.SHARED, states, ctx.key(SHARED_DATA)[None], bar,
                        until=last * ctx.spe, evaluate=False, on_epoch=keep_spawn_points)
            if bar is not None:
                bar.close()
    return {t: checkpoint.load_arrays(f, init) for t, f in files.items()}


def sibling_networks(ctx: Context, out: dict) -> dict:
    """k siblings spawned at every spawn epoch t, and the control of `independent_inits`
    networks from different inits, trained to the end: their final variables and histories,
    as {"spawned": {t: ...}, "independent": ... or None}."""
    cfg = ctx.config
    spawned = {}
    for t in cfg.spawn_epochs:
        states = siblings.spawn(out["shared"][t], cfg.k, ctx.recipe, step=t * ctx.spe)
        keys = [ctx.key(SIBLING_DATA, t, i) for i in range(cfg.k)]
        spawned[t] = _trained(ctx, paths.siblings(t), states, keys,
                              f"siblings spawned at epoch {t}")
    independent = None
    if cfg.independent_inits:
        inits = [_init(ctx, ctx.key(INDEPENDENT, j)) for j in range(cfg.independent_inits)]
        states = stacks.stack([train_lib.init_state(v, ctx.recipe) for v in inits])
        keys = [ctx.key(INDEPENDENT, j, 1) for j in range(cfg.independent_inits)]
        independent = _trained(ctx, paths.INDEPENDENT, states, keys, "independent inits (control)")
    return {"spawned": spawned, "independent": independent}


def _trained(ctx: Context, folder: str, states, keys: list, what: str) -> dict:
    """A stack trained to the end of the schedule (or read back): variables and history."""
    final, hist_path = ctx.path(paths.final(folder)), ctx.path(paths.history(folder))
    if not done(ctx, final):
        bar = ctx.bar("siblings", what, ctx.total_steps - int(states.step[0]))
        states, history = train_stage(ctx, folder, states, jnp.stack(keys), bar)
        if bar is not None:
            bar.close()
        write(checkpoint.write_json, hist_path, history)
        write(checkpoint.save_arrays, final, train_lib.variables(states))
    variables = checkpoint.load_arrays(final, train_lib.variables(states))
    return {"variables": variables, "history": checkpoint.read_json(hist_path)}


def _init(ctx: Context, key) -> dict:
    cfg = ctx.config
    return models.init(key, cfg.model_depth, cfg.model_width, ctx.dataset.num_classes,
                       ctx.dataset.image_shape)


def mask_files(ctx: Context, out: dict) -> dict:
    """Mask files per (kind, t, density index): siblings, spawn weights, independent inits."""
    cfg, nets = ctx.config, out["siblings"]
    files = {}
    for t in cfg.spawn_epochs:
        for i, d in enumerate(cfg.densities):
            for kind, params, stacked in (("siblings", nets["spawned"][t]["variables"]["params"], True),
                                          ("spawn", out["shared"][t]["params"], False)):
                path = ctx.path(paths.sibling_masks(kind, t, i))
                if not done(ctx, path):
                    write(masks.save, path, masks.magnitude_prune(params, d, stacked=stacked))
                files[kind, t, i] = path
    if nets["independent"] is not None:
        for i, d in enumerate(cfg.densities):
            path = ctx.path(paths.independent_masks(i))
            if not done(ctx, path):
                write(masks.save, path, masks.magnitude_prune(
                    nets["independent"]["variables"]["params"], d, stacked=True))
            files["independent", None, i] = path
    return files


def consistency(ctx: Context, out: dict) -> dict:
    """Rows of pairwise overlap statistics per (spawn point, density), overall and per layer."""
    path = ctx.path(paths.CONSISTENCY)
    if done(ctx, path):
        return checkpoint.read_json(path)
    cfg, files = ctx.config, out["masks"]
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
            members = stacks.unstack(stack)
            matched = [float(masks.chance_iou_matched(members[a], members[b]))
                       for a in range(cfg.k) for b in range(a + 1, cfg.k)]
            with_spawn = [float(masks.iou(m, spawn_mask)) for m in members]
            achieved = float(np.mean(np.asarray(masks.density(stack, stacked=True))))
            rows.append({
                "spawn_epoch": t, "density": d, "achieved_density": achieved,
                "iou_mean": float(np.mean(ious)), "iou_std": statistics.spread(ious)["std"],
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
    result = {"rows": rows, "layers": layer_rows}
    write(checkpoint.write_json, path, result)
    return result


def _offdiag(mat) -> np.ndarray:
    mat = np.asarray(mat)
    return mat[np.triu_indices(mat.shape[0], 1)]


def mode_connectivity(ctx: Context, out: dict) -> list[dict]:
    """The error barrier between disjoint sibling pairs (0, 1), (2, 3), ... at every spawn point,
    with BN statistics interpolated and/or recomputed (`lmc_bn`); one row per curve."""
    cfg = ctx.config
    if cfg.lmc_pairs == 0:
        return []
    files = {t: ctx.path(paths.connectivity(t)) for t in cfg.spawn_epochs}
    todo = [t for t in cfg.spawn_epochs if not done(ctx, files[t])]
    bar = ctx.bar("connectivity", "mode connectivity (points evaluated)",
                  len(todo) * cfg.lmc_pairs * len(cfg.lmc_bn) * cfg.lmc_points)
    for t in todo:
        t0, rows = time.perf_counter(), []
        variables = out["siblings"]["spawned"][t]["variables"]
        for p in range(cfg.lmc_pairs):
            a, b = stacks.index(variables, 2 * p), stacks.index(variables, 2 * p + 1)
            for bn in cfg.lmc_bn:
                res = connectivity.error_barrier(  # stacks of k points: the siblings' shape
                    a, b, ctx.data, ctx.model, points=cfg.lmc_points, bn=bn,
                    eval_batch=cfg.eval_batch, on_point=None if bar is None else bar.update,
                    chunk=cfg.k, **ctx.how)
                rows.append(dict(res, spawn_epoch=t, pair=[2 * p, 2 * p + 1]))
        ctx.evaluation_seconds = (ctx.evaluation_seconds or 0.0) + time.perf_counter() - t0
        write(checkpoint.write_json, files[t], rows)
    if bar is not None:
        bar.close()
    return [r for t in cfg.spawn_epochs for r in checkpoint.read_json(files[t])]


def composition(ctx: Context, out: dict) -> dict[int, dict]:
    """Per retraining spawn point t, the masks to retrain from W_t: composed, one-shot
    baselines, random and re-initialized baselines; with their metadata (method, k,
    densities, whether re-initialized)."""
    return {t: _composed(ctx, t, out["siblings"]["spawned"][t], out["shared"][t])
            for t in ctx.config.retrain_spawn_epochs}


def _composed(ctx: Context, t: int, sib: dict, spawn_vars: dict) -> dict:
    cfg = ctx.config
    mask_path = ctx.path(paths.composition(t, "masks"))
    meta_path = ctx.path(paths.composition(t, "meta"))
    if not (done(ctx, mask_path) and done(ctx, meta_path)):
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
                at_least = masks.at_least(how, kk)
                m, sd = masks.compose(stacks.first(params, kk), d, how=at_least)
                composed[how, kk] = (m, at_least, float(sd))
                add({"method": how, "k": kk, "at_least": at_least, "sibling_density": float(sd)},
                    m, d)
            one_shot = [masks.magnitude_prune(stacks.index(params, i), d)
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
        write(masks.save, mask_path, stacks.stack(ms))
        write(checkpoint.write_json, meta_path, entries)
    return {"masks": mask_path, "entries": checkpoint.read_json(meta_path)}


def results_files(ctx: Context, out: dict) -> dict:
    """results.json, the CSV tables, the figures and report.md; returns the results dict."""
    assembled = results.assemble(ctx, out)
    write(report.write, ctx.rundir, assembled)
    write(checkpoint.write_json, ctx.path(paths.RESULTS), assembled)
    return assembled


@dataclasses.dataclass(frozen=True)
class Stage:
    """A stage: its name (the key of its output), what progress bars call it, its function."""

    name: str
    label: str
    run: Callable[[Context, dict], Any]


STAGES = (
    Stage("shared", "shared training", shared),
    Stage("siblings", "siblings and the independent-init control", sibling_networks),
    Stage("masks", "one-shot masks", mask_files),
    Stage("consistency", "mask consistency", consistency),
    Stage("connectivity", "mode connectivity", mode_connectivity),
    Stage("composition", "composed and baseline masks", composition),
    Stage("retrain", "retraining", retraining.retrain),
    Stage("imp", "iterative magnitude pruning", retraining.iterative_pruning),
    Stage("results", "results and report", results_files),
)
