"""Training throughput of k siblings per strategy, against k separate runs of one network.

    python benchmarks/throughput.py --k=1,2,4,10 --strategies=vmap,loop,separate --steps=5
    python benchmarks/throughput.py --k=8 --devices=1,2,4,8     # sharded over devices

Prints a table and (with --json) writes rows {strategy, k, images_per_s, compile_s, device,
ratio_vs_separate, step_ms, host_ms_per_step, host_fraction}. `ratio_vs_separate` is the
throughput of the k-member program over that of one network trained alone (k separate runs
take k times as long as one). `host_ms_per_step` is the CPU time the calling thread spends
per iteration (dispatch, indexing, bookkeeping; time spent waiting on the device is not
counted), and `host_fraction` its share of the step time. Compile time (the first call) is
excluded from images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

from jaxlottery import data, models, sharding, siblings, stacks
from jaxlottery.models import cifar_resnet
from jaxlottery.train import Recipe


def measure(strategy: str, k: int, args, d, variables, mesh=None) -> dict:
    recipe = Recipe(batch_size=args.batch, augment=True)
    model = models.create(cifar_resnet.name(args.depth, args.width))
    states = siblings.spawn(variables, k, recipe)
    keys = jax.random.split(jax.random.key(0), k)
    perms = siblings.permutations(keys, jnp.asarray(0, jnp.int32), d.x_train.shape[0])
    if mesh is not None:
        k_run = sharding.padded_size(k, mesh)
        states, keys, perms = (sharding.place(stacks.pad(x, k_run), mesh)
                               for x in (states, keys, perms))
        d = sharding.place(d, mesh, sharding.P())
    k_run = sharding.padded_size(k, mesh) if mesh else k
    n = d.x_train.shape[0]
    fn = siblings.program(strategy, k_run, model, recipe, n, 1, False, mesh)
    sums = siblings.zero_sums(k_run)
    if mesh is not None:
        sums = sharding.place(sums, mesh)
    t0 = time.perf_counter()
    states, sums = fn(states, sums, None, keys, perms, d)
    jax.block_until_ready(states)
    compile_s = time.perf_counter() - t0
    host = 0.0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        t1 = time.thread_time()  # CPU time of this thread: dispatch work, not waiting
        states, sums = fn(states, sums, None, keys, perms, d)
        host += time.thread_time() - t1
    jax.block_until_ready((states, sums))
    wall = time.perf_counter() - t0
    step_s = wall / args.steps
    return {"strategy": strategy, "k": k, "images_per_s": k * args.batch / step_s,
            "compile_s": compile_s, "step_ms": 1e3 * step_s,
            "host_ms_per_step": 1e3 * host / args.steps, "host_fraction": host / wall,
            "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
            "depth": args.depth, "width": args.width, "batch": args.batch,
            "devices": 1 if mesh is None else mesh.devices.size, "jax": jax.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", default="1,2,4,10", help="comma-separated sibling counts")
    ap.add_argument("--strategies", default=",".join(siblings.STRATEGIES))
    ap.add_argument("--steps", type=int, default=5, help="timed iterations per row")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--json", default=None, help="write the rows to this file")
    ap.add_argument("--devices", default=None,
                    help="comma-separated device counts: shard the k siblings over that many "
                         "devices (on CPU, virtual devices: one subprocess per count)")
    ap.add_argument("--mesh", type=int, default=None, help=argparse.SUPPRESS)  # child process
    args = ap.parse_args()
    if args.mesh:
        return child(args)
    if args.devices:
        return scaling(args)
    ks = [int(x) for x in args.k.split(",")]
    strategies = args.strategies.split(",")
    for s in strategies:
        if s not in siblings.STRATEGIES:
            ap.error(f"--strategies: unknown strategy {s!r} (choose from {siblings.STRATEGIES})")

    d = data.to_device(data.synthetic(num_train=4 * args.batch, num_test=args.batch))
    variables = models.init(jax.random.key(0), cifar_resnet.name(args.depth, args.width))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"ResNet-{args.depth} width {args.width}, batch {args.batch}, {args.steps} timed steps")
    single = measure("separate", 1, args, d, variables)
    rows = []
    print(f"{'strategy':9s} {'k':>3s} {'img/s':>8s} {'vs sep':>7s} {'step ms':>9s} "
          f"{'host ms':>8s} {'host %':>7s} {'compile s':>9s}")
    for strategy in strategies:
        for k in ks:
            row = single if (strategy, k) == ("separate", 1) else measure(strategy, k, args, d,
                                                                           variables)
            row = dict(row, ratio_vs_separate=row["images_per_s"] / single["images_per_s"])
            rows.append(row)
            print(f"{strategy:9s} {k:3d} {row['images_per_s']:8.1f} {row['ratio_vs_separate']:7.2f} "
                  f"{row['step_ms']:9.1f} {row['host_ms_per_step']:8.2f} "
                  f"{100 * row['host_fraction']:6.1f}% {row['compile_s']:9.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def scaling(args) -> None:
    """Rows for k siblings sharded over 1, 2, 4, 8 ... devices, against one device."""
    counts = [int(x) for x in args.devices.split(",")]
    rows = []
    for n in counts:
        env = dict(os.environ)
        if jax.default_backend() == "cpu" and "xla_force_host_platform_device_count" not in env.get(
                "XLA_FLAGS", ""):
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
        cmd = [sys.executable, __file__, f"--mesh={n}", f"--k={args.k}", f"--steps={args.steps}",
               f"--depth={args.depth}", f"--width={args.width}", f"--batch={args.batch}"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["images_per_s"] / rows[0]["devices"]
    print(f"{'devices':>7s} {'k':>3s} {'img/s':>8s} {'speedup':>8s} {'efficiency':>10s} {'compile s':>9s}")
    for r in rows:
        r["speedup"] = r["images_per_s"] / rows[0]["images_per_s"]
        r["scaling_efficiency"] = r["images_per_s"] / (base * r["devices"])
        print(f"{r['devices']:7d} {r['k']:3d} {r['images_per_s']:8.1f} {r['speedup']:8.2f} "
              f"{r['scaling_efficiency']:10.2f} {r['compile_s']:9.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def child(args) -> None:
    """One row with a mesh of `args.mesh` devices (run by `scaling` in a fresh process)."""
    d = data.to_device(data.synthetic(num_train=4 * args.batch, num_test=args.batch))
    variables = models.init(jax.random.key(0), cifar_resnet.name(args.depth, args.width))
    mesh = sharding.sibling_mesh(jax.devices()[:args.mesh])
    strategy = siblings.default_strategy()
    print(json.dumps(measure(strategy, int(args.k), args, d, variables, mesh)))


if __name__ == "__main__":
    main()
