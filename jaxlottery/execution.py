"""How a stack of k networks is compiled: the choices and their per-backend defaults.

- `strategy`, how the k members share a program:
  `vmap` (one batched step; convolutions become grouped convolutions), `hybrid` (the batched
  step, but each convolution stays k single-network convolutions: `jaxlottery.member_conv`),
  `loop` (k copies of the single-network step in one program), `map` (`lax.map`: one copy, run
  k times in sequence inside the program), `streams` (the members in `STREAM_GROUPS` groups,
  each group a `map` on a GPU stream of its own, so that the groups' small kernels may overlap;
  elsewhere the stream annotation is ignored), or `separate` (one single-network program,
  dispatched k times).
- `steps_per_call`, how many iterations one compiled call runs: 1 is the per-step path (the
  host dispatches every iteration); N > 1 runs N iterations in a `lax.fori_loop` inside one
  program, with metric sums carried on the device; N >= iterations per epoch makes every
  epoch one program ("the epoch program"). Calls never cross an epoch's end, where the host
  reads the metrics once, evaluates and checkpoints.
- `xla_options` (a named set of per-program XLA options) and `flat_update`.

Per-backend defaults live in `BACKEND_DEFAULTS`; the measurements behind them (and what is still
unmeasured) are in BUILD_NOTES.md. `over_members` maps a single-network function over a stack
by strategy. `jaxlottery.siblings` builds the training and evaluation programs from these.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlottery import stacks
from jaxlottery.validation import STRATEGIES


class Defaults(NamedTuple):
    strategy: str
    steps_per_call: int
    why: str
    xla_options: str = "none"
    flat_update: bool = False


class Execution(NamedTuple):
    """How a stack is compiled, every choice resolved: the strategy (module docstring), the
    iterations per call, the named set of per-program XLA options (`XLA_OPTIONS`) and whether
    the update runs on one flat vector per network (`train.flat_update`)."""

    strategy: str
    steps_per_call: int
    xla_options: str = "none"
    flat_update: bool = False


# What runs when the caller does not choose. CPU: measured (BUILD_NOTES.md, "Strategies
# measured on this CPU" and "The accelerator path"): there, vmap over conv kernels and
# convolutions inside a compiled loop are both much slower than a loop of per-step calls.
# GPU: measured on an H100 (BUILD_NOTES.md, "Measured on an H100"): programs of 50 iterations
# with lax.map over members beat per-step vmap (cuDNN's grouped convolutions) and come close
# to a per-step loop of k steps, which compiles several times longer. The GPU candidates of
# issue 24 (hybrid, XLA_OPTIONS, flat updates, bfloat16) are unmeasured: none is a default
# until `bash benchmarks/gpu_calls.sh rank` measures it faster. TPU: not measured yet.
BACKEND_DEFAULTS = {
    "cpu": Defaults("loop", 1, "measured on XLA:CPU: grouped convolutions (vmap) and "
                    "convolutions inside compiled loops are slower there; see BUILD_NOTES.md"),
    "gpu": Defaults("map", 50, "measured on an H100: faster than per-step vmap, and compiles "
                    "several times faster than a loop of k steps; see BUILD_NOTES.md"),
    "tpu": Defaults("vmap", 1, "not measured on a TPU yet; run benchmarks/accelerator.py"),
}

# Named sets of XLA compiler options, passed per program (`jax.jit(compiler_options=...)`) on
# the backend they are written for and nowhere else (on other backends every set is empty).
# "graphs": the step captured as CUDA graphs (command buffers), convolutions and loops included
# (XLA's default leaves both out); "concurrent": the same, scheduled so that independent
# branches (the members of a `loop`, `hybrid` or `streams` program) may run side by side;
# "concurrent_unrolled": also unrolls loops of known trip count into the graph. The names are
# XLA's debug options (read from jaxlib 0.10.2's descriptor, BUILD_NOTES.md "Filling the GPU");
# values are strings, ints or the strings "True"/"False" as XLA parses them. The benchmark
# records them per row, and a jaxlib that does not know one fails that row, not the benchmark.
_GRAPHS = {"xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUDNN,CONVOLUTION,"
           "CUSTOM_CALL,CONDITIONAL,WHILE,DYNAMIC_SLICE_FUSION", "xla_gpu_graph_min_graph_size": 1}
XLA_OPTIONS: dict[str, dict[str, dict]] = {
    "none": {},
    "graphs": {"gpu": _GRAPHS},
    "concurrent": {"gpu": {**_GRAPHS, "xla_gpu_command_buffer_scheduling_mode": "CONCURRENT"}},
    "concurrent_unrolled": {"gpu": {**_GRAPHS, "xla_gpu_command_buffer_scheduling_mode":
                                    "CONCURRENT", "xla_gpu_command_buffer_unroll_loops": "True"}},
}


def backend_defaults(backend: str | None = None) -> Defaults:
    backend = backend or jax.default_backend()
    return BACKEND_DEFAULTS.get(backend, BACKEND_DEFAULTS["gpu"])


def default_strategy(backend: str | None = None) -> str:
    return backend_defaults(backend).strategy


def default_steps_per_call(backend: str | None = None) -> int:
    return backend_defaults(backend).steps_per_call


def compiler_options(name: str, backend: str | None = None) -> dict:
    """The XLA options of the named set for this backend (empty where the set has none);
    ValueError if this jaxlib does not know one of them (the sets are written for jaxlib 0.10+)."""
    if name not in XLA_OPTIONS:
        raise ValueError(f"xla_options must be one of {sorted(XLA_OPTIONS)}, got {name!r}")
    options = XLA_OPTIONS[name].get(backend or jax.default_backend(), {})
    problem = unknown_options(tuple(options.items()))
    if problem:
        raise ValueError(f"xla_options={name}: this jaxlib ({jax.__version__}) rejects it: "
                         f"{problem}")
    return dict(options)


@functools.lru_cache(maxsize=None)
def unknown_options(options: tuple) -> str | None:
    """None if XLA accepts these (name, value) options here, else its message: a tiny program
    compiled with them, once per process (XLA checks names and values at compile time)."""
    if not options:
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(
            jnp.zeros((), jnp.float32)).compile()
    except Exception as e:  # noqa: BLE001 - XLA's error type differs between jaxlib versions
        return str(e).splitlines()[0]
    return None


def resolve(strategy: str | None = None, steps_per_call: int | None = None,
            xla_options: str | None = None, flat_update: bool | None = None) -> Execution:
    """Every compilation choice, the backend's defaults where None; ValueError naming a bad one."""
    d = backend_defaults()
    strategy = d.strategy if strategy is None else strategy
    per_call = d.steps_per_call if steps_per_call is None else steps_per_call
    options = d.xla_options if xla_options is None else xla_options
    flat = d.flat_update if flat_update is None else flat_update
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not isinstance(per_call, int) or isinstance(per_call, bool) or per_call < 1:
        raise ValueError(f"steps_per_call must be a positive integer, got {steps_per_call!r}")
    compiler_options(options)
    if not isinstance(flat, bool):
        raise ValueError(f"flat_update must be true or false, got {flat_update!r}")
    return Execution(strategy, per_call, options, flat)


