"""One call that measures the study's training loop on whatever backend it finds.

    PYTHONPATH=. python benchmarks/accelerator.py --out=DIR     # a GPU or TPU (budget: 4 min)
    python benchmarks/accelerator.py --quick --out=DIR          # toy sizes: a CPU smoke test
    PYTHONPATH=. python benchmarks/accelerator.py --out=DIR --modes=rank --ks=10,4 --profile
                                                                # the speed candidates, ranked

Measures, in order of importance (rows past the time budget `--budget` are skipped and listed):
- the environment: device kind and count, memory, library versions, matmul precision, and the
  dense f32 matmul rate at default precision (the "peak" the training rates are set against);
- training throughput of ResNet-20 at batch 128 on CIFAR-shaped synthetic data (50,000 images
  on the device) through `siblings.train` itself (data order, augmentation, masked step,
  metric sums, the host's reads), in the ways `--modes` names (`way`: MODE:STRATEGY[+VARIANT..],
  MODE `step` (one iteration per call) or `program` (`--steps_per_call` iterations), a
  strategy of `siblings.STRATEGIES`, variants `bf16` (compute dtype), `flat` (flat updates)
  and a set of `siblings.XLA_OPTIONS`; default: the six plain ways; `rank`: `CANDIDATES`),
  every way at the first two stack sizes of `--ks` (default 10, 1), then the backend's default
  and the two fastest ways at the others (20, 40 where memory allows, then 2 and 5). Images/s,
  compile seconds, the device's peak memory so far (rows run in that order, so a row's growth
  is its own), TFLOP/s (from XLA's FLOP count of one training image), its fraction of the
  measured matmul rate, and the compiler options the row's programs were given. A way whose
  options this jaxlib rejects is recorded as failed and the benchmark goes on;
- with `--profile`, where the time goes in the backend's default way and the fastest one at
  the first stack size: device kernels per network and step, summed by kind;
- evaluation throughput of a 10-member stack (host loop over batches vs all batches on device);
- the cost of one checkpoint of a 10-member stack (what training waits for, and the full write);
- a projection of the paper preset's wall time per stage from these rates and the preset's own
  network-epoch counts, with the defaults and with the fastest measured way.

Writes `DIR/accelerator.json` (after every row, so a run cut short keeps what it measured) and
`DIR/accelerator.md`. Needs no tensorflow-datasets and nothing from the network.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from jaxlottery import checkpoint, config, data, models, siblings  # noqa: E402
from jaxlottery.models import cifar_resnet  # noqa: E402
from jaxlottery.train import Recipe  # noqa: E402

FULL = dict(depth=20, width=16, image=32, train=50_000, test=10_000, batch=128, steps=100,
            per_call=50, ks=(10, 1, 20, 40, 2, 5), matmul=8192, budget=140.0, profile_steps=10)
QUICK = dict(depth=8, width=4, image=16, train=256, test=128, batch=32, steps=4, per_call=2,
             ks=(2, 1), matmul=512, budget=40.0, profile_steps=2)
MODES = ("step:vmap", "program:vmap", "program:map", "step:loop", "program:loop",
         "step:separate")
# The ranking call's ways (issue 24): today's GPU default first, then each candidate alone, then
# the combinations that could add up; bf16 last (it changes the arithmetic: never a default
# without the science check). Rows of a process share XLA's autotuning results, so ways with the
# same convolutions run the same convolution algorithms.
# Left out, measured on the H100 on 2026-11-26: program:vmap (0.77x the default) and step:loop
# (1.07x, but 46 s of compilation at k = 10).
CANDIDATES = ("program:map", "program:map+flat", "program:map+graphs",
              "program:map+concurrent_unrolled", "program:hybrid", "program:hybrid+concurrent",
              "program:streams", "program:streams+concurrent", "program:map+bf16")
VARIANTS = ("bf16", "flat")


def parse_way(way: str) -> dict:
    """'program:map+concurrent+bf16' -> {mode, strategy, xla_options, dtype, flat, way};
    ValueError naming what is wrong."""
    mode, sep, rest = way.partition(":")
    strategy, *variants = rest.split("+")
    if not sep or mode not in ("step", "program") or strategy not in siblings.STRATEGIES:
        raise ValueError(f"{way!r}: expected MODE:STRATEGY[+VARIANT...], MODE step or program, "
                         f"STRATEGY one of {', '.join(siblings.STRATEGIES)}")
    options = [v for v in variants if v not in VARIANTS]
    bad = [v for v in options if v not in siblings.XLA_OPTIONS]
    if bad or len(options) > 1 or len(set(variants)) != len(variants):
        raise ValueError(f"{way!r}: variants are {', '.join(VARIANTS)} and at most one of "
                         f"{', '.join(siblings.XLA_OPTIONS)}, each once")
    return {"way": way, "mode": mode, "strategy": strategy,
            "xla_options": options[0] if options else "none",
            "dtype": "bfloat16" if "bf16" in variants else None, "flat": "flat" in variants}


def default_way() -> str:
    """The backend's default way, as `--modes` spells it."""
    d = siblings.backend_defaults()
    way = f"{'step' if d.steps_per_call == 1 else 'program'}:{d.strategy}"
    return way + (f"+{d.xla_options}" if d.xla_options != "none" else "") + (
        "+flat" if d.flat_update else "")


