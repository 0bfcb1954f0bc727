"""The sibling axis: k networks (siblings, or masks to retrain) trained as one stack.

A stack is any pytree whose leaves carry a leading axis k: `TrainState`s, masks, data keys,
metrics. `train` runs a stack through the recipe with one of three strategies:

- `vmap`: one compiled step over all k members (convolutions become grouped convolutions).
- `loop`: one compiled step that contains k copies of the single-network step.
- `separate`: one compiled single-network step, dispatched k times per iteration.

Measured on a 2-core CPU (BUILD_NOTES.md): vmap over 10 siblings' conv kernels ran at 0.16x
the throughput of one network, a loop at 1.05x, so `loop` is the CPU default; `vmap` is the
default on GPU and TPU (unmeasured here: no GPU was lent yet).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlottery import data as data_lib
from jaxlottery import masks as masks_lib
from jaxlottery import sharding
from jaxlottery import train as train_lib
from jaxlottery.train import Recipe, TrainState

STRATEGIES = ("vmap", "loop", "separate")

stack = masks_lib.stack
unstack = masks_lib.unstack


def default_strategy(backend: str | None = None) -> str:
    """`loop` on CPU (grouped convolutions are slow there), `vmap` on GPU/TPU."""
    return "loop" if (backend or jax.default_backend()) == "cpu" else "vmap"


def strategy_note(strategy: str | None = None) -> str:
    """One line saying which strategy runs and why, for logs and progress output."""
    backend = jax.default_backend()
    if strategy is not None:
        return f"sibling strategy: {strategy} (chosen by the caller; backend {backend})"
    why = ("vmap over conv kernels measured 6x slower than a loop on XLA:CPU"
           if backend == "cpu" else "one batched program per step; see BUILD_NOTES.md")
    return f"sibling strategy: {default_strategy(backend)} (default on {backend}: {why})"


def index(tree: Any, i: int) -> Any:
    """Member i of a stack."""
    return jax.tree.map(lambda x: None if x is None else x[i], tree, is_leaf=masks_lib.is_none)


def spawn(variables: dict, k: int, recipe: Recipe, step: int = 0) -> TrainState:
    """k identical copies of a network (weights and BN statistics) at iteration `step`, each
    with fresh momentum: the sibling stack of the protocol."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    state = train_lib.init_state(variables, recipe, step)
    return jax.tree.map(lambda x: jnp.repeat(x[None], k, axis=0), state)


def size(states: TrainState) -> int:
    return int(states.step.shape[0])


def local_step(strategy: str, k: int, model: nn.Module, recipe: Recipe, batch: int,
               masked: bool) -> Callable:
    """The traceable k-member step of `vmap` or `loop`: (states, masks, keys, perms, data)."""
    single = functools.partial(train_lib.train_step, model=model, recipe=recipe, batch=batch)
    if strategy == "vmap":
        return jax.vmap(single, in_axes=(0, 0 if masked else None, 0, 0, None))
    if strategy == "loop":
        def looped(states, ms, keys, perms, data):
            outs = [single(index(states, i), index(ms, i) if masked else None, keys[i], perms[i],
                           data) for i in range(k)]
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
        return looped
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


@functools.lru_cache(maxsize=None)
def step_fn(strategy: str, k: int, model: nn.Module, recipe: Recipe, batch: int,
            masked: bool, mesh: Any = None) -> Callable:
    """(states, masks, keys, perms, data) -> (states, metrics) for a stack of k members.

    With a mesh, k (a multiple of its device count) is split over the devices and each runs
    `strategy` on its k / n members (`separate` becomes the backend's default there)."""
    if mesh is not None:
        local = strategy if strategy in ("vmap", "loop") else default_strategy()
        return sharding.sharded(local_step(local, k // mesh.devices.size, model, recipe, batch,
                                           masked), mesh)
    if strategy == "separate":
        jitted = jax.jit(functools.partial(train_lib.train_step, model=model, recipe=recipe,
                                           batch=batch))

        def separate(states, ms, keys, perms, data):
            outs = [jitted(index(states, i), index(ms, i) if masked else None, keys[i], perms[i],
                           data) for i in range(k)]
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
        return separate
    return jax.jit(local_step(strategy, k, model, recipe, batch, masked))