def strategy_note(strategy: str | None = None, steps_per_call: int | None = None,
                  xla_options: str | None = None, flat_update: bool | None = None) -> str:
    """One line saying how siblings are compiled and why, for logs and progress output."""
    backend = jax.default_backend()
    d = backend_defaults(backend)
    e = resolve(strategy, steps_per_call, xla_options, flat_update)
    calls = ("one call per iteration" if e.steps_per_call == 1
             else f"up to {e.steps_per_call} iterations per call")
    extras = "".join([f", XLA options {e.xla_options}" if e.xla_options != "none" else "",
                      ", flat updates" if e.flat_update else ""])
    chosen = any(x is not None for x in (strategy, steps_per_call, xla_options, flat_update))
    why = "chosen by the caller" if chosen else f"default: {d.why}"
    return f"sibling strategy: {e.strategy}, {calls}{extras} (backend {backend}; {why})"


# --- mapping a single-network function over the stack ------------------------------------------


def over_members(fn: Callable, strategy: str, k: int, stacked: tuple[bool, ...]) -> Callable:
    """`fn` for one network, as a traceable function of a k-member stack. `stacked[j]` says
    whether argument j carries the member axis (others, like the dataset, are shared). `hybrid`
    is `vmap` here; its model computes convolutions per member (`member_model`)."""
    if strategy in ("vmap", "hybrid"):
        return jax.vmap(fn, in_axes=tuple(0 if s else None for s in stacked))

    def call(member_args, args):
        it = iter(member_args)
        return fn(*(next(it) if s else a for a, s in zip(args, stacked)))

    if strategy == "loop":
        def looped(*args):
            outs = [call([stacks.index(a, i) for a, s in zip(args, stacked) if s], args)
                    for i in range(k)]
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
        return looped
    if strategy in ("map", "streams"):
        def mapped(*args):
            return jax.lax.map(lambda xs: call(xs, args), [a for a, s in zip(args, stacked) if s])
        if strategy == "map":
            return mapped

        def streamed(*args):
            def group(a, lo, hi):
                return jax.tree.map(lambda x: x[lo:hi], a)
            outs = [on_stream(g + 1, mapped)(*(group(a, lo, hi) if s else a
                                               for a, s in zip(args, stacked)))
                    for g, (lo, hi) in enumerate(stream_groups(k))]
            return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)
        return streamed
    raise ValueError(f"strategy must be one of {STRATEGIES[:5]} inside a program, got {strategy!r}")


STREAM_GROUPS = 4  # GPU streams the `streams` strategy spreads the members over


def stream_groups(k: int) -> list[tuple[int, int]]:
    """The `streams` strategy's groups: min(k, STREAM_GROUPS) contiguous, balanced member ranges."""
    g = min(k, STREAM_GROUPS)
    bounds = [round(i * k / g) for i in range(g + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def on_stream(n: int, fn: Callable) -> Callable:
    """`fn` as a call that XLA:GPU runs asynchronously on stream n (`compute_on`'s function form:
    `compute_on2` up to jax 0.11.0, `compute_on` after); other backends ignore the annotation."""
    import inspect

    from jax.experimental import compute_on as co

    wrap = getattr(co, "compute_on2", None) or co.compute_on
    memory = getattr(jax, "memory", None)
    if "out_memory_spaces" not in inspect.signature(wrap).parameters or memory is None:
        raise ValueError(f"strategy 'streams' needs a jax whose compute_on takes a function "
                         f"(jax 0.10 has it); this is jax {jax.__version__}")
    return wrap(fn, compute_type=f"gpu_stream:{n}", out_memory_spaces=memory.Space.Device)


def member_model(model: nn.Module, strategy: str) -> nn.Module:
    """The module a strategy computes with: `hybrid` swaps in the per-member convolution."""
    return model.clone(conv="per_member") if strategy == "hybrid" else model
