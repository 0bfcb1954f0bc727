"""The study's stages, in order: `STAGES`. Each is a small function `(ctx, out) -> output` that
reads the earlier stages' outputs from `out` (by stage name), writes its files (named in
`jaxlottery.paths`) and is skipped where they exist (`pipeline.done`).

1. shared: one network from the seed's init, trained to the last spawn point; W_t kept at
   every spawn point t (epochs, or iterations: "<s>it").
2. siblings: k siblings spawned from every W_t, trained to the end with their own data keys;
   and the control, networks from independent inits trained the same way.
   At every snapshot epoch the members' one-shot masks are made on the device and their
   consistency recorded (the trajectory).
3. masks: one-shot global magnitude masks of every sibling (and of W_t, and of the control)
   at every density.
4. consistency: pairwise IoU, kappa, pruned-set IoU and overlap against naive and
   layer-matched chance, the spawn weights' own mask and the control; per layer too.
5. replicates: stages 1-4 again from initializations 1 .. inits - 1 (`--inits`).
6. connectivity: the error barrier on the line between disjoint sibling pairs.
7. composition: composed masks at matched density from the first k' siblings (every method of
   `masks.COMPOSITIONS` asked for), one-shot baselines, random and re-initialized baselines.
8. retrain: every mask of stage 7 retrained from W_t (jaxlottery.retraining).
9. imp: iterative magnitude pruning rewound to W_t, single-network and parallel.
10. results: results.json, CSV tables, figures and report.md (jaxlottery.results, report).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxlottery import checkpoint, connectivity, masks, models, paths, report, results
from jaxlottery import consistency as consistency_stats
from jaxlottery import retraining, sharding, siblings, stacks
from jaxlottery import train as train_lib
from jaxlottery.pipeline import (INDEPENDENT, INIT, RANDOM_MASKS, SHARED_DATA, Context, done,
                                 train_stage, write)


def shared(ctx: Context, out: dict) -> dict[int | str, dict]:
    """W_t for every spawn point t: the shared network's variables after t epochs (or, for a
    point "<s>it", s iterations). Trained in segments, one per spawn point: W_t is written as
    soon as the segment reaching it returns, before any checkpoint past it exists, so a
    resumed run always finds or recomputes every W_t."""
    points = ctx.spawn_points
    files = {t: ctx.path(paths.spawn_weights(t)) for t in points}
    init = _init(ctx, ctx.key(INIT))
    todo = [t for t in points if not done(ctx, files[t])]
    if todo:
        states = siblings.spawn(init, 1, ctx.recipe)
        last = ctx.spawn_step(points[-1])
        bar = ctx.bar("shared", "shared training", last) if last else None
        for t in todo:
            if ctx.spawn_step(t) > 0:
                states, _ = train_stage(ctx, paths.SHARED, states, ctx.key(SHARED_DATA)[None],
                                        bar, until=ctx.spawn_step(t), evaluate=False)
            write(checkpoint.save_arrays, files[t],
                  init if ctx.spawn_step(t) == 0 else train_lib.variables(stacks.index(states, 0)))
        if bar is not None:
            bar.close()
    return {t: checkpoint.load_arrays(f, init) for t, f in files.items()}


def sibling_networks(ctx: Context, out: dict) -> dict:
    """k siblings spawned at every spawn point t, and the control of `independent_inits`
    networks from different inits, trained to the end: their final variables and histories,
    as {"spawned": {t: ...}, "independent": ... or None}. At every snapshot epoch the history
    record also holds the members' mask consistency (`consistency.snapshot_rows`), against
    the one-shot masks of the weights they started from."""
    cfg = ctx.config
    spawned = {}
    for t in ctx.spawn_points:
        states = siblings.spawn(out["shared"][t], cfg.k, ctx.recipe, step=ctx.spawn_step(t))
        keys = [ctx.sibling_key(t, i) for i in range(cfg.k)]
        spawned[t] = _trained(ctx, paths.siblings(t), states, keys,
                              f"siblings spawned at {_spawn_words(ctx, t)}",
                              ctx.scorer(out["shared"][t], keys, ctx.spawn_step(t)),
                              out["shared"][t]["params"])
    independent = None
    if cfg.independent_inits:
        inits = [_init(ctx, ctx.key(INDEPENDENT, j)) for j in range(cfg.independent_inits)]
        states = stacks.stack([train_lib.init_state(v, ctx.recipe) for v in inits])
        keys = [ctx.key(INDEPENDENT, j, 1) for j in range(cfg.independent_inits)]
        independent = _trained(ctx, paths.INDEPENDENT, states, keys, "independent inits (control)",
                               _independent_scorer(ctx), states.params, stacked=True)
    return {"spawned": spawned, "independent": independent}


def _spawn_words(ctx: Context, t: int | str) -> str:
    return f"iteration {ctx.spawn_step(t)}" if isinstance(t, str) else f"epoch {t}"


def _independent_scorer(ctx: Context) -> Callable:
    """The criterion's scores of the control networks, each against its own init."""
    n = ctx.config.independent_inits
    inits = stacks.stack([_init(ctx, ctx.key(INDEPENDENT, j)) for j in range(n)])
    return ctx.scorer(inits, [ctx.key(INDEPENDENT, j, 1) for j in range(n)], 0, stacked=True)


