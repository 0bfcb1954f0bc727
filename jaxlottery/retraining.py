"""Retraining masks from W_t: the retraining stage, iterative magnitude pruning, and the
machinery both share (masks trained together in stacks that fill the device, each stack a
finished output of its own, so a rerun skips finished stacks)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlottery import checkpoint, imp, masks, models, paths, siblings, stacks
from jaxlottery import train as train_lib
from jaxlottery.pipeline import (IMP_DATA, REINIT, RETRAIN_DATA, ConfigMismatch, Context, done,
                                 train_stage, write)


def retrain(ctx: Context, out: dict) -> dict[int, list[dict]]:
    """Every mask of the composition stage, and a dense control (the unpruned network), retrained
    from W_t (the re-initialized baselines from the fresh init REINIT -> t) with `retrain_seeds`
    data orders, per retraining spawn point t. Seed r is one order for every mask (RETRAIN_DATA
    -> t for r = 0, RETRAIN_DATA -> t -> r after), so every comparison is paired. Returns, per
    t, one row per (mask, seed): the mask's metadata, `seed` and the test accuracy."""
    cfg = ctx.config
    retrained = {}
    for t in cfg.retrain_spawn_epochs:
        spawn_vars = out["shared"][t]
        entries = out["composition"][t]["entries"] + [DENSE_CONTROL]
        stack = masks.load(out["composition"][t]["masks"], like=spawn_vars["params"])
        dense_mask = masks.ones_like(spawn_vars["params"], ctx.prunable)
        stack = stacks.stack(stacks.unstack(stack) + [dense_mask])
        fresh = None
        if any(e.get("reinit") for e in entries):
            fresh = models.init(ctx.key(REINIT, t), cfg.model, ctx.dataset.num_classes,
                                ctx.dataset.image_shape)
        n, seeds = len(entries), range(cfg.retrain_seeds)
        keys = [ctx.key(RETRAIN_DATA, t, *([r] if r else [])) for r in seeds for _ in entries]
        outcome = train_masks(ctx, paths.retraining(t), t, spawn_vars,
                              stacks.take(stack, [i for _ in seeds for i in range(n)]), keys,
                              ("retrain", f"retraining masks from epoch {t}"), fresh=fresh,
                              reinit=[bool(e.get("reinit")) for _ in seeds for e in entries])
        accuracy = outcome["test_accuracy"]
        retrained[t] = [dict(e, spawn_epoch=t, seed=r, test_accuracy=accuracy[r * n + i])
                        for r in seeds for i, e in enumerate(entries)]
    return retrained


# The dense control: the unpruned network, rewound to W_t and retrained on the masks' data
# orders, so "composed vs dense" is a paired comparison too.
DENSE_CONTROL = {"reinit": False, "method": "dense", "k": 1, "sibling_density": 1.0,
                 "target_density": 1.0, "achieved_density": 1.0}


