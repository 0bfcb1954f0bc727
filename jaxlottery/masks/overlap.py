"""How much masks agree: IoU and overlap, overall, per layer and pairwise over a stack, and
what independent random masks would give (naive and layer-matched chance)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxlottery.masks.core import (Density, Mask, _as_stack, _check_fraction, _check_same,
                                   _prunable_items, _ratio, _reduce_axes, count, layer_densities,
                                   layer_sizes, stack_size)


def iou(a: Mask, b: Mask, stacked: bool = False) -> jax.Array:
    """Jaccard index |a and b| / |a or b| (NaN when both are empty: not defined)."""
    inter, uni = _inter_union(a, b, stacked)
    return _ratio(sum(inter.values()), sum(uni.values()))


def overlap(a: Mask, b: Mask, stacked: bool = False) -> jax.Array:
    """|a and b| / |a|: the fraction of a's kept weights that b keeps too."""
    inter, _ = _inter_union(a, b, stacked)
    kept_a, _ = count(a, stacked)
    return _ratio(sum(inter.values()), kept_a)


def iou_by_layer(a: Mask, b: Mask, stacked: bool = False) -> dict[str, jax.Array]:
    """IoU of each prunable leaf, keyed by path."""
    inter, uni = _inter_union(a, b, stacked)
    return {p: _ratio(inter[p], uni[p]) for p in inter}


def overlap_by_layer(a: Mask, b: Mask, stacked: bool = False) -> dict[str, jax.Array]:
    """Overlap |a and b| / |a| of each prunable leaf, keyed by path."""
    inter, _ = _inter_union(a, b, stacked)
    axis = _reduce_axes(stacked)
    return {p: _ratio(inter[p], jnp.sum(x, axis=axis(x), dtype=jnp.int32))
            for p, x in _prunable_items(a)}


def pairwise_iou(ms: Sequence[Mask] | Mask) -> jax.Array:
    """k x k matrix of IoU between all members of a stack (diagonal 1)."""
    inter, sizes = _pairwise_counts(_as_stack(ms))
    inter, sizes = sum(inter.values()), sum(sizes.values())
    return _ratio(inter, sizes[:, None] + sizes[None, :] - inter)


def pairwise_overlap(ms: Sequence[Mask] | Mask) -> jax.Array:
    """k x k matrix with entry [i, j] = |m_i and m_j| / |m_i|."""
    inter, sizes = _pairwise_counts(_as_stack(ms))
    return _ratio(sum(inter.values()), sum(sizes.values())[:, None])


def pairwise_iou_by_layer(ms: Sequence[Mask] | Mask) -> dict[str, jax.Array]:
    """k x k IoU matrix of each prunable leaf, keyed by path."""
    inter, sizes = _pairwise_counts(_as_stack(ms))
    return {p: _ratio(inter[p], sizes[p][:, None] + sizes[p][None, :] - inter[p]) for p in inter}


def chance_iou(d1: Density, d2: Density) -> jax.Array:
    """Expected IoU of two independent random masks of densities d1, d2 (large-n limit).

    d1 d2 / (d1 + d2 - d1 d2); d / (2 - d) at equal density.
    """
    for d in (d1, d2):
        _check_fraction(d, "density", allow_zero=True)
    d1, d2 = jnp.asarray(d1, jnp.float32), jnp.asarray(d2, jnp.float32)
    return _ratio(d1 * d2, d1 + d2 - d1 * d2)


def chance_iou_matched(a: Mask, b: Mask | None = None) -> jax.Array:
    """Layer-matched chance: expected IoU of random masks with a's and b's per-layer densities.

    Random masks that keep the same number of weights in every layer as `a` and `b` (b = a by
    default) have expected intersection sum_l n_l d_a,l d_b,l and expected union
    sum_l n_l (d_a,l + d_b,l - d_a,l d_b,l); this returns their ratio. Global magnitude pruning
    gives very different densities per layer, which raises chance overlap above `chance_iou`.
    """
    b = a if b is None else b
    _check_same([a, b])
    da, db, n = layer_densities(a), layer_densities(b), layer_sizes(a)
    inter = sum(n[p] * da[p] * db[p] for p in n)
    uni = sum(n[p] * (da[p] + db[p] - da[p] * db[p]) for p in n)
    return _ratio(inter, uni)


def _inter_union(a: Mask, b: Mask, stacked: bool):
    _check_same([a, b])
    axis = _reduce_axes(stacked)
    inter, uni = {}, {}
    for (p, x), (_, y) in zip(_prunable_items(a), _prunable_items(b)):
        inter[p] = jnp.sum(x & y, axis=axis(x), dtype=jnp.int32)
        uni[p] = jnp.sum(x | y, axis=axis(x), dtype=jnp.int32)
    return inter, uni


def _pairwise_counts(s: Mask):
    """Per leaf: k x k intersection counts and k kept counts (float32: exact below 2^24)."""
    k = stack_size(s)
    inter, sizes = {}, {}
    for p, x in _prunable_items(s):
        f = x.reshape(k, -1).astype(jnp.float32)
        inter[p] = f @ f.T
        sizes[p] = jnp.sum(f, axis=1)
    return inter, sizes