def _trained(ctx: Context, folder: str, states, keys: list, what: str, scorer: Callable,
             start_params, stacked: bool = False) -> dict:
    """A stack trained to the end of the schedule (or read back): variables and history, its
    snapshots (the masks of `scorer`'s scores) recorded against the magnitude masks of
    `start_params` (one network's, or a stack)."""
    final, hist_path = ctx.path(paths.final(folder)), ctx.path(paths.history(folder))
    if not done(ctx, final):
        bar = ctx.bar("siblings", what, ctx.total_steps - int(states.step[0]))
        states, history = train_stage(ctx, folder, states, jnp.stack(keys), bar,
                                      on_epoch=_snapshot_hook(ctx, scorer, start_params,
                                                              stacked, stacks.size(states)))
        if bar is not None:
            bar.close()
        write(checkpoint.write_json, hist_path, history)
        write(checkpoint.save_arrays, final, train_lib.variables(states))
    variables = checkpoint.load_arrays(final, train_lib.variables(states))
    return {"variables": variables, "history": checkpoint.read_json(hist_path)}


def _snapshot_hook(ctx: Context, scorer: Callable, start_params, stacked: bool,
                   k: int) -> Callable | None:
    """The per-epoch hook that records the stack's mask consistency at each snapshot epoch in
    the epoch's history record (so the checkpoint that follows keeps it), or None."""
    epochs, densities = set(ctx.config.snapshots()), tuple(ctx.config.densities)
    if not epochs or k < 2:
        return None
    refs = []

    def hook(epoch: int, st, record: dict):
        if epoch + 1 not in epochs:
            return
        if not refs:  # the starting weights' masks, made once, when first needed
            refs.append(consistency_stats.references(start_params, densities, k, stacked,
                                                       ctx.prunable))
        params = st.params if sharding.fully_addressable(st.params) else sharding.gather(st.params)
        record["snapshot"] = consistency_stats.snapshot_rows(scorer(params), refs[0], densities,
                                                            ctx.prunable)
    return hook


def _init(ctx: Context, key) -> dict:
    return models.init(key, ctx.config.model, ctx.dataset.num_classes, ctx.dataset.image_shape)


def _sibling_scores(ctx: Context, out: dict, t: int | str):
    """The criterion's scores of the siblings spawned at t (a stack)."""
    keys = [ctx.sibling_key(t, i) for i in range(ctx.config.k)]
    return ctx.scorer(out["shared"][t], keys, ctx.spawn_step(t))(
        out["siblings"]["spawned"][t]["variables"]["params"])