@dataclasses.dataclass
class Bench:
    """What every measurement needs: sizes, data, model, where results go, the clock."""

    size: dict
    out: str
    started: float
    data: data.DeviceData
    model: object
    recipe: Recipe
    variables: dict
    results: dict

    def left(self) -> float:
        return self.size["budget"] - (time.perf_counter() - self.started)

    def save(self) -> None:
        with open(os.path.join(self.out, "accelerator.json"), "w") as f:
            json.dump(self.results, f, indent=1, default=float)


def environment() -> dict:
    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    dev = jax.devices()[0]
    stats = dev.memory_stats() or {}
    return {"date": datetime.date.today().isoformat(), "backend": jax.default_backend(),
            "device_kind": dev.device_kind, "device_count": jax.device_count(),
            "process_count": jax.process_count(), "memory_bytes": stats.get("bytes_limit"),
            "python": platform.python_version(),
            "versions": {p: version(p) for p in ("jax", "jaxlib", "flax", "optax",
                                                 "orbax-checkpoint", "numpy")},
            "default_matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", None)),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def matmul_tflops(n: int, reps: int = 10) -> float:
    """Dense f32 matmul rate at the default precision (TF32 on recent NVIDIA GPUs, bf16 passes
    on TPUs): the practical peak the training rates are compared with."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: (x @ x) * (1.0 / n))  # rescaled, so nothing overflows
    f(a).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        a = f(a)
    a.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def flops_per_image(b: Bench) -> float | None:
    """XLA's FLOP count of one training iteration of one network, per image, read off the
    lowered program before the backend compiles it: the same on every backend, and without a
    compilation. (The compiled program's count misses the convolutions on a GPU, where they
    become cuDNN calls: 4.6e6 instead of 2.3e8 on the H100, 2026-11-26.)"""
    states = siblings.spawn(b.variables, 1, b.recipe)
    keys = jax.random.split(jax.random.key(0), 1)
    perms = siblings.permutations(keys, jnp.asarray(0, jnp.int32), b.size["train"])
    fn = siblings.program("loop", 1, b.model, b.recipe, b.size["train"], 1, False)
    cost = fn.lower(states, siblings.zero_sums(1), None, keys, perms, b.data).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = (cost or {}).get("flops")
    return float(flops) / b.size["batch"] if flops else None


def peak_bytes() -> int | None:
    """The device's high-water mark of memory in use so far (GPU/TPU; None on CPU)."""
    return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")


def ways(b: Bench, i: int) -> list[str]:
    """The ways measured at the i-th stack size: all of `--modes` at the first two sizes; after
    that the backend's default and the two fastest at the first size (compilation is most
    of a row's cost on a GPU, and a 4-minute call has room for few)."""
    if i < 2:
        return list(b.size["modes"])
    first = [r for r in b.results["training"] if r["k"] == b.size["ks"][0] and "images_per_s" in r]
    fastest = [r["way"] for r in sorted(first, key=lambda r: -r["images_per_s"])]
    return list(dict.fromkeys([default_way()] + fastest[:2]))