@functools.partial(jax.jit, static_argnames="n")
def permutations(keys: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
    """Each member's data order for `epoch`: (k, n) int32."""
    return jax.vmap(train_lib.epoch_permutation, in_axes=(0, None, None))(keys, epoch, n)


def train(states: TrainState, keys: jax.Array, data: data_lib.DeviceData, model: nn.Module,
          recipe: Recipe, *, until: int, ms: Any = None, strategy: str | None = None,
          evaluate: bool = True, progress: Any = False,
          on_epoch: Callable[[int, TrainState, dict], None] | None = None,
          mesh: Any = None) -> tuple[TrainState, list[dict]]:
    """Train a stack from its current iteration to iteration `until`.

    `keys` holds one data key per member; `ms` is a stack of masks (or None: dense), applied
    to the starting weights too. `progress`: False, True, a description, or a tqdm bar to
    advance (a stage's single bar across several calls). Metrics
    stay on the device during an epoch and are read once at its end, when the history gets a
    record (per-member train loss/accuracy, test accuracy if `evaluate`) and `on_epoch(epoch,
    states, record)` runs (checkpointing hooks in here). A non-finite loss raises.

    With a `mesh` (`sharding.sibling_mesh()`), the stack is padded to a multiple of the device
    count and split over the devices; padding members are dropped from everything returned.
    """
    if progress is True or isinstance(progress, str):
        print(strategy_note(strategy), flush=True)
    strategy = strategy or default_strategy()
    k = size(states)
    if keys.shape[:1] != (k,):
        raise ValueError(f"need one data key per member: {k} members, keys of shape {keys.shape}")
    if ms is not None and masks_lib.stack_size(ms) != k:
        raise ValueError(f"need one mask per member: {k} members, {masks_lib.stack_size(ms)} masks")
    steps = np.asarray(states.step)
    if not np.all(steps == steps[0]):
        raise ValueError(f"all members must be at the same iteration, got {steps.tolist()}")
    if ms is not None:  # a rewound network starts pruned, not only after its first update
        states = states._replace(params=masks_lib.apply(states.params, ms))
    eval_data, run_k = data, k
    if mesh is not None:
        run_k = sharding.padded_size(k, mesh)
        states, keys, ms = (sharding.place(sharding.pad(x, run_k), mesh) for x in (states, keys, ms))
        data = sharding.place(data, mesh, sharding.P())
    n = data.x_train.shape[0]
    spe = recipe.steps_per_epoch(n)
    step, history = int(steps[0]), []
    bar = _progress_bar(progress, until - step, k)
    while step < until:
        epoch = step // spe
        perms = permutations(keys, jnp.asarray(epoch, jnp.int32), n)
        sums, t0 = None, time.perf_counter()
        end = min(until, (epoch + 1) * spe)
        for s in range(step, end):
            batch = min(recipe.batch_size, n - (s % spe) * recipe.batch_size)
            fn = step_fn(strategy, run_k, model, recipe, batch, ms is not None, mesh)
            states, metrics = fn(states, ms, keys, perms, data)
            sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
            if bar is not None:
                bar.update(1)
        sums = jax.tree.map(lambda x: x[:k], sharding.gather(sums))  # the epoch's one host sync
        train_lib.check_finite(sums, f"epoch {epoch + 1} (iterations {step}-{end})")
        record = {"epoch": epoch + 1, "step": end, "complete_epoch": end % spe == 0,
                  "train_loss": (sums["loss"] / sums["count"]).tolist(),
                  "train_accuracy": (sums["correct"] / sums["count"]).tolist(),
                  "seconds": time.perf_counter() - t0}
        if evaluate:
            record["test_accuracy"] = [e["accuracy"] for e in evaluate_stack(
                sharding.unpad(states, k), eval_data, model)]
        history.append(record)
        if bar is not None:
            postfix = {"epoch": epoch + 1, "loss": f"{np.mean(record['train_loss']):.3f}"}
            if evaluate:
                postfix["test_acc"] = f"{np.mean(record['test_accuracy']):.3f}"
            bar.set_postfix(postfix)
        if on_epoch is not None:
            on_epoch(epoch, sharding.unpad(states, k), record)
        step = end
    if bar is not None and bar is not progress:
        bar.close()
    return sharding.unpad(states, k), history


def evaluate_stack(states: TrainState, data: data_lib.DeviceData, model: nn.Module,
                   batch: int = 1000) -> list[dict[str, float]]:
    """Test loss and accuracy of every member (sharded stacks are gathered first)."""
    if any(isinstance(x, jax.Array) and len(x.sharding.device_set) > 1
           for x in jax.tree.leaves(states)):
        states = sharding.gather(states)
    return [train_lib.evaluate(train_lib.variables(index(states, i)), data, model, batch)
            for i in range(size(states))]


def _progress_bar(progress: Any, total: int, k: int):
    """None, a new tqdm bar (progress True or a description), or the caller's own bar."""
    if not progress:
        return None
    if hasattr(progress, "update"):
        return progress
    from tqdm.auto import tqdm

    desc = progress if isinstance(progress, str) else "train"
    return tqdm(total=total, desc=f"{desc} (k={k})", unit="it", dynamic_ncols=True)