def mask_files(ctx: Context, out: dict) -> dict:
    """Mask files per (kind, t, density index): siblings, spawn weights, independent inits."""
    cfg, nets = ctx.config, out["siblings"]
    files = {}
    for t in ctx.spawn_points:
        scores: list = []  # made once per spawn point, when a mask is missing
        for i, d in enumerate(cfg.densities):
            path = ctx.path(paths.sibling_masks("siblings", t, i))
            if not done(ctx, path):
                scores = scores or [_sibling_scores(ctx, out, t)]
                write(masks.save, path, masks.magnitude_prune(
                    scores[0], d, stacked=True, rule=ctx.prunable))
            files["siblings", t, i] = path
            path = ctx.path(paths.sibling_masks("spawn", t, i))
            if not done(ctx, path):  # the reference: W_t's own magnitude mask
                write(masks.save, path, masks.magnitude_prune(
                    out["shared"][t]["params"], d, rule=ctx.prunable))
            files["spawn", t, i] = path
    if nets["independent"] is not None:
        scores = []
        for i, d in enumerate(cfg.densities):
            path = ctx.path(paths.independent_masks(i))
            if not done(ctx, path):
                scores = scores or [_independent_scorer(ctx)(
                    nets["independent"]["variables"]["params"])]
                write(masks.save, path, masks.magnitude_prune(
                    scores[0], d, stacked=True, rule=ctx.prunable))
            files["independent", None, i] = path
    return files


def consistency(ctx: Context, out: dict) -> dict:
    """Rows of pairwise consistency statistics (`jaxlottery.consistency`: IoU, kappa, pruned-set
    IoU, overlap, chance) per (spawn point, density), overall and per layer, beside the spawn
    weights' own mask and the independent-init control."""
    path = ctx.path(paths.CONSISTENCY)
    if done(ctx, path):
        return checkpoint.read_json(path)
    cfg, files = ctx.config, out["masks"]
    rows, layer_rows = [], []
    control = {}
    for i, d in enumerate(cfg.densities):
        if ("independent", None, i) in files:
            control[i] = consistency_stats.row(jax.device_get(consistency_stats.agreement(
                masks.load(files["independent", None, i]))))
    for t in ctx.spawn_points:
        where = {"init": ctx.init, "spawn_epoch": ctx.spawn_epoch(t),
                 "spawn_iteration": ctx.spawn_step(t)}
        for i, d in enumerate(cfg.densities):
            stack = masks.load(files["siblings", t, i])
            spawn_mask = stacks.stack([masks.load(files["spawn", t, i])] * cfg.k)
            stats = jax.device_get(consistency_stats.agreement(stack, spawn_mask))
            rows.append(dict(where, density=d, **consistency_stats.row(stats),
                             iou_independent_inits=control[i]["iou_mean"] if i in control else None,
                             kappa_independent_inits=(control[i]["kappa_mean"] if i in control
                                                      else None)))
            for layer in consistency_stats.layer_rows(stats):
                ld = layer["layer_density"]
                layer_rows.append(dict(where, density=d, **layer,
                                       chance_iou=float(masks.chance_iou(ld, ld))))
    result = {"rows": rows, "layers": layer_rows}
    write(checkpoint.write_json, path, result)
    return result


def replicates(ctx: Context, out: dict) -> list[dict]:
    """The consistency design (shared training, siblings and control, masks, consistency) from
    initializations 1 .. inits - 1 (`Context.replicate`: keys under REPLICATE -> j, files in
    `inits/<j>/`); initialization 0 is the stages above. One entry per initialization."""
    found = []
    for j in range(1, ctx.config.inits):
        label = f"{ctx.labels.get('replicates', '')} init {j}:".strip()
        sub = dataclasses.replace(ctx.replicate(j), labels={"shared": label, "siblings": label})
        o: dict = {}
        for name, stage in (("shared", shared), ("siblings", sibling_networks),
                            ("masks", mask_files), ("consistency", consistency)):
            o[name] = stage(sub, o)
        found.append({"init": j, "shared": o["shared"], "siblings": o["siblings"],
                      "consistency": o["consistency"]})
    return found


def mode_connectivity(ctx: Context, out: dict) -> list[dict]:
    """The error barrier between disjoint sibling pairs (0, 1), (2, 3), ... at every spawn point,
    with BN statistics interpolated and/or recomputed (`lmc_bn`); one row per curve."""
    cfg = ctx.config
    if cfg.lmc_pairs == 0:
        return []
    files = {t: ctx.path(paths.connectivity(t)) for t in ctx.spawn_points}
    todo = [t for t in ctx.spawn_points if not done(ctx, files[t])]
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
                rows.append(dict(res, spawn_epoch=ctx.spawn_epoch(t), pair=[2 * p, 2 * p + 1]))
        ctx.evaluation_seconds = (ctx.evaluation_seconds or 0.0) + time.perf_counter() - t0
        write(checkpoint.write_json, files[t], rows)
    if bar is not None:
        bar.close()
    return [r for t in ctx.spawn_points for r in checkpoint.read_json(files[t])]


