"""How much masks agree: IoU and overlap, overall, per layer and pairwise over a stack, and
what independent random masks would give (naive and layer-matched chance); Cohen's kappa, the
chance-corrected agreement (0: as independent random masks with the same per-layer densities,
1: identical); and the IoU of the pruned sets."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

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


def pruned_iou(a: Mask, b: Mask, stacked: bool = False) -> jax.Array:
    """IoU of the pruned sets: |not a and not b| / |not a or not b| (NaN when both keep all)."""
    n11, sa, sb, n = _agreement(a, b, stacked)
    both_pruned = sum(n[p] - sa[p] - sb[p] + n11[p] for p in n)
    return _ratio(both_pruned, sum(n[p] - n11[p] for p in n))


def kappa(a: Mask, b: Mask, stacked: bool = False) -> jax.Array:
    """Cohen's kappa of two masks, computed within each layer and combined over layers.

    Within layer l of n_l weights, p_o is the fraction of weights both masks keep or both prune,
    and p_e = d_a d_b + (1 - d_a)(1 - d_b) what masks that are random within the layer at the
    same densities would share. Combined (layer-stratified):
    kappa = sum_l n_l (p_o - p_e) / sum_l n_l (1 - p_e).
    0: no more agreement than layer-matched random masks; 1: identical; negative: less than
    chance. Layers both masks keep (or prune) entirely carry no information and drop out; NaN
    when every layer does. Symmetric, and independent of the order of the layers.
    """
    num, den = _kappa_terms(*_agreement(a, b, stacked))
    return _ratio(sum(num.values()), sum(den.values()))


def kappa_by_layer(a: Mask, b: Mask, stacked: bool = False) -> dict[str, jax.Array]:
    """Cohen's kappa of each prunable leaf, keyed by path (NaN where both masks keep, or both
    prune, the whole leaf)."""
    num, den = _kappa_terms(*_agreement(a, b, stacked))
    return {p: _ratio(num[p], den[p]) for p in num}


def pairwise_kappa(ms: Sequence[Mask] | Mask) -> jax.Array:
    """k x k matrix of layer-stratified kappa (`kappa`) between all members of a stack."""
    num, den = _kappa_terms(*_pairwise_agreement(_as_stack(ms)))
    return _ratio(sum(num.values()), sum(den.values()))


def pairwise_kappa_by_layer(ms: Sequence[Mask] | Mask) -> dict[str, jax.Array]:
    """k x k kappa matrix of each prunable leaf, keyed by path."""
    num, den = _kappa_terms(*_pairwise_agreement(_as_stack(ms)))
    return {p: _ratio(num[p], den[p]) for p in num}


def pairwise_pruned_iou(ms: Sequence[Mask] | Mask) -> jax.Array:
    """k x k matrix of the IoU of the members' pruned sets."""
    n11, sa, sb, n = _pairwise_agreement(_as_stack(ms))
    return _ratio(sum(n[p] - sa[p] - sb[p] + n11[p] for p in n), sum(n[p] - n11[p] for p in n))


def pairwise_chance_iou_matched(ms: Sequence[Mask] | Mask) -> jax.Array:
    """k x k matrix of `chance_iou_matched` between all members of a stack."""
    n11, sa, sb, n = _pairwise_agreement(_as_stack(ms))
    inter = sum(sa[p] * sb[p] / n[p] for p in n)  # sum_l n_l d_a,l d_b,l
    return _ratio(inter, sum(sa[p] + sb[p] for p in n) - inter)


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


def _agreement(a: Mask, b: Mask, stacked: bool):
    """Per leaf: both kept, kept in a, kept in b (float32) and the leaf's size."""
    _check_same([a, b])
    axis = _reduce_axes(stacked)
    n11, sa, sb, n = {}, {}, {}, {}
    for (p, x), (_, y) in zip(_prunable_items(a), _prunable_items(b)):
        n11[p] = jnp.sum(x & y, axis=axis(x), dtype=jnp.int32).astype(jnp.float32)
        sa[p] = jnp.sum(x, axis=axis(x), dtype=jnp.int32).astype(jnp.float32)
        sb[p] = jnp.sum(y, axis=axis(y), dtype=jnp.int32).astype(jnp.float32)
        n[p] = float(np.prod(x.shape[1:] if stacked else x.shape))
    return n11, sa, sb, n


def _pairwise_agreement(s: Mask):
    """`_agreement` for every pair of a stack: k x k both-kept counts, kept counts as a column
    (a) and a row (b), sizes."""
    inter, sizes = _pairwise_counts(s)
    n = {p: float(np.prod(x.shape[1:])) for p, x in _prunable_items(s)}
    return inter, {p: v[:, None] for p, v in sizes.items()}, {p: v[None, :] for p, v in sizes.items()}, n


def _kappa_terms(n11: dict, sa: dict, sb: dict, n: dict) -> tuple[dict, dict]:
    """Per leaf, n_l (p_o - p_e) and n_l (1 - p_e) of Cohen's kappa, from the agreement counts.
    Written so that identical masks give equal terms exactly (kappa exactly 1)."""
    num, den = {}, {}
    for p in n:
        expected = (sa[p] * sb[p] + (n[p] - sa[p]) * (n[p] - sb[p])) / n[p]  # n_l p_e
        agree = n11[p] + (n[p] - sa[p] - sb[p] + n11[p])  # n_l p_o
        num[p], den[p] = agree - expected, n[p] - expected
    return num, den


def _pairwise_counts(s: Mask):
    """Per leaf: k x k intersection counts and k kept counts (float32: exact below 2^24)."""
    k = stack_size(s)
    inter, sizes = {}, {}
    for p, x in _prunable_items(s):
        f = x.reshape(k, -1).astype(jnp.float32)
        inter[p] = f @ f.T
        sizes[p] = jnp.sum(f, axis=1)
    return inter, sizes
