"""Training throughput of k siblings per strategy, against k separate runs of one network.

    python benchmarks/throughput.py --k=1,2,4,10 --strategies=vmap,loop,separate --steps=5

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
import time

import jax
import jax.numpy as jnp

from jaxlottery import data, models, siblings
from jaxlottery.train import Recipe


def measure(strategy: str, k: int, args, d, variables) -> dict:
    recipe = Recipe(batch_size=args.batch, augment=True)
    model = models.resnet(args.depth, args.width)
    fn = siblings.step_fn(strategy, k, model, recipe, args.batch, False)
    states = siblings.spawn(variables, k, recipe)
    keys = jax.random.split(jax.random.key(0), k)
    perms = siblings.permutations(keys, jnp.asarray(0, jnp.int32), d.x_train.shape[0])
    t0 = time.perf_counter()
    states, _ = fn(states, None, keys, perms, d)
    jax.block_until_ready(states)
    compile_s = time.perf_counter() - t0
    host = 0.0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        t1 = time.thread_time()  # CPU time of this thread: dispatch work, not waiting
        states, metrics = fn(states, None, keys, perms, d)
        host += time.thread_time() - t1
    jax.block_until_ready((states, metrics))
    wall = time.perf_counter() - t0
    step_s = wall / args.steps
    return {"strategy": strategy, "k": k, "images_per_s": k * args.batch / step_s,
            "compile_s": compile_s, "step_ms": 1e3 * step_s,
            "host_ms_per_step": 1e3 * host / args.steps, "host_fraction": host / wall,
            "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
            "depth": args.depth, "width": args.width, "batch": args.batch,
            "jax": jax.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", default="1,2,4,10", help="comma-separated sibling counts")
    ap.add_argument("--strategies", default=",".join(siblings.STRATEGIES))
    ap.add_argument("--steps", type=int, default=5, help="timed iterations per row")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--json", default=None, help="write the rows to this file")
    args = ap.parse_args()
    ks = [int(x) for x in args.k.split(",")]
    strategies = args.strategies.split(",")
    for s in strategies:
        if s not in siblings.STRATEGIES:
            ap.error(f"--strategies: unknown strategy {s!r} (choose from {siblings.STRATEGIES})")

    d = data.to_device(data.synthetic(num_train=4 * args.batch, num_test=args.batch))
    variables = models.init(jax.random.key(0), args.depth, args.width)
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


if __name__ == "__main__":
    main()