def _how(b: Bench, way: str) -> tuple[dict, object, dict]:
    """A way's arguments to `siblings.train`, its model (compute dtype) and its row fields."""
    w = parse_way(way)
    dtype = w["dtype"] or b.size["dtype"]
    per_call = 1 if w["mode"] == "step" else b.size["per_call"]
    kw = dict(strategy=w["strategy"], steps_per_call=per_call, xla_options=w["xla_options"],
              flat_update=w["flat"], evaluate=False)
    fields = {"way": way, "mode": w["mode"], "strategy": w["strategy"], "dtype": dtype,
              "xla_options": w["xla_options"], "flat_update": w["flat"],
              "compiler_options": siblings.compiler_options(w["xla_options"]),
              "steps_per_call": per_call}
    return kw, models.create(cifar_resnet.name(b.size["depth"], b.size["width"]),
                             compute_dtype=dtype), fields


def train_row(b: Bench, way: str, k: int) -> dict:
    """Images/s of k siblings through `siblings.train`: one call compiles and warms up, the
    next `steps` iterations are timed (all inside the first epoch's full batches)."""
    s = b.size
    kw, model, fields = _how(b, way)
    warm = 2 if fields["mode"] == "step" else kw["steps_per_call"]
    states = siblings.spawn(b.variables, k, b.recipe)
    keys = jax.random.split(jax.random.key(1), k)
    t0 = time.perf_counter()
    states, _ = siblings.train(states, keys, b.data, model, b.recipe, until=warm, **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    states, _ = siblings.train(states, keys, b.data, model, b.recipe, until=warm + s["steps"], **kw)
    wall = time.perf_counter() - t0
    rate = k * s["batch"] * s["steps"] / wall
    row = {**fields, "k": k, "images_per_s": rate, "step_ms": 1e3 * wall / s["steps"],
           "compile_s": max(0.0, first - warm * k * s["batch"] / rate),
           "peak_bytes_so_far": peak_bytes()}
    if b.results.get("flops_per_image"):
        row["tflops"] = rate * b.results["flops_per_image"] / 1e12
        row["fraction_of_matmul_peak"] = row["tflops"] / b.results["matmul_tflops"]
    return row


def eval_row(b: Bench, k: int, on_device: bool, strategy: str) -> dict:
    """Test images/s of a k-member stack (10,000 test images, batch 1000)."""
    states = siblings.spawn(b.variables, k, b.recipe)
    kw = dict(strategy=strategy, steps_per_call=2 if on_device else 1)
    t0 = time.perf_counter()
    siblings.evaluate_stack(states, b.data, b.model, 1000, **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    siblings.evaluate_stack(states, b.data, b.model, 1000, **kw)
    wall = time.perf_counter() - t0
    return {"k": k, "strategy": strategy, "batches_on_device": on_device,
            "images_per_s": k * b.size["test"] / wall, "compile_s": max(0.0, first - wall)}


def checkpoint_row(b: Bench, k: int) -> dict:
    """Seconds one checkpoint of a k-member stack costs the training loop (the host copy; the
    files are written in the background) and in all."""
    states = siblings.spawn(b.variables, k, b.recipe)
    blocking, total = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = checkpoint.Checkpoints(tmp)
        for step in range(1, 4):
            t0 = time.perf_counter()
            ckpts.save(step, states, {"history": [{"epoch": step}]})
            blocking.append(time.perf_counter() - t0)
            ckpts.wait()
            total.append(time.perf_counter() - t0)
        ckpts.close()
    nbytes = sum(x.nbytes for x in jax.tree.leaves(states))
    return {"k": k, "bytes": nbytes, "blocking_s": float(np.median(blocking)),
            "total_s": float(np.median(total))}


KERNEL_KINDS = (  # matched in order on lower-cased kernel names; XLA's "convert" fusions are not convolutions
    ("convolutions and matmuls", ("convolve", "fprop", "dgrad", "wgrad", "gemm", "cutlass",
                                  "xmma", "cudnn", "sm90_", "sm80_", "cublas")),
    ("reductions (BN statistics, loss, metrics)", ("reduce", "reduction")),
    ("copies and sets", ("memcpy", "memset")))
OTHER_KERNELS = "other fusions (elementwise, BN apply, optimizer, augmentation)"


def profile_row(b: Bench, way: str, k: int) -> dict:
    """Where one way's time goes: `profile_steps` iterations traced by the JAX profiler (as
    programs of at most that many iterations: the same loop body, so the same kernels per
    iteration, and a short trace), then the device's kernels summed by kind (from the Perfetto
    trace's device processes) and counted per network and step. Busy time over wall time says
    how much of the step the device spends computing at all."""
    import glob
    import gzip

    kw, model, fields = _how(b, way)
    per_call = kw["steps_per_call"] = min(kw["steps_per_call"], b.size["profile_steps"])
    steps = -(-b.size["profile_steps"] // per_call) * per_call
    states = siblings.spawn(b.variables, k, b.recipe)
    keys = jax.random.split(jax.random.key(2), k)
    warm = max(2, per_call)
    states, _ = siblings.train(states, keys, b.data, model, b.recipe, until=warm, **kw)
    jax.block_until_ready(states)
    folder = tempfile.mkdtemp(prefix="profile")
    row = {"way": way, "mode": fields["mode"], "strategy": fields["strategy"], "k": k,
           "iterations": steps}
    t0 = time.perf_counter()
    try:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            states, _ = siblings.train(states, keys, b.data, model, b.recipe,
                                       until=warm + steps, **kw)
            jax.block_until_ready(states)
    except Exception as e:  # a profiler that cannot start (no CUPTI) must not lose the table
        return dict(row, note=f"profiler failed: {e}")
    wall = time.perf_counter() - t0
    traces = glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"), recursive=True)
    row["wall_s"] = wall
    if not traces:
        return dict(row, note="the profiler wrote no Perfetto trace")
    with gzip.open(traces[0]) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    summary = kernel_summary(events, wall, steps)
    if "kernels_per_iteration" in summary:
        summary["kernels_per_network_step"] = summary["kernels_per_iteration"] / k
    return dict(row, **summary)


def kernel_summary(events: list[dict], wall_s: float, iterations: int) -> dict:
    """Device kernels of a Perfetto trace (processes named "/device:..."), summed by kind:
    busy time (the union of their intervals) over the wall time, kernels per iteration, the
    share of each kind and the top kernels."""
    device = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
              and "/device:" in str(e.get("args", {}).get("name", ""))}
    kernels = [e for e in events if e.get("ph") == "X" and e.get("pid") in device and "dur" in e]
    if not kernels:
        return {"note": "no device events in the trace (a CPU backend has none)"}
    busy, end = 0.0, -float("inf")
    for a, z in sorted((e["ts"], e["ts"] + e["dur"]) for e in kernels):
        busy += max(0.0, z - max(a, end))  # streams may overlap: count each instant once
        end = max(end, z)
    by_kind: dict[str, float] = {}
    by_name: dict[str, list] = {}
    for e in kernels:
        name = str(e["name"])
        kind = next((label for label, words in KERNEL_KINDS
                     if any(w in name.lower() for w in words)), OTHER_KERNELS)
        by_kind[kind] = by_kind.get(kind, 0.0) + e["dur"]
        by_name.setdefault(name, [0, 0.0])
        by_name[name][0] += 1
        by_name[name][1] += e["dur"]
    total = sum(by_kind.values()) or 1.0
    top = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:8]
    return {"busy_s": busy / 1e6, "busy_fraction": busy / 1e6 / wall_s,
            "kernels_per_iteration": len(kernels) / iterations,
            "mean_kernel_us": total / len(kernels),
            "by_kind": {k: v / total for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "top_kernels": [{"name": n[:90], "calls": c, "share": t / total}
                            for n, (c, t) in top]}


def best(rows: list[dict], k: int, modes=None, dtype: str | None = "float32") -> dict | None:
    """The fastest measured row at stack size k (among the ways `modes`; of compute `dtype`,
    None: any), or at the nearest measured k."""
    ok = [r for r in rows if "images_per_s" in r and (modes is None or r["way"] in modes)
          and (dtype is None or r.get("dtype", "float32") == dtype)]
    if not ok:
        return None
    nearest = min({r["k"] for r in ok}, key=lambda m: (abs(m - k), -m))
    return max((r for r in ok if r["k"] == nearest), key=lambda r: r["images_per_s"])


def projection(b: Bench) -> dict:
    """The paper preset's wall time per stage, from the measured rates (with today's defaults
    and with the fastest measured way), its network-epoch counts and its evaluation work."""
    cfg = config.Config()
    res = b.results
    n, n_test = 50_000, 10_000
    cost = cfg.network_epochs()
    capacity = res.get("stack_capacity")
    masks_per_spawn = cost["retrain"] / sum(cfg.epochs - t for t in cfg.retrain_spawn_epochs)
    chunk = siblings.chunk_size(int(round(masks_per_spawn)), cfg.k, capacity)
    stacks = {"shared": 1, "siblings": cfg.k, "independent": cfg.independent_inits,
              "retrain": chunk}
    evals = {"shared": 0, "siblings": cost["siblings"] * n_test,
             "independent": cost["independent"] * n_test,
             "retrain": masks_per_spawn * len(cfg.retrain_spawn_epochs) * n_test}
    lmc = cfg.lmc_pairs * cfg.lmc_points * len(cfg.spawn_epochs)
    evals["connectivity"] = lmc * len(cfg.lmc_bn) * n_test + lmc * 20 * 500
    checkpoints = {"shared": max(cfg.spawn_epochs), "siblings": sum(cfg.epochs - t for t in cfg.spawn_epochs),
                   "independent": cfg.epochs,
                   "retrain": sum(-(-masks_per_spawn // chunk) * (cfg.epochs - t)
                                  for t in cfg.retrain_spawn_epochs)}
    default_mode = default_way()
    eval_rate = max((r["images_per_s"] for r in res["evaluation"]), default=None)
    ckpt_s = res["checkpoint"]["blocking_s"] if res.get("checkpoint") else 0.0
    out = {"stack_sizes": stacks, "network_epochs": cost, "eval_images": evals}
    for label, modes in (("defaults", {default_mode}), ("fastest", None)):
        stages, total_train, total_other = {}, 0.0, 0.0
        for stage, k in stacks.items():
            row = best(res["training"], k, modes)
            if row is None:
                continue
            train_s = cost[stage] * n / row["images_per_s"]
            other = (evals[stage] / eval_rate if eval_rate else 0.0) + checkpoints[stage] * ckpt_s \
                + 2 * row["compile_s"]
            stages[stage] = {"stack": k, "measured_at_k": row["k"], "way": row["way"],
                             "images_per_s": row["images_per_s"], "train_h": train_s / 3600,
                             "other_h": other / 3600}
            total_train, total_other = total_train + train_s, total_other + other
        if eval_rate:
            stages["connectivity"] = {"other_h": evals["connectivity"] / eval_rate / 3600}
            total_other += evals["connectivity"] / eval_rate
        out[label] = {"stages": stages, "train_h": total_train / 3600,
                      "total_h": (total_train + total_other) / 3600,
                      "outside_training": total_other / max(total_train + total_other, 1e-9)}
    return out


def markdown(res: dict) -> str:
    env = res["environment"]
    lines = [f"# Accelerator benchmark: {env['device_kind']} ({env['backend']}), {env['date']}", "",
             f"jax {env['versions']['jax']}, jaxlib {env['versions']['jaxlib']}, flax "
             f"{env['versions']['flax']}, optax {env['versions']['optax']}, orbax "
             f"{env['versions']['orbax-checkpoint']}; {env['device_count']} device(s); "
             f"matmul precision {env['default_matmul_precision']}; f32 matmul "
             f"{res['matmul_tflops']:.1f} TFLOP/s; {res.get('flops_per_image') or 0:.3g} FLOP "
             f"per training image; model {res['size']['model']}.", "",
             f"Default way on this backend: `{res['default_way']}`. Ways: MODE:STRATEGY[+VARIANT]; "
             "the compiler options each way's programs were given are in accelerator.json.", "",
             "| way | dtype | k | img/s | vs default | step ms | compile s | peak MB so far | "
             "TFLOP/s | of peak |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["training"]:
        if "images_per_s" not in r:
            lines.append(f"| {r['way']} | {r.get('dtype', '')} | {r['k']} | failed: "
                         f"{r.get('failed', '')[:120]} | | | | | | |")
            continue
        mb = f"{r['peak_bytes_so_far'] / 2**20:,.0f}" if r.get("peak_bytes_so_far") else ""
        base = next((x for x in res["training"] if x["way"] == res["default_way"]
                     and x["k"] == r["k"] and "images_per_s" in x), None)
        ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}x" if base else ""
        lines.append(f"| {r['way']} | {r['dtype']} | {r['k']} | {r['images_per_s']:,.0f} | "
                     f"{ratio} | {r['step_ms']:.1f} | {r['compile_s']:.1f} | {mb} | "
                     f"{r.get('tflops', 0):.2f} | {100 * r.get('fraction_of_matmul_peak', 0):.1f}% |")
    lines += ["", "| evaluation | k | strategy | img/s | compile s |", "|---|---|---|---|---|"]
    for r in res["evaluation"]:
        lines.append(f"| {'batches on device' if r['batches_on_device'] else 'host loop'} | "
                     f"{r['k']} | {r['strategy']} | {r['images_per_s']:,.0f} | {r['compile_s']:.1f} |")
    if res.get("checkpoint"):
        c = res["checkpoint"]
        lines += ["", f"Checkpoint of k = {c['k']} ({c['bytes'] / 2**20:.1f} MB): training waits "
                  f"{1e3 * c['blocking_s']:.1f} ms, written in {1e3 * c['total_s']:.1f} ms."]
    p = res.get("projection")
    if p:
        toy = "" if res["size"]["depth"] == 20 and res["size"]["width"] == 16 else (
            f" (rates of the toy {res['size']['model']}, not ResNet-20: a test of the arithmetic)")
        total = sum(p["network_epochs"].values())
        lines += ["", f"Projected paper preset ({total:,.0f} network-epochs), hours{toy}. 'Other' is "
                  "evaluation, checkpoints and compilation; a stack size not measured uses the rate "
                  "per image of the nearest one measured.", "",
                  "| stage | stack | defaults: way (at k) | train h | other h | fastest: way (at k) "
                  "| train h | other h |", "|---|---|---|---|---|---|---|---|"]
        for stage in p["defaults"]["stages"]:
            a, f = p["defaults"]["stages"][stage], p["fastest"]["stages"].get(stage, {})
            way = lambda r: f"{r['way']} ({r['measured_at_k']})" if "way" in r else ""  # noqa: E731
            lines.append(f"| {stage} | {a.get('stack', '')} | {way(a)} | {a.get('train_h', 0):.2f} "
                         f"| {a['other_h']:.2f} | {way(f)} | {f.get('train_h', 0):.2f} | "
                         f"{f.get('other_h', 0):.2f} |")
        for label in ("defaults", "fastest"):
            q = p[label]
            lines.append(f"\n{label}: {q['total_h']:.2f} h in all, {q['train_h']:.2f} h of training "
                         f"steps, {100 * q['outside_training']:.1f}% outside them.")
    for prof in res.get("profiles", []):
        if "by_kind" not in prof:
            lines += ["", f"Profile of {prof['way']}: {prof.get('note')}"]
            continue
        lines += ["", f"Profile of {prof['way']} at k = {prof['k']} "
                  f"({prof['iterations']} iterations, {prof['wall_s']:.2f} s traced): the "
                  f"device's kernels take {1e3 * prof['busy_s'] / prof['iterations']:.1f} ms per "
                  f"iteration, {100 * prof.get('busy_fraction_of_untraced_step', 0):.0f}% of the "
                  f"untraced step ({100 * prof['busy_fraction']:.0f}% of the traced wall time); "
                  f"{prof['kernels_per_network_step']:.0f} kernels per network and step, "
                  f"{prof['mean_kernel_us']:.1f} us each on average.", "",
                  "| kernels | share of device time |", "|---|---|"]
        lines += [f"| {kind} | {100 * share:.1f}% |" for kind, share in prof["by_kind"].items()]
        lines += ["", "| top kernel | calls | share |", "|---|---|---|"]
        lines += [f"| `{t['name']}` | {t['calls']} | {100 * t['share']:.1f}% |"
                  for t in prof["top_kernels"]]
    if res.get("skipped"):
        lines += ["", f"Skipped (time budget): {', '.join(res['skipped'])}"]
    return "\n".join(lines) + "\n"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        self.exit(2, f"error: {message} (see --help)\n")


def main(argv=None) -> None:
    ap = _Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for accelerator.json and accelerator.md")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a CPU smoke test")
    ap.add_argument("--budget", type=float, default=None, help="seconds of measuring (default: "
                    f"{FULL['budget']:.0f}, quick {QUICK['budget']:.0f}); later rows are skipped")
    ap.add_argument("--steps_per_call", type=int, default=None,
                    help="iterations per call of the program rows (default: 50, quick 2)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed iterations per row (default: 100, quick 4)")
    ap.add_argument("--ks", default=None, help="stack sizes in the order measured "
                    "(default: 10,1,20,40,2,5; quick 2,1)")
    ap.add_argument("--modes", default=None, help="the ways to measure, comma-separated "
                    "MODE:STRATEGY[+VARIANT...] (variants: bf16, flat, an XLA option set), or "
                    "'rank' for every speed candidate (default: the six plain ways)")
    ap.add_argument("--dtype", default="float32", choices=sorted(models.COMPUTE_DTYPES),
                    help="compute dtype of the ways without +bf16 (default: float32)")
    ap.add_argument("--profile", action="store_true", help="trace the default way and the "
                    "fastest at the first stack size: device kernels per network and step, by kind")
    ap.add_argument("--profile_steps", type=int, default=None, help="iterations traced per "
                    "profile (default: 10, quick 2)")
    ap.add_argument("--pin_autotune", default=None, metavar="FILE", help="GPU: load XLA's "
                    "autotuning results (convolution algorithms) from FILE if it exists, else "
                    "dump them there, so that later calls compare ways on the same kernels")
    args = ap.parse_args(argv)
    if args.pin_autotune:  # before the backend starts: XLA reads its flags once
        flag = ("load_autotune_results_from" if os.path.exists(args.pin_autotune)
                else "dump_autotune_results_to")
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_gpu_{flag}={os.path.abspath(args.pin_autotune)}").strip()
    size = dict(QUICK if args.quick else FULL)
    size["dtype"] = args.dtype
    size["modes"] = (CANDIDATES if args.modes == "rank" else MODES if args.modes is None
                     else tuple(m.strip() for m in args.modes.split(",") if m.strip()))
    try:
        for way in size["modes"]:
            parse_way(way)
    except ValueError as e:
        ap.error(f"--modes: {e}")
    if not size["modes"]:
        ap.error("--modes: name at least one way")
    if args.profile_steps is not None:
        size["profile_steps"] = args.profile_steps
    for name in ("budget", "steps_per_call", "steps", "profile_steps"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            ap.error(f"--{name} must be positive, got {value}")
    size.update({k: v for k, v in (("budget", args.budget), ("per_call", args.steps_per_call),
                                   ("steps", args.steps)) if v is not None})
    if args.ks is not None:
        try:
            size["ks"] = tuple(int(x) for x in args.ks.split(","))
        except ValueError:
            ap.error(f"--ks: expected comma-separated integers, got {args.ks!r}")
        if not size["ks"] or min(size["ks"]) < 1:
            ap.error(f"--ks: stack sizes must be >= 1, got {args.ks!r}")
    full_batches = size["train"] // size["batch"]
    if max(2, size["per_call"]) + size["steps"] > full_batches:
        ap.error(f"--steps and --steps_per_call: a row times its iterations inside the first "
                 f"epoch ({full_batches} full batches); ask for fewer")
    os.makedirs(args.out, exist_ok=True)
    if args.quick:  # toy sizes: compilation dominates, as in the test suite
        jax.config.update("jax_disable_most_optimizations", True)
    started = time.perf_counter()
    shape = (size["image"], size["image"], 3)
    rng = np.random.default_rng(0)  # random pixels: throughput does not depend on content
    ds = data.Dataset("random", rng.integers(0, 256, (size["train"], *shape), np.uint8),
                      rng.integers(0, 10, size["train"], np.int32),
                      rng.integers(0, 256, (size["test"], *shape), np.uint8),
                      rng.integers(0, 10, size["test"], np.int32), 10,
                      (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), synthetic=True)
    b = Bench(size, args.out, started, data.to_device(ds),
              models.create(cifar_resnet.name(size["depth"], size["width"])),
              Recipe(batch_size=size["batch"]),
              models.init(jax.random.key(0), cifar_resnet.name(size["depth"], size["width"]),
                          image_shape=shape),
              {"environment": environment(), "training": [], "evaluation": [], "skipped": []})
    b.results["size"] = dict(size, model=f"ResNet-{size['depth']} width {size['width']}")
    b.results["default_way"] = default_way()
    b.results["matmul_tflops"] = matmul_tflops(size["matmul"])
    b.results["flops_per_image"] = flops_per_image(b)
    env = b.results["environment"]
    print(f"{env['device_kind']} ({env['backend']}), jax {env['versions']['jax']}; f32 matmul "
          f"{b.results['matmul_tflops']:.1f} TFLOP/s; {b.results['flops_per_image'] or 0:.3g} "
          f"FLOP per training image", flush=True)
    capacity = siblings.stack_capacity(b.model, b.recipe, size["train"], shape, "vmap")
    b.results["stack_capacity"] = capacity
    print(f"{'way':34s} {'k':>3s} {'img/s':>9s} {'step ms':>8s} {'compile s':>9s} "
          f"{'MB':>6s} {'TFLOP/s':>8s}", flush=True)
    # Every way at the first two stack sizes, way by way (a budget cut drops whole ways, the
    # last named), then the default and the fastest at the other sizes.
    plan = [(way, k) for way in ways(b, 0) for k in size["ks"][:2]]
    for k in size["ks"][2:]:
        plan.append((None, k))
    for way, k in plan:
        for way in [way] if way is not None else ways(b, 2):
            strategy = parse_way(way)["strategy"]
            if k > max(size["ks"][:2]) and strategy in ("loop", "separate"):
                continue  # large stacks: loop programs grow with k; separate is per member
            if way == "step:separate" and k == 1:
                continue  # the same as step-loop at k = 1
            if capacity is not None and k > capacity:
                b.results["skipped"].append(f"{way} k={k} (memory)")
                continue
            if b.left() <= 0:
                b.results["skipped"].append(f"{way} k={k}")
                continue
            try:
                row = train_row(b, way, k)
            except Exception as e:  # noqa: BLE001 - options this jaxlib rejects fail one row
                row = {**_how(b, way)[2], "k": k, "failed": f"{type(e).__name__}: {e}"[:500]}
                print(f"{way:34s} {k:3d} failed: {row['failed'][:200]}", flush=True)
                b.results["training"].append(row)
                b.save()
                continue
            b.results["training"].append(row)
            mb = f"{row['peak_bytes_so_far'] / 2**20:6,.0f}" if row["peak_bytes_so_far"] else "     -"
            print(f"{way:34s} {k:3d} {row['images_per_s']:9,.0f} "
                  f"{row['step_ms']:8.1f} {row['compile_s']:9.1f} {mb:>6s} "
                  f"{row.get('tflops', 0):8.2f}", flush=True)
            b.save()
    k_eval = size["ks"][0]
    b.results["profiles"] = []
    if args.profile:
        rows = [r for r in b.results["training"] if r["k"] == k_eval and "images_per_s" in r]
        chosen = [r for r in rows if r["way"] == default_way()][:1] + \
            sorted(rows, key=lambda r: -r["images_per_s"])[:1]
        for row in {r["way"]: r for r in chosen}.values():
            prof = profile_row(b, row["way"], k_eval)
            if "busy_s" in prof:  # tracing slows the host; the device's work per step is the same
                prof["busy_fraction_of_untraced_step"] = \
                    prof["busy_s"] / prof["iterations"] / (row["step_ms"] / 1e3)
            b.results["profiles"].append(prof)
            b.save()
            print(f"profile: {json.dumps(prof)[:600]}", flush=True)
    for on_device, strategy in ((False, siblings.default_strategy()), (True, siblings.default_strategy()),
                                (True, "map")):
        if b.results["evaluation"] and b.left() < -0.25 * b.size["budget"]:  # a quarter more
            b.results["skipped"].append(f"evaluation {strategy} on_device={on_device}")
            continue
        row = eval_row(b, k_eval, on_device, strategy)
        b.results["evaluation"].append(row)
        print(f"evaluation k={k_eval} {strategy} {'on device' if on_device else 'host loop'}: "
              f"{row['images_per_s']:,.0f} img/s (compile {row['compile_s']:.1f} s)", flush=True)
    b.results["checkpoint"] = checkpoint_row(b, k_eval)
    c = b.results["checkpoint"]
    print(f"checkpoint k={k_eval}: training waits {1e3 * c['blocking_s']:.1f} ms, written in "
          f"{1e3 * c['total_s']:.1f} ms", flush=True)
    b.results["projection"] = projection(b)
    b.results["seconds"] = time.perf_counter() - started
    b.save()
    text = markdown(b.results)
    with open(os.path.join(args.out, "accelerator.md"), "w") as f:
        f.write(text)
    print(text[text.index("Projected"):] if "Projected" in text else "", flush=True)
    print(f"{b.results['seconds']:.0f} s; wrote {args.out}/accelerator.json and accelerator.md")


if __name__ == "__main__":
    main()
