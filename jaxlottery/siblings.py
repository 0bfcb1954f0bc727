"""The sibling axis: k networks (siblings, or masks to retrain) trained as one stack.

A stack is any pytree whose leaves carry a leading axis k: `TrainState`s, masks, data keys,
metrics. `train` runs a stack through the recipe; how it is compiled (the strategy, iterations
per call, XLA options, flat updates) and the per-backend defaults are `jaxlottery.execution`'s,
re-exported here.
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
from jaxlottery import sharding, stacks
from jaxlottery import train as train_lib
from jaxlottery.execution import (BACKEND_DEFAULTS, STRATEGIES, STREAM_GROUPS,  # noqa: F401
                                  XLA_OPTIONS, Defaults, Execution, backend_defaults,
                                  compiler_options, default_steps_per_call, default_strategy,
                                  member_model, on_stream, over_members, resolve, stream_groups,
                                  strategy_note, unknown_options)
from jaxlottery.train import Recipe, TrainState


def spawn(variables: dict, k: int, recipe: Recipe, step: int = 0) -> TrainState:
    """k identical copies of a network (weights and BN statistics) at iteration `step`, each
    with fresh momentum: the sibling stack of the protocol."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    state = train_lib.init_state(variables, recipe, step)
    return jax.tree.map(lambda x: jnp.repeat(x[None], k, axis=0), state)


# --- training programs -------------------------------------------------------------------------

# Arguments of a training program: (states, sums, masks, keys, perms, data); states and sums are
# donated (updated in place).
_STACKED = (True, True, True, True, True, False)


def zero_sums(k: int) -> dict:
    """Per-member metric sums at the start of an epoch."""
    return {"loss": jnp.zeros((k,), jnp.float32), "correct": jnp.zeros((k,), jnp.int32),
            "count": jnp.zeros((k,), jnp.int32)}


def _single_step(model: nn.Module, recipe: Recipe, batch: int, flat: bool) -> Callable:
    def step(state, sums, mask, key, perm, data):
        state, metrics = train_lib.train_step(state, mask, key, perm, data, model=model,
                                              recipe=recipe, batch=batch, flat=flat)
        return state, jax.tree.map(jnp.add, sums, metrics)
    return step


def _local_program(strategy: str, k: int, model: nn.Module, recipe: Recipe, n: int,
                   count: int, tail: bool, flat: bool = False) -> Callable:
    """The traceable k-member program: `count` full-batch iterations (a fori_loop when more
    than one), then the epoch's partial last batch if `tail`."""
    full = over_members(_single_step(model, recipe, recipe.batch_size, flat), strategy, k,
                        _STACKED)
    last = n - (recipe.steps_per_epoch(n) - 1) * recipe.batch_size
    partial = over_members(_single_step(model, recipe, last, flat), strategy, k, _STACKED)

    def program(states, sums, ms, keys, perms, data):
        carry = (states, sums)
        if count == 1:
            carry = full(*carry, ms, keys, perms, data)
        elif count > 1:
            carry = jax.lax.fori_loop(0, count, lambda _, c: full(*c, ms, keys, perms, data), carry)
        if tail:
            carry = partial(*carry, ms, keys, perms, data)
        return carry
    return program


@functools.lru_cache(maxsize=None)
def program(strategy: str, k: int, model: nn.Module, recipe: Recipe, n: int, count: int,
            tail: bool, mesh: Any = None, xla_options: str = "none",
            flat: bool = False) -> Callable:
    """(states, sums, masks, keys, perms, data) -> (states, sums): `count` full-batch
    iterations of a k-member stack, then the partial last batch of the epoch if `tail`.
    `n` is the training set size; masks may be None (dense). States and sums are donated.
    `xla_options` names a set of `XLA_OPTIONS`; `flat` runs the update on flat vectors.

    With a mesh, k (a multiple of its device count) is split over the devices and each runs
    `strategy` on its k / n members (`separate` becomes the backend's default there)."""
    if mesh is not None:
        local = strategy if strategy != "separate" else default_strategy()
        fn = _local_program(local, k // mesh.devices.size, model, recipe, n, count, tail, flat)
        return sharding.sharded(fn, mesh, _STACKED, outputs=2, donate=(0, 1))
    jit = functools.partial(jax.jit, donate_argnums=(0, 1),
                            compiler_options=compiler_options(xla_options) or None)
    if strategy == "separate":
        one = jit(_local_program("loop", 1, model, recipe, n, count, tail, flat))

        def separate(states, sums, ms, keys, perms, data):
            outs = [one(*(stacks.take(x, [i]) for x in (states, sums, ms, keys, perms)), data)
                    for i in range(k)]
            return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)
        return separate
    return jit(_local_program(strategy, k, model, recipe, n, count, tail, flat))