def composition(ctx: Context, out: dict) -> dict[int, dict]:
    """Per retraining spawn point t, the masks to retrain from W_t: composed, one-shot
    baselines, random and re-initialized baselines; with their metadata (method, k,
    densities, whether re-initialized)."""
    return {t: _composed(ctx, t, lambda t=t: _sibling_scores(ctx, out, t), out["shared"][t],
                         _accuracies(out["siblings"]["spawned"][t]))
            for t in ctx.config.retrain_spawn_epochs}


def _accuracies(sib: dict) -> list[float] | None:
    """The siblings' final test accuracies (the weights of `weighted_vote`), if evaluated."""
    history = sib["history"]
    return list(history[-1]["test_accuracy"]) if history and "test_accuracy" in history[-1] else None


def _composed(ctx: Context, t: int, sibling_scores: Callable, spawn_vars: dict,
              accuracies: list[float] | None) -> dict:
    """The masks retrained from W_t, ranked by the siblings' `--criterion` scores (made by
    `sibling_scores()` only when the masks are not there yet) and composed by name, each rule
    given the group's accuracies (read by `weighted_vote`)."""
    cfg = ctx.config
    mask_path = ctx.path(paths.composition(t, "masks"))
    meta_path = ctx.path(paths.composition(t, "meta"))
    if not (done(ctx, mask_path) and done(ctx, meta_path)):
        params = sibling_scores()  # what every mask below ranks (|w_T| for magnitude)
        entries, ms = [], []

        def add(entry: dict, m, d: float):
            entries.append(dict({"reinit": False}, **entry, target_density=d,
                                achieved_density=float(masks.density(m))))
            ms.append(m)

        k_max = cfg.effective_k_values()[-1]
        for j, d in enumerate(cfg.retrain_densities):
            composed = {}
            for how, kk in cfg.compose_methods(cfg.effective_k_values()):
                at_least = masks.at_least(how, kk)  # None for a rule that is no threshold
                for g in range(cfg.mask_groups(kk)):  # group g: siblings g k' .. (g + 1) k' - 1
                    ids = list(range(g * kk, (g + 1) * kk))
                    m, sd = masks.compose(stacks.take(params, ids), d, how=how, rule=ctx.prunable,
                                          weights=_weights(accuracies, ids))
                    composed.setdefault((how, kk), (m, at_least, float(sd)))
                    add({"method": how, "k": kk, "at_least": at_least, "replicate": g,
                         "siblings": list(range(g * kk, (g + 1) * kk)),
                         "sibling_density": float(sd)}, m, d)
            one_shot = [masks.magnitude_prune(stacks.index(params, i), d, rule=ctx.prunable)
                        for i in range(cfg.baseline_siblings)]
            for i, m in enumerate(one_shot):
                add({"method": "baseline", "k": 1, "sibling": i, "replicate": i,
                     "sibling_density": d}, m, d)
            for method in cfg.random_baseline_methods():
                if method == "random":
                    m = masks.random_mask(ctx.key(RANDOM_MASKS, t, j, 0), spawn_vars["params"], d,
                                          rule=ctx.prunable)
                    add({"method": method, "k": 1, "sibling_density": d}, m, d)
                elif method == "random_matched":  # the positive control, one per baseline
                    for i in range(cfg.control_masks()):
                        key = ctx.key(RANDOM_MASKS, t, j, 1, *([i] if i else []))
                        add({"method": method, "k": 1, "replicate": i, "sibling_density": d},
                            masks.random_mask_like(key, one_shot[i]), d)
                elif method == "baseline_reinit":
                    add({"method": method, "k": 1, "sibling": 0, "sibling_density": d,
                         "reinit": True}, one_shot[0], d)
                else:
                    m, at_least, sd = composed[method.removesuffix("_reinit"), k_max]
                    add({"method": method, "k": k_max, "at_least": at_least,
                         "sibling_density": sd, "reinit": True}, m, d)
            if cfg.natural_density:
                for entry, m, d_nat in _natural(ctx, t, j, params, d, accuracies):
                    add(entry, m, d_nat)
        write(masks.save, mask_path, stacks.stack(ms))
        write(checkpoint.write_json, meta_path, entries)
    entries = checkpoint.read_json(meta_path)
    overlap_path = ctx.path(paths.composition(t, "overlaps"))
    if not done(ctx, overlap_path):
        write(checkpoint.write_json, overlap_path,
              mask_overlaps(masks.load(mask_path), entries))
    return {"masks": mask_path, "entries": entries,
            "overlaps": checkpoint.read_json(overlap_path)}


