"""Global magnitude masks of freshly initialized networks: per-layer densities and chance baselines.

    python experiments/init_masks.py --k=3 --density=0.107

Shows why a layer-matched chance baseline is needed: global magnitude pruning at init already
prunes layers very unevenly (wide layers have small kernels, std = sqrt(2 / fan_in)), so random
masks with the same per-layer densities overlap far more than `chance_iou` says.
"""

import argparse

import jax
import numpy as np

from jaxlottery import masks, models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=3, help="independent initializations")
    ap.add_argument("--density", type=float, default=0.8**10, help="fraction of weights kept")
    ap.add_argument("--model", default="cifar_resnet_20", help="a name in jaxlottery.models")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        network = models.get(args.model)
    except ValueError as e:
        ap.error(str(e))

    root = jax.random.key(args.seed)
    params = [models.init(jax.random.fold_in(root, i), args.model)["params"]
              for i in range(args.k)]
    ms = [masks.magnitude_prune(p, args.density, rule=network.prunable) for p in params]
    print(f"{network.description}: {masks.count(ms[0])[1]:,} prunable weights, "
          f"density {float(masks.density(ms[0])):.4f}")
    print(f"{'layer':40s} {'size':>7s} {'density':>8s}")
    for (p, d), n in zip(masks.layer_densities(ms[0]).items(), masks.layer_sizes(ms[0]).values()):
        print(f"{p:40s} {n:7d} {float(d):8.3f}")
    iou = np.asarray(masks.pairwise_iou(ms))
    off = iou[~np.eye(args.k, dtype=bool)]
    print(f"pairwise IoU between inits: {off.mean():.4f}  "
          f"chance {float(masks.chance_iou(args.density, args.density)):.4f}  "
          f"layer-matched chance {float(masks.chance_iou_matched(ms[0], ms[1 % args.k])):.4f}")


if __name__ == "__main__":
    main()