def calls(step: int, end: int, spe: int, n: int, batch: int, per_call: int
          ) -> list[tuple[int, int, bool]]:
    """How iterations [step, end) of one epoch are cut into calls: (iterations, full-batch
    count, tail) per call. Calls end at multiples of `per_call` iterations into the epoch, so a
    run resumed mid-epoch is cut like an uninterrupted one. The partial last batch of an epoch
    (when `batch` does not divide `n`) is the `tail` of the call that reaches it."""
    full_per_epoch = n // batch  # iterations with a full batch; the one after is partial
    base = (step // spe) * spe
    out = []
    while step < end:
        stop = min(end, base + ((step - base) // per_call + 1) * per_call)
        count = max(0, min(stop - base, full_per_epoch) - (step - base))
        tail = stop - base > full_per_epoch
        out.append((stop - step, count, tail))
        step = stop
    return out


@functools.lru_cache(maxsize=None)
def _prepare(masked: bool) -> Callable:
    """A copy of the caller's stack (its buffers are then ours to donate), masked if asked:
    a rewound network starts pruned, not only after its first update."""
    def prepare(states, ms):
        if masked:
            states = states._replace(params=masks_lib.apply(states.params, ms))
        return jax.tree.map(jnp.copy, states)
    return jax.jit(prepare)


@functools.partial(jax.jit, static_argnames="n")
def permutations(keys: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
    """Each member's data order for `epoch`: (k, n) int32."""
    return jax.vmap(train_lib.epoch_permutation, in_axes=(0, None, None))(keys, epoch, n)


def train(states: TrainState, keys: jax.Array, data: data_lib.DeviceData, model: nn.Module,
          recipe: Recipe, *, until: int, ms: Any = None, strategy: str | None = None,
          steps_per_call: int | None = None, evaluate: bool = True, eval_batch: int = 1000,
          progress: Any = False, on_epoch: Callable[[int, TrainState, dict], None] | None = None,
          mesh: Any = None, xla_options: str | None = None,
          flat_update: bool | None = None) -> tuple[TrainState, list[dict]]:
    """Train a stack from its current iteration to iteration `until`.

    `keys` holds one data key per member; `ms` is a stack of masks (or None: dense), applied
    to the starting weights too. `strategy`, `steps_per_call` (module docstring), `xla_options`
    and `flat_update` (`Execution`) default per backend. `progress`: False, True, a description, or a tqdm bar to advance (a stage's
    single bar across several calls). Metrics stay on the device during an epoch and are read
    once at its end, when the history gets a record (per-member train loss/accuracy, test
    accuracy if `evaluate`) and `on_epoch(epoch, states, record)` runs (checkpointing hooks in
    here). A non-finite loss raises. The caller's `states` are left intact.

    With a `mesh` (`sharding.sibling_mesh()`), the stack is padded to a multiple of the device
    count and split over the devices; padding members are dropped from everything returned.
    """
    if progress is True or isinstance(progress, str):
        print(strategy_note(strategy, steps_per_call, xla_options, flat_update), flush=True)
    how = resolve(strategy, steps_per_call, xla_options, flat_update)
    strategy, per_call = how.strategy, how.steps_per_call
    k = stacks.size(states)
    if keys.shape[:1] != (k,):
        raise ValueError(f"need one data key per member: {k} members, keys of shape {keys.shape}")
    if ms is not None and stacks.size(ms) != k:
        raise ValueError(f"need one mask per member: {k} members, {stacks.size(ms)} masks")
    steps = np.asarray(states.step)
    if not np.all(steps == steps[0]):
        raise ValueError(f"all members must be at the same iteration, got {steps.tolist()}")
    states = _prepare(ms is not None)(states, ms)
    eval_data, run_k = data, k
    if mesh is not None:
        run_k = sharding.padded_size(k, mesh)
        states, keys, ms = (sharding.place(stacks.pad(x, run_k), mesh) for x in (states, keys, ms))
        data = sharding.place(data, mesh, sharding.P())
    n = data.x_train.shape[0]
    spe = recipe.steps_per_epoch(n)
    step, history = int(steps[0]), []
    bar = _progress_bar(progress, until - step, k)
    while step < until:
        epoch = step // spe
        perms = permutations(keys, jnp.asarray(epoch, jnp.int32), n)
        sums = zero_sums(run_k)
        if mesh is not None:
            sums = sharding.place(sums, mesh)
        t0 = time.perf_counter()
        end = min(until, (epoch + 1) * spe)
        for iterations, count, tail in calls(step, end, spe, n, recipe.batch_size, per_call):
            fn = program(strategy, run_k, model, recipe, n, count, tail, mesh, how.xla_options,
                         how.flat_update)
            states, sums = fn(states, sums, ms, keys, perms, data)
            if bar is not None:
                bar.update(iterations)
        sums = stacks.unpad(sharding.gather(sums), k)  # the epoch's one host sync
        train_lib.check_finite(sums, f"epoch {epoch + 1} (iterations {step}-{end})")
        record = {"epoch": epoch + 1, "step": end, "complete_epoch": end % spe == 0,
                  "train_loss": (sums["loss"] / sums["count"]).tolist(),
                  "train_accuracy": (sums["correct"] / sums["count"]).tolist(),
                  "seconds": time.perf_counter() - t0}
        if evaluate:
            record["test_accuracy"] = [e["accuracy"] for e in evaluate_stack(
                stacks.unpad(states, k), eval_data, model, eval_batch, strategy=strategy,
                steps_per_call=per_call, xla_options=how.xla_options)]
        history.append(record)
        if bar is not None:
            postfix = {"epoch": epoch + 1, "loss": f"{np.mean(record['train_loss']):.3f}"}
            if evaluate:
                postfix["test_acc"] = f"{np.mean(record['test_accuracy']):.3f}"
            bar.set_postfix(postfix)
        if on_epoch is not None:
            on_epoch(epoch, stacks.unpad(states, k), record)
        step = end
    if bar is not None and bar is not progress:
        bar.close()
    return stacks.unpad(states, k), history


# --- evaluation ----------------------------------------------------------------------------------


def batched_sums(one: Callable, zero: Callable, strategy: str, k: int, batches: int,
                 on_device: bool, xla_options: str = "none") -> Callable:
    """(stack, data) -> the sum over batches i < `batches` of `one(member, data, i)`, for every
    member of a k-member stack: all members in one program, mapped by `strategy`.

    `on_device`: every batch in that program too (a fori_loop; one call); otherwise the host
    calls a one-batch program per batch, the sums staying on the device. `zero(stack)` gives
    the sums' starting value; `xla_options` names the programs' `XLA_OPTIONS`."""
    jit = functools.partial(jax.jit, compiler_options=compiler_options(xla_options) or None)
    if strategy == "separate":
        strategy = default_strategy() if k > 1 else "loop"
    per_batch = over_members(one, strategy, k, (True, False, False))

    def add(acc, stack, data, i):
        return jax.tree.map(jnp.add, acc, per_batch(stack, data, i))

    if on_device:
        return jit(lambda stack, data: jax.lax.fori_loop(
            0, batches, lambda i, acc: add(acc, stack, data, i), zero(stack)))
    step = jit(add, donate_argnums=0)

    def host_loop(stack, data):
        acc = zero(stack)
        for i in range(batches):
            acc = step(acc, stack, data, jnp.asarray(i, jnp.int32))
        return acc
    return host_loop


@functools.lru_cache(maxsize=None)
def eval_program(strategy: str, k: int, model: nn.Module, batch: int, n_test: int,
                 on_device: bool, xla_options: str = "none") -> Callable:
    """(variables stack, data) -> (summed test loss, correct predictions), per member."""
    model = member_model(model, strategy)

    def one(variables, data, i):
        return train_lib.eval_sums(variables, data, i * batch, model=model, batch=batch)

    def zero(_):
        return jnp.zeros((k,), jnp.float32), jnp.zeros((k,), jnp.int32)
    return batched_sums(one, zero, strategy, k, -(-n_test // batch), on_device, xla_options)


def evaluate_stack(stack: Any, data: data_lib.DeviceData, model: nn.Module, batch: int = 1000,
                   *, strategy: str | None = None, steps_per_call: int | None = None,
                   chunk: int | None = None,
                   xla_options: str | None = None) -> list[dict[str, float]]:
    """Test loss and accuracy of every member of a stack (TrainStates or variables dicts).

    All members of a chunk (default: the whole stack) are evaluated by one program; with
    `steps_per_call` > 1 that program also loops over the test batches (one call per chunk),
    else the host calls it once per batch. A last chunk is padded to the same shape (one
    compilation). Sharded stacks are gathered first. One host read at the end."""
    variables = train_lib.variables(stack) if isinstance(stack, TrainState) else stack
    if any(isinstance(x, jax.Array) and len(x.sharding.device_set) > 1
           for x in jax.tree.leaves(variables)):
        variables = jax.device_put(sharding.gather(variables))
    k, n = stacks.size(variables), data.x_test.shape[0]
    batch, chunk = min(batch, n), min(chunk or k, k)
    how = resolve(strategy, steps_per_call, xla_options)
    fn = eval_program(how.strategy, chunk, model, batch, n, how.steps_per_call > 1, how.xla_options)
    results = []
    for c in range(0, k, chunk):
        ids = np.minimum(np.arange(c, c + chunk), k - 1)
        results.append(fn(variables if chunk == k else stacks.take(variables, ids), data))
    loss, correct = (np.concatenate(x)[:k] for x in zip(*jax.device_get(results)))
    return [{"loss": float(loss[i]) / n, "accuracy": float(correct[i]) / n} for i in range(k)]


# --- filling the device ----------------------------------------------------------------------------


def chunk_size(n: int, k: int, capacity: int | None) -> int:
    """Members trained together when n networks must be trained: at most `capacity` (the
    device's room, None where unknown: k), at least k (what the sibling stage already fits),
    and balanced, so the last chunk is not mostly padding (56 at room 40: 2 chunks of 28)."""
    room = k if capacity is None else max(k, capacity)
    chunks = -(-n // min(room, n))
    return -(-n // chunks)


@functools.lru_cache(maxsize=None)
def stack_capacity(model: nn.Module, recipe: Recipe, n: int, image_shape: tuple[int, ...],
                   strategy: str, fraction: float = 0.5) -> int | None:
    """How many networks one training program can hold on this device: `fraction` of its free
    memory over one network's footprint (the compiled single-network step's temporaries plus
    its state, in and out). None on backends that report no memory (CPU), and for the `loop`,
    `hybrid` and `separate` strategies, whose program size (and compile time) grows with the
    stack."""
    stats = jax.devices()[0].memory_stats() or {}
    if strategy in ("loop", "hybrid", "separate") or "bytes_limit" not in stats:
        return None
    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    per_member = member_bytes(model, recipe, n, image_shape)
    return max(1, int(fraction * free // per_member))


def member_bytes(model: nn.Module, recipe: Recipe, n: int, image_shape: tuple[int, ...]) -> int:
    """Device bytes one network needs in a training program: the compiled single-network
    step's temporaries plus its state twice (donated input and output)."""
    variables = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, *image_shape), jnp.float32), train=False))
    variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    states = jax.eval_shape(lambda v: spawn(v, 1, recipe), variables)
    data = data_lib.DeviceData(
        jax.ShapeDtypeStruct((n, *image_shape), jnp.uint8), jax.ShapeDtypeStruct((n,), jnp.int32),
        jax.ShapeDtypeStruct((1, *image_shape), jnp.uint8), jax.ShapeDtypeStruct((1,), jnp.int32),
        jax.ShapeDtypeStruct((image_shape[-1],), jnp.float32),
        jax.ShapeDtypeStruct((image_shape[-1],), jnp.float32))
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), 1))
    perms = jax.ShapeDtypeStruct((1, n), jnp.int32)
    fn = jax.jit(_local_program("loop", 1, model, recipe, n, 1, False))
    mem = fn.lower(states, jax.eval_shape(lambda: zero_sums(1)), None, keys, perms,
                   data).compile().memory_analysis()
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(states))
    return int(mem.temp_size_in_bytes + 2 * state_bytes)


def _progress_bar(progress: Any, total: int, k: int):
    """None, a new tqdm bar (progress True or a description), or the caller's own bar."""
    if not progress:
        return None
    if hasattr(progress, "update"):
        return progress
    from tqdm.auto import tqdm

    desc = progress if isinstance(progress, str) else "train"
    return tqdm(total=total, desc=f"{desc} (k={k})", unit="it", dynamic_ncols=True)