def _natural(ctx: Context, t: int, j: int, params, d: float,
             accuracies: list[float] | None) -> list[tuple[dict, Any, float]]:
    """`--natural_density` at target density d (the j-th): each method's replicate masks
    composed from the siblings' own one-shot masks at d, so they keep the density composition
    gives them, and beside them one-shot masks (and positive controls) at that density, their
    mean over the replicates: (entry, mask, density of the cell) triples, entries marked
    `natural` and naming the target they came from. A method whose masks keep nothing is
    left out."""
    cfg = ctx.config
    own = [masks.magnitude_prune(stacks.index(params, i), d, rule=ctx.prunable)
           for i in range(cfg.k)]
    out = []
    for c, (how, kk) in enumerate(cfg.compose_methods(cfg.effective_k_values())):
        m_of = masks.at_least(how, kk)
        group = [list(range(g * kk, (g + 1) * kk)) for g in range(cfg.mask_groups(kk))]
        composed = [masks.combine([own[i] for i in sibs], how, _weights(accuracies, sibs))
                    for sibs in group]
        d_nat = sum(float(masks.density(m)) for m in composed) / len(composed)
        if d_nat == 0:
            continue
        tag = {"natural": True, "natural_of": [how, kk], "sibling_density": d}
        out += [({"method": how, "k": kk, "at_least": m_of, "replicate": g, "siblings": sibs,
                  **tag}, m, d_nat) for g, (sibs, m) in enumerate(zip(group, composed))]
        one_shot = [masks.magnitude_prune(stacks.index(params, i), d_nat, rule=ctx.prunable)
                    for i in range(cfg.baseline_siblings)]
        out += [({"method": "baseline", "k": 1, "sibling": i, "replicate": i, **tag}, m, d_nat)
                for i, m in enumerate(one_shot)]
        out += [({"method": "random_matched", "k": 1, "replicate": i, **tag},
                 masks.random_mask_like(ctx.key(RANDOM_MASKS, t, j, 2, c, i), one_shot[i]), d_nat)
                for i in range(cfg.control_masks())]
    return out


def _weights(accuracies: list[float] | None, ids: list[int]) -> list[float] | None:
    return None if accuracies is None else [accuracies[i] for i in ids]


def mask_overlaps(stack, entries: list[dict]) -> list[dict]:
    """IoU and kappa between every two masks retrained from one W_t at the same target
    density (re-initialized ones excepted: their masks are others'), so a verdict can say how
    different the masks it compares were. One row per pair, naming both by their entry."""
    rows = []
    for d in dict.fromkeys(e["target_density"] for e in entries):
        ids = [i for i, e in enumerate(entries)
               if e["target_density"] == d and not e.get("reinit")]
        ms = stacks.take(stack, ids)
        iou, kappa = jax.device_get((masks.pairwise_iou(ms), masks.pairwise_kappa(ms)))
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                rows.append({"density": d, "a": ids[a], "b": ids[b],
                             "iou": float(iou[a, b]), "kappa": float(kappa[a, b])})
    return rows


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
    Stage("replicates", "the consistency design from more initializations (--inits)", replicates),
    Stage("connectivity", "mode connectivity", mode_connectivity),
    Stage("composition", "composed and baseline masks", composition),
    Stage("retrain", "retraining", retraining.retrain),
    Stage("imp", "iterative magnitude pruning", retraining.iterative_pruning),
    Stage("results", "results and report", results_files),
)
