"""The estimate printed before a study starts: what it costs, timed on this machine."""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp

from jaxlottery import models, paths, siblings
from jaxlottery.config import Config
from jaxlottery.imprint import TESTABLE
from jaxlottery.pipeline import INIT, SIBLING_DATA, Context
from jaxlottery.units import duration  # noqa: F401 - estimate.duration, as before


def announce(ctx: Context) -> None:
    """Log the run's address, data, model, cost per stage and how siblings are compiled, and
    (unless every sibling stage is done) the training time, timed on this machine."""
    cfg = ctx.config
    n = ctx.dataset.x_train.shape[0]
    cost = cfg.network_epochs(n)
    total = sum(cost.values())
    ctx.log(f"run {cfg.run_id()} in {ctx.rundir}")
    ctx.log(f"data: {ctx.dataset.name}{' (SYNTHETIC)' if ctx.dataset.synthetic else ''}, "
            f"{n} train / {ctx.dataset.x_test.shape[0]} test images of {ctx.dataset.image_shape}; "
            f"model {models.get(cfg.model).description}")
    ctx.log("stages: " + ", ".join(f"{k} {v:,.0f}" for k, v in cost.items())
            + f" network-epochs; {total:,.0f} in all = {total * n:,.0f} training images")
    ctx.log(siblings.strategy_note(cfg.strategy, cfg.steps_per_call, cfg.xla_options,
                                   cfg.flat_update))
    for line in science_notes(cfg, n):
        ctx.log(line)
    if all(os.path.exists(ctx.path(paths.final(paths.siblings(t)))) for t in ctx.spawn_points):
        ctx.log("estimate: skipped, the sibling stages are done (resuming); what remains is "
                "retraining and evaluation")
        return
    img_s = measure_throughput(ctx)
    seconds = total * n / img_s
    ctx.log(f"estimate: {duration(seconds)} of training at {img_s:,.0f} images/s for {cfg.k} "
            f"siblings, measured on {jax.devices()[0].device_kind} (evaluation and finished "
            "stages not counted)")
    if jax.default_backend() == "cpu" and seconds > 86400:
        ctx.log(f"WARNING: this configuration needs about {duration(seconds)} on this CPU; "
                "use --preset=quick here, or a GPU/TPU")


def science_notes(cfg: Config, n_train: int) -> list[str]:
    """What the run can test, from its settings alone: the initialization's imprint on the final
    weights (`jaxlottery.imprint`) and the spawn points after the first learning-rate drop."""
    kept = cfg.imprint(n_train)
    lines = [f"imprint: the final weights keep {kept:.2f} of their initial values "
             "(exp(-wd/(1-momentum) x sum of learning rates); the paper's recipe: 0.04)"
             + ("" if kept <= TESTABLE else
                f"; above {TESTABLE:.2f}, this run cannot test claim 1 (near chance at "
                "t = 0): its magnitude masks would largely restate W_0's magnitudes")]
    if cfg.criterion != "magnitude":
        lines.append(f"criterion: masks rank by {cfg.criterion}, not the paper's magnitude: this "
                     "run does not test the paper's claims about magnitude masks")
    late = cfg.late_spawn_points(n_train)
    if late:
        lines.append(f"WARNING: spawn point(s) {', '.join(map(str, late))} lie at or after the "
                     f"first learning-rate drop (epoch {min(cfg.lr_drop_epochs)}): not a few "
                     "epochs of shared pretraining in the paper's sense")
    return lines


def measure_throughput(ctx: Context) -> float:
    """Images/s of the sibling stage's first program (the same compiled program the stage then
    reuses): compiled and run once, then timed over one more call (at least 3 iterations).
    A program of more than 20 iterations (a whole epoch) is not run twice for an estimate: a
    3-iteration program of the same kind is timed instead."""
    cfg = ctx.config
    init = models.init(ctx.key(INIT), cfg.model, ctx.dataset.num_classes, ctx.dataset.image_shape)
    n = ctx.dataset.x_train.shape[0]
    how = siblings.resolve(cfg.strategy, cfg.steps_per_call, cfg.xla_options, cfg.flat_update)
    iterations, count, tail = siblings.calls(0, ctx.spe, ctx.spe, n, cfg.batch_size,
                                             how.steps_per_call)[0]
    if iterations > 20:
        iterations, count, tail = 3, 3, False
    fn = siblings.program(how.strategy, cfg.k, ctx.model, ctx.recipe, n, count, tail,
                          xla_options=how.xla_options, flat=how.flat_update)
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