def iterative_pruning(ctx: Context, out: dict) -> list[dict] | None:
    """IMP rewound to W_t (t = imp_rewind()), `imp_levels` levels of `imp_rate` each (None when
    off).

    Level 0 is the siblings stage: single-network IMP starts from sibling 0, every parallel
    chain from siblings 0..imp_k-1. At level L each chain's mask is made from its level L-1
    networks (pruned further, or composed at exactly the level's density), and all chains'
    networks train together from W_t; `oneshot` prunes the dense sibling 0 straight to the
    level's density (its level 1 is IMP's level 1, so it is not trained twice). Returns one
    row per (chain, level, member) with its mask density and test accuracy."""
    cfg = ctx.config
    if not cfg.imp_levels:
        return None
    t, n_sib, chains = cfg.imp_rewind(), cfg.imp_siblings(), cfg.imp_chains()
    spawn_vars = out["shared"][t]
    # Host arrays: slicing them compiles nothing.
    dense = jax.tree.map(np.asarray, out["siblings"]["spawned"][t]["variables"]["params"])
    # Per chain: its mask, the networks trained under it and their data keys (to score them).
    dense_keys = [ctx.sibling_key(t, i) for i in range(n_sib)]
    everything = masks.ones_like(stacks.index(dense, 0), ctx.prunable)
    current = {"imp": (everything, stacks.first(dense, 1), dense_keys[:1])}
    for how in chains[2:]:
        current[how] = (everything, stacks.first(dense, n_sib), dense_keys)

    def scores(chain: str):  # the --criterion scores of a chain's networks, from W_t
        _, params, keys = current[chain]
        return ctx.scorer(spawn_vars, keys, ctx.spawn_step(t))(params)

    first_dense: list = []  # one-shot's scores: dense sibling 0's, made once

    rows = []
    for level in range(1, cfg.imp_levels + 1):
        d = imp.level_density(level, cfg.imp_rate)
        mask_path, meta_path = ctx.path(paths.imp_masks(level)), ctx.path(paths.imp_members(level))
        if not (done(ctx, mask_path) and done(ctx, meta_path)):
            members, ms = [], []
            for chain in chains:
                if chain == "imp":
                    m, size = imp.prune_further(stacks.index(scores("imp"), 0),
                                                current["imp"][0], d), 1
                elif chain == "oneshot":
                    if level == 1:
                        continue
                    first_dense = first_dense or [stacks.index(ctx.scorer(
                        spawn_vars, dense_keys[:1], ctx.spawn_step(t))(stacks.first(dense, 1)), 0)]
                    m, size = masks.magnitude_prune(first_dense[0], d, rule=ctx.prunable), 1
                else:
                    m, size = imp.compose_further(scores(chain), current[chain][0], d,
                                                  chain), n_sib
                for i in range(size):
                    members.append({"chain": chain, "member": i, "level": level,
                                    "target_density": d, "achieved_density": float(masks.density(m))})
                    ms.append(m)
            write(masks.save, mask_path, stacks.stack(ms))
            write(checkpoint.write_json, meta_path, members)
        members = checkpoint.read_json(meta_path)
        stack = masks.load(mask_path, like=spawn_vars["params"])
        keys = [ctx.key(IMP_DATA, level, m["member"]) for m in members]
        outcome = train_masks(ctx, paths.imp_level(level), t, spawn_vars, stack, keys,
                              ("imp", f"IMP level {level}/{cfg.imp_levels} ({100 * d:.1f}%)"),
                              keep_params=True)
        for i, m in enumerate(members):
            rows.append(dict(m, spawn_epoch=t, test_accuracy=outcome["test_accuracy"][i]))
            if level == 1 and m["chain"] == "imp" and "oneshot" in chains:
                rows.append(dict(rows[-1], chain="oneshot", same_as="imp"))
        for chain in chains:
            if chain == "oneshot":
                continue
            idx = np.asarray([i for i, m in enumerate(members) if m["chain"] == chain])
            current[chain] = (stacks.index(stack, int(idx[0])), stacks.take(outcome["params"], idx),
                              [keys[i] for i in idx])
    return rows


