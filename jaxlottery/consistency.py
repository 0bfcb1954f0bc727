"""How consistent sibling masks are, as rows of statistics: at the end of training (the
consistency stage) and during it (snapshots, the trajectory), from the same functions.

For a stack of masks at one density, over all pairs of members: IoU of the kept weights, Cohen's
kappa (layer-stratified: 0 = no more agreement than random masks with the same per-layer
densities, 1 = identical; `masks.kappa`), IoU of the pruned sets, overlap, and the IoU that
layer-matched random masks would have; and each member against a reference mask (the one-shot
mask of the weights it started from: W_t for siblings, its own init for a control network),
which measures how much of the starting magnitudes' ranking the trained mask still carries.
The heavy part (pruning, pairwise counts) runs on the device in one compiled program; the
rows are assembled on the host.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxlottery import masks, stacks
from jaxlottery.statistics import spread


@jax.jit
def agreement(ms, reference=None) -> dict:
    """Pairwise k x k matrices (iou, kappa, pruned_iou, overlap, matched_chance), per-layer
    k x k kappa and IoU, per-member densities, and (with a `reference` stack of the same size)
    each member's IoU and kappa with its reference mask."""
    out = {"iou": masks.pairwise_iou(ms), "kappa": masks.pairwise_kappa(ms),
           "pruned_iou": masks.pairwise_pruned_iou(ms), "overlap": masks.pairwise_overlap(ms),
           "matched_chance": masks.pairwise_chance_iou_matched(ms),
           "kappa_layers": masks.pairwise_kappa_by_layer(ms),
           "iou_layers": masks.pairwise_iou_by_layer(ms),
           "layer_density": masks.layer_densities(ms, stacked=True),
           "density": masks.density(ms, stacked=True)}
    if reference is not None:
        out["iou_reference"] = masks.iou(ms, reference, stacked=True)
        out["kappa_reference"] = masks.kappa(ms, reference, stacked=True)
    return out


@functools.partial(jax.jit, static_argnames=("densities", "rule"))
def snapshot(params, references: tuple, densities: tuple[float, ...],
             rule: masks.Rule = masks.default_rule) -> list[dict]:
    """`agreement` of the one-shot global magnitude masks of a params stack (of the weights
    `rule` prunes) at every density, each against its stack of reference masks: one compiled
    program per stack shape."""
    return [agreement(masks.magnitude_prune(params, d, stacked=True, rule=rule), ref)
            for d, ref in zip(densities, references)]


def references(params, densities: tuple[float, ...], k: int, stacked: bool,
               rule: masks.Rule = masks.default_rule) -> tuple:
    """The reference masks of a snapshot: the one-shot masks of the starting weights at every
    density, as stacks of k (one set of weights shared by all members unless `stacked`)."""
    out = []
    for d in densities:
        m = masks.magnitude_prune(params, d, stacked=stacked, rule=rule)
        out.append(m if stacked else stacks.stack([m] * k))
    return tuple(out)


def offdiag(mat) -> np.ndarray:
    """The values above the diagonal of a k x k matrix: one per pair."""
    mat = np.asarray(mat, dtype=float)
    return mat[np.triu_indices(mat.shape[0], 1)]


def _mean(values) -> float | None:
    """Mean of the defined values (None when none is: every pair NaN)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if x.size else None


def row(stats: dict) -> dict:
    """One row of statistics from `agreement`'s output: means over pairs (std ddof=1)."""
    iou, kappa = offdiag(stats["iou"]), offdiag(stats["kappa"])
    achieved = float(np.mean(np.asarray(stats["density"])))
    out = {"achieved_density": achieved,
           "iou_mean": _mean(iou), "iou_std": spread(iou)["std"],
           "kappa_mean": _mean(kappa), "kappa_std": spread(kappa)["std"],
           "pruned_iou_mean": _mean(offdiag(stats["pruned_iou"])),
           "chance_iou": float(masks.chance_iou(achieved, achieved)),
           "layer_matched_chance_iou": _mean(offdiag(stats["matched_chance"])),
           "overlap_mean": _mean(offdiag(stats["overlap"])), "pairs": int(len(iou))}
    if "iou_reference" in stats:
        out["iou_with_spawn_mask"] = _mean(stats["iou_reference"])
        out["kappa_with_spawn_mask"] = _mean(stats["kappa_reference"])
    return out


def layer_rows(stats: dict) -> list[dict]:
    """One row per prunable layer: its mean density, pairwise IoU and kappa (means over pairs)."""
    return [{"layer": layer, "layer_density": float(np.mean(np.asarray(stats["layer_density"][layer]))),
             "iou_mean": _mean(offdiag(stats["iou_layers"][layer])),
             "kappa_mean": _mean(offdiag(stats["kappa_layers"][layer]))}
            for layer in stats["kappa_layers"]]


def snapshot_rows(params, refs: tuple, densities: tuple[float, ...],
                  rule: masks.Rule = masks.default_rule) -> list[dict]:
    """A snapshot's rows, one per density, each with its per-layer rows under "layers"."""
    stats = jax.device_get(snapshot(params, refs, tuple(densities), rule))
    return [dict(row(s), density=d, layers=layer_rows(s)) for d, s in zip(densities, stats)]