def train_masks(ctx: Context, folder: str, t: int, spawn_vars: dict, stack: Any, keys: list,
                progress: tuple[str, str], fresh: dict | None = None,
                reinit: list[bool] | None = None, keep_params: bool = False) -> dict:
    """Train every mask of `stack` from W_t (member i from `fresh` where `reinit[i]`) to the
    end of the schedule with data key `keys[i]`, in chunks of one compiled shape
    (`plan_chunk`). Each chunk's test accuracies (and with `keep_params` its final weights) are
    a finished output of its own, so a rerun skips finished chunks. `progress`: (stage, what)
    for the progress bar. Returns test_accuracy per member and, with keep_params, the final
    params as a stack."""
    cfg = ctx.config
    n = stacks.size(stack)
    chunk = plan_chunk(ctx, folder, n)
    n_chunks = -(-n // chunk)
    done_paths = [ctx.path(paths.chunk(folder, c, ".json")) for c in range(n_chunks)]
    param_paths = [ctx.path(paths.chunk(folder, c, ".npz")) for c in range(n_chunks)]
    planned = [list(range(c * chunk, min((c + 1) * chunk, n))) for c in range(n_chunks)]
    remaining = [c for c in range(n_chunks)
                 if not (done(ctx, done_paths[c]) and (not keep_params or done(ctx, param_paths[c])))]
    for c in set(range(n_chunks)) - set(remaining):
        res = checkpoint.read_json(done_paths[c])
        if not isinstance(res, dict) or res.get("ids") != planned[c]:
            raise ConfigMismatch(f"{done_paths[c]} holds other networks than this run plans for "
                                 f"chunk {c}; use another --workdir, or delete {ctx.path(folder)}")
    bar = ctx.bar(*progress, len(remaining) * (ctx.total_steps - t * ctx.spe))
    for c in remaining:
        ids = planned[c]
        padded = np.asarray(ids + [ids[-1]] * (chunk - len(ids)))  # one shape: one compile
        states = siblings.spawn(spawn_vars, chunk, ctx.recipe, step=t * ctx.spe)
        if reinit is not None and any(reinit[i] for i in padded):
            states = _start_fresh(states, fresh, np.asarray([reinit[i] for i in padded]))
        states, history = train_stage(ctx, paths.chunk(folder, c), states,
                                      jnp.stack([keys[i] for i in padded]), bar,
                                      ms=stacks.take(stack, padded), evaluate=False,
                                      members=len(ids))
        final = siblings.evaluate_stack(states, ctx.data, ctx.model, cfg.eval_batch, **ctx.how)
        if keep_params:
            write(checkpoint.save_arrays, param_paths[c], stacks.first(states.params, len(ids)))
        write(checkpoint.write_json, done_paths[c], {
            "ids": ids, "test_accuracy": [final[i]["accuracy"] for i in range(len(ids))],
            "train_loss": history[-1]["train_loss"][:len(ids)] if history else None})
    if bar is not None:
        bar.close()
    accuracy = [None] * n
    for c in range(n_chunks):
        res = checkpoint.read_json(done_paths[c])
        for i, acc in zip(res["ids"], res["test_accuracy"]):
            accuracy[i] = acc
    outcome = {"test_accuracy": accuracy}
    if keep_params:
        like = spawn_vars["params"]
        parts = [checkpoint.load_arrays(param_paths[c], like, as_numpy=True) for c in range(n_chunks)]
        outcome["params"] = jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
    return outcome


def plan_chunk(ctx: Context, folder: str, n: int) -> int:
    """Members per retraining program: `retrain_chunk`, or (none) as many as the device holds
    (`siblings.stack_capacity`; k on CPU). Fixed in `<folder>/plan.json` when the folder is
    first trained, so a run resumed on another device keeps its chunks (and their files)."""
    cfg = ctx.config
    plan_path = ctx.path(paths.plan(folder))
    if done(ctx, plan_path):
        plan = checkpoint.read_json(plan_path)
        if isinstance(plan, dict) and plan.get("members") == n and isinstance(plan.get("chunk"), int):
            return plan["chunk"]
        if isinstance(plan, dict) and isinstance(plan.get("members"), int):
            raise ConfigMismatch(
                f"{plan_path}: this folder was laid out for {plan['members']} networks (by an "
                f"earlier version, or another configuration), this run trains {n}; its chunks "
                f"cannot be reused. Use another --workdir, or delete {ctx.path(folder)}")
        ctx.log(f"{plan_path} is not a plan; planning again")
    if (os.path.exists(ctx.path(paths.chunk(folder, 0)))
            or done(ctx, ctx.path(paths.chunk(folder, 0, ".json")))):
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
    write(checkpoint.write_json, plan_path, {"members": n, "chunk": chunk})
    return checkpoint.read_json(plan_path)["chunk"]  # process 0's plan, on every process


def _start_fresh(states: train_lib.TrainState, fresh: dict, which: np.ndarray) -> train_lib.TrainState:
    """Members `which` of a freshly spawned stack start from `fresh` variables instead."""
    def pick(stacked, new):
        sel = which.reshape((-1,) + (1,) * new.ndim)
        return jnp.where(sel, new[None], stacked)

    return states._replace(params=jax.tree.map(pick, states.params, fresh["params"]),
                           batch_stats=jax.tree.map(pick, states.batch_stats, fresh["batch_stats"]))
