"""Pruning masks as pytrees of booleans, and their algebra.

Conventions (the whole library relies on them):

- A mask has the tree structure of the parameters it masks. A prunable leaf holds a bool
  array of the parameter's shape (True = kept); a leaf that is never pruned (biases,
  BatchNorm) holds `None`. Counts, densities and overlaps therefore see only prunable
  weights: ResNet-20 has 270,896 of them. `None` is an empty subtree to JAX, so masks pass
  through `jit`, `vmap` and `tree.map(..., is_leaf=masks.is_none)` unchanged.
- By default the prunable leaves are the conv and dense kernels (leaves named `kernel`);
  pass `rule=` to choose others.
- A "stack" is a mask (or params) whose leaves carry a leading sibling axis of size k.
  Functions that combine masks (`union`, `intersection`, `vote`, `pairwise_iou`, `compose`)
  take either a stack or a list/tuple of single masks. Functions that describe one mask
  (`count`, `density`, `layer_densities`, `iou`, `overlap`, `magnitude_prune`) take
  `stacked=True` to map over the sibling axis.
- Kept counts: density d keeps `floor(d * n + 0.5)` weights (n = number of prunable weights,
  globally or per layer). Ties in |w| are broken by position: among equal scores the weight
  that comes first in the flattened order (leaves in `jax.tree` order, each row-major) is kept.

Everything here is a pure function of its inputs and works under `jax.jit` (densities may be
traced; `how`, `scope`, `at_least` and `stacked` are static). Bad input raises `ValueError` or
`TypeError` eagerly; a traced value cannot be range-checked and is taken as given.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxlottery.files import atomic_open

Mask = Any  # pytree of bool arrays and None
Params = Any
Rule = Callable[[str, Any], bool]
Density = Union[float, jax.Array]

FORMAT = "jaxlottery.mask"
FORMAT_VERSION = 1


def is_none(x: Any) -> bool:
    """`is_leaf` for tree functions that must see a mask's `None` leaves."""
    return x is None


def path_str(path: tuple) -> str:
    """A readable parameter path: `stage2_block0/conv1/kernel`."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def default_rule(path: str, leaf: Any) -> bool:
    """Prune conv and dense kernels: leaves named `kernel` with at least 2 dimensions."""
    return path.rsplit("/", 1)[-1] == "kernel" and np.ndim(leaf) >= 2


# ---------------------------------------------------------------------------------------------
# Making and applying masks


def prunable(params: Params, rule: Rule = default_rule) -> Any:
    """Pytree of Python bools with the structure of `params`: True where `rule` prunes."""
    return jax.tree_util.tree_map_with_path(lambda p, x: bool(rule(path_str(p), x)), params)


def ones_like(params: Params, rule: Rule = default_rule) -> Mask:
    """The dense mask: all-True arrays on prunable leaves, `None` elsewhere."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.ones(jnp.shape(x), bool) if rule(path_str(p), x) else None, params)


def apply(params: Params, mask: Mask) -> Params:
    """Zero the pruned weights. A single mask also applies to every member of a params stack."""
    _check_mask(mask)
    _check_fits(mask, params)
    return jax.tree.map(lambda m, p: p if m is None else jnp.where(m, p, jnp.zeros((), p.dtype)),
                        mask, params, is_leaf=is_none)


def stack(ms: Sequence[Mask]) -> Mask:
    """Stack single masks (or params) along a new leading sibling axis."""
    ms = _as_list(ms)
    return jax.tree.map(lambda *xs: None if xs[0] is None else jnp.stack(xs), *ms, is_leaf=is_none)


def unstack(m: Mask) -> list[Mask]:
    """Split a stack into a list of single masks (or params)."""
    k = stack_size(m)
    return [jax.tree.map(lambda x, i=i: None if x is None else x[i], m, is_leaf=is_none)
            for i in range(k)]


# ---------------------------------------------------------------------------------------------
# Counting


def count(m: Mask, stacked: bool = False) -> tuple[jax.Array, int]:
    """(kept, total) over prunable weights; with `stacked`, `kept` has shape (k,)."""
    _check_mask(m)
    leaves = _prunable_leaves(m)
    axis = _reduce_axes(stacked)
    kept = sum(jnp.sum(x, axis=axis(x), dtype=jnp.int32) for x in leaves)
    total = sum(_size(x, stacked) for x in leaves)
    return kept, total


def density(m: Mask, stacked: bool = False) -> jax.Array:
    """Fraction of prunable weights kept."""
    kept, total = count(m, stacked)
    return kept / total


def layer_densities(m: Mask, stacked: bool = False) -> dict[str, jax.Array]:
    """Density of each prunable leaf, keyed by its readable path."""
    _check_mask(m)
    axis = _reduce_axes(stacked)
    return {p: jnp.sum(x, axis=axis(x), dtype=jnp.int32) / _size(x, stacked)
            for p, x in _prunable_items(m)}


def layer_sizes(m: Mask, stacked: bool = False) -> dict[str, int]:
    """Number of prunable weights in each prunable leaf, keyed by path."""
    return {p: _size(x, stacked) for p, x in _prunable_items(m)}


# ---------------------------------------------------------------------------------------------
# Combining


def union(ms: Sequence[Mask] | Mask) -> Mask:
    """Kept in any member."""
    return _reduce(ms, lambda x: jnp.any(x, axis=0))


def intersection(ms: Sequence[Mask] | Mask) -> Mask:
    """Kept in every member."""
    return _reduce(ms, lambda x: jnp.all(x, axis=0))


def vote(ms: Sequence[Mask] | Mask, at_least: int) -> Mask:
    """Kept in at least `at_least` of the k members (1 = union, k = intersection)."""
    s = _as_stack(ms)
    _check_at_least(at_least, stack_size(s))
    return _reduce(s, lambda x: jnp.sum(x, axis=0, dtype=jnp.int32) >= at_least)


# ---------------------------------------------------------------------------------------------
# Overlap and chance


def iou(a: Mask, b: Mask, stacked: bool = False) -> jax.Array:
    """Jaccard index |a and b| / |a or b| (1 when both are empty)."""
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


# ---------------------------------------------------------------------------------------------
# Pruning: scores -> masks


def magnitude_prune(params: Params, density: Density, scope: str = "global",
                    rule: Rule = default_rule, stacked: bool = False) -> Mask:
    """One-shot magnitude pruning: keep the `density` fraction of prunable weights of largest |w|.

    `scope="global"` ranks all prunable weights together (lottery-ticket global pruning: raw
    |w|, no per-layer normalization); `"layerwise"` keeps the same fraction in every leaf.
    """
    _check_fraction(density, "density")
    _check_finite(params)
    scores = _scores(params, rule, jnp.abs)
    if stacked:
        return jax.vmap(lambda s: mask_from_scores(s, density, scope))(scores)
    return mask_from_scores(scores, density, scope)


def random_mask(key: jax.Array, params: Params, density: Density, scope: str = "global",
                rule: Rule = default_rule) -> Mask:
    """A uniformly random mask keeping exactly the count `magnitude_prune` would keep."""
    _check_fraction(density, "density")
    return mask_from_scores(_uniform_like(key, _scores(params, rule, lambda x: x)), density, scope)


def random_mask_like(key: jax.Array, mask: Mask) -> Mask:
    """A uniformly random mask with exactly as many weights kept in every leaf as `mask`: the
    layer-matched random baseline (global magnitude pruning leaves very different densities
    per layer, which a globally uniform random mask ignores)."""
    _check_mask(mask)
    return _random_like(key, mask)


@jax.jit
def _random_like(key: jax.Array, mask: Mask) -> Mask:
    return jax.tree.map(lambda m, u: None if m is None else _top_n(u.ravel(), jnp.sum(m)).reshape(m.shape),
                        mask, _uniform_like(key, mask), is_leaf=is_none)


@jax.jit
def _uniform_like(key: jax.Array, tree: Any) -> Any:
    """Uniform [0, 1) scores shaped like the non-None leaves of `tree`, from one draw (one
    compiled program however many leaf shapes there are)."""
    leaves, treedef = jax.tree.flatten(tree, is_leaf=is_none)
    arrays = [x for x in leaves if x is not None]
    parts = iter(_split_like(jax.random.uniform(key, (sum(x.size for x in arrays),)), arrays))
    return jax.tree.unflatten(treedef, [None if x is None else next(parts) for x in leaves])


def mask_from_scores(scores: Any, density: Density, scope: str = "global") -> Mask:
    """Keep the highest-scoring fraction `density` of entries (scores: pytree with None leaves)."""
    _check_fraction(density, "density")
    if scope not in ("global", "layerwise"):
        raise ValueError(f"scope must be 'global' or 'layerwise', got {scope!r}")
    leaves, treedef = jax.tree.flatten(scores, is_leaf=is_none)
    arrays = [x for x in leaves if x is not None]
    if not arrays:
        raise ValueError("nothing to prune: no prunable leaves (check `rule`)")
    if scope == "layerwise":
        kept = [_top_n(x.ravel(), _n_keep(density, x.size)).reshape(x.shape) for x in arrays]
    else:
        flat = jnp.concatenate([x.ravel() for x in arrays])
        kept = _split_like(_top_n(flat, _n_keep(density, flat.size)), arrays)
    kept = iter(kept)
    return jax.tree.unflatten(treedef, [None if x is None else next(kept) for x in leaves])


def compose(params_stack: Params | Sequence[Params], density: Density,
            how: str | int = "union", rule: Rule = default_rule,
            exact: bool = False) -> tuple[Mask, jax.Array]:
    """Matched-density composition of the k siblings' global magnitude masks.

    Finds the per-sibling density d such that composing (`"union"`, `"intersection"`, or an int
    m for "kept in at least m of k") the k masks `magnitude_prune(sibling, d)` keeps as close as
    possible to `round(density * n)` weights. Union prunes each sibling harder than the target,
    intersection softer. Returns `(mask, d)`.

    The search is exact rather than a bisection: with r_s(w) the rank of weight w in sibling s,
    the composed mask at per-sibling count c is {w : m-th smallest r_s(w) < c}, so the best c is
    read off the sorted m-th smallest ranks. Counts move in steps of at most k weights, so the
    achieved density is within k / n of the target.

    `exact=True` keeps exactly `round(density * n)` weights: the weights that enter at the
    boundary count are taken in order of their summed rank over the siblings (then position).
    The mask is then vote(magnitude_prune(p_s, d)) at the smallest d reaching the target, minus
    at most k - 1 boundary weights. Iterative pruning uses it to keep 0.8^L exactly.
    """
    _check_fraction(density, "density")
    s = _as_stack(params_stack)
    k = stack_size(s)
    if isinstance(how, str) and how not in ("union", "intersection"):
        raise ValueError(f"how must be 'union', 'intersection' or an int m, got {how!r}")
    m = {"union": 1, "intersection": k}.get(how, how)
    _check_at_least(m, k, name="how")
    _check_finite(s)
    leaves, treedef = jax.tree.flatten(_scores(s, rule, jnp.abs), is_leaf=is_none)
    arrays = [x for x in leaves if x is not None]
    flat = jnp.concatenate([x.reshape(k, -1) for x in arrays], axis=1)  # (k, n)
    n = flat.shape[1]
    ranks = jax.vmap(_ranks)(flat)
    composed_rank = jnp.sort(ranks, axis=0)[m - 1]  # (n,)
    target = _n_keep(density, n)
    sorted_r = jnp.sort(composed_rank)
    v = sorted_r[jnp.maximum(target - 1, 0)]
    below = jnp.searchsorted(sorted_r, v, side="left")  # kept with per-sibling count v
    upto = jnp.searchsorted(sorted_r, v, side="right")  # kept with per-sibling count v + 1
    c = jnp.where(target - below < upto - target, v, v + 1)
    c = jnp.where(target == 0, 0, c)
    keep = composed_rank < c
    if exact:  # order by (composed rank, summed rank, position); keep the first `target`
        order = jnp.lexsort((jnp.sum(ranks, axis=0), composed_rank))
        keep = _ranks_of_order(order) < target
        c = jnp.where(target == 0, 0, composed_rank[order[jnp.maximum(target - 1, 0)]] + 1)
    kept = iter(_split_like(keep, [x[0] for x in arrays]))
    mask = jax.tree.unflatten(treedef, [None if x is None else next(kept) for x in leaves])
    return mask, c / n


# ---------------------------------------------------------------------------------------------
# Save and load


def save(path: str | os.PathLike, m: Mask) -> None:
    """Write a mask (single or stack) to an .npz file with its paths and shapes, atomically."""
    _check_mask(m)
    items, _ = jax.tree_util.tree_flatten_with_path(m, is_leaf=is_none)
    meta = {"format": FORMAT, "version": FORMAT_VERSION,
            "leaves": [{"path": path_str(p), "shape": None if x is None else list(x.shape)}
                       for p, x in items]}
    arrays = {f"leaf_{i}": np.asarray(x) for i, (_, x) in enumerate(items) if x is not None}
    with atomic_open(path) as f:
        np.savez_compressed(f, __meta__=np.array(json.dumps(meta)), **arrays)


def load(path: str | os.PathLike, like: Params | None = None) -> Mask:
    """Read a mask written by `save`.

    Without `like`, the mask is rebuilt as nested dicts from its paths (Flax params are nested
    dicts). With `like` (a params tree or mask), it takes that tree's structure, and a mask that
    does not fit gives a ValueError naming the first mismatching path.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["__meta__"]))
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
    except FileNotFoundError:
        raise
    except Exception as e:  # zip, json or key errors: the file is not a mask file
        raise ValueError(f"{path}: not a readable jaxlottery mask file ({e})") from None
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} file")
    leaves = []
    for i, entry in enumerate(meta["leaves"]):
        x = arrays.get(f"leaf_{i}")
        if (entry["shape"] is None) != (x is None) or (x is not None and (
                list(x.shape) != entry["shape"] or x.dtype != np.bool_)):
            raise ValueError(f"{path}: corrupt entry for {entry['path']!r}")
        leaves.append(None if x is None else jnp.asarray(x))
    paths = [e["path"] for e in meta["leaves"]]
    if like is None:
        return _nest(paths, leaves)
    like_items, treedef = jax.tree_util.tree_flatten_with_path(like, is_leaf=is_none)
    like_paths = [path_str(p) for p, _ in like_items]
    for p, q, x, (_, ref) in zip(paths, like_paths, leaves, like_items):
        if p != q:
            raise ValueError(f"{path}: mask does not fit: leaf {p!r} where the tree has {q!r}")
        if x is not None and ref is not None and tuple(x.shape)[-np.ndim(ref):] != np.shape(ref):
            raise ValueError(f"{path}: mask does not fit at {p!r}: mask shape {tuple(x.shape)}, "
                             f"tree shape {np.shape(ref)}")
    if len(paths) != len(like_paths):
        first = (paths + like_paths)[min(len(paths), len(like_paths))]
        raise ValueError(f"{path}: mask does not fit: {len(paths)} leaves against "
                         f"{len(like_paths)} in the tree; first unmatched path {first!r}")
    return jax.tree.unflatten(treedef, leaves)


# ---------------------------------------------------------------------------------------------
# Internals


def _nest(paths: list[str], leaves: list) -> dict:
    out: dict = {}
    for p, x in zip(paths, leaves):
        node = out
        *parents, last = p.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = x
    return out


def _scores(params: Params, rule: Rule, fn: Callable) -> Any:
    """fn(leaf) on prunable leaves, None elsewhere. With a stack, rule sees member shapes."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: fn(x) if rule(path_str(p), x) else None, params)


def _n_keep(density: Density, n: int):
    """floor(density * n + 0.5), clipped to [0, n]: exact for Python floats, traced otherwise."""
    if isinstance(density, jax.core.Tracer):
        return jnp.clip(jnp.floor(density * n + 0.5), 0, n).astype(jnp.int32)
    return min(max(int(np.floor(float(density) * n + 0.5)), 0), n)


def _ranks(scores: jax.Array) -> jax.Array:
    """Rank of each entry in descending order of score, ties to the earlier index."""
    return _ranks_of_order(jnp.argsort(scores, descending=True, stable=True))


def _ranks_of_order(order: jax.Array) -> jax.Array:
    """The inverse permutation: position of each entry in `order`."""
    return jnp.zeros(order.shape, jnp.int32).at[order].set(jnp.arange(order.size, dtype=jnp.int32))


def _top_n(scores: jax.Array, n) -> jax.Array:
    return _ranks(scores) < n


def _split_like(flat: jax.Array, arrays: list) -> list:
    sizes = np.cumsum([x.size for x in arrays])[:-1]
    return [part.reshape(x.shape) for part, x in zip(jnp.split(flat, sizes, axis=-1), arrays)]


def _ratio(num, den) -> jax.Array:
    """num / den, with 0 / 0 = 1 (two empty masks are identical)."""
    num, den = jnp.asarray(num, jnp.float32), jnp.asarray(den, jnp.float32)
    return jnp.where(den == 0, 1.0, num / jnp.where(den == 0, 1.0, den))


def _reduce_axes(stacked: bool) -> Callable:
    return (lambda x: tuple(range(1, x.ndim))) if stacked else (lambda x: None)


def _size(x, stacked: bool) -> int:
    return int(np.prod(x.shape[1:] if stacked else x.shape))


def _prunable_items(m: Mask) -> list[tuple[str, jax.Array]]:
    items, _ = jax.tree_util.tree_flatten_with_path(m, is_leaf=is_none)
    return [(path_str(p), x) for p, x in items if x is not None]


def _prunable_leaves(m: Mask) -> list[jax.Array]:
    return [x for _, x in _prunable_items(m)]


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


def _reduce(ms, fn: Callable) -> Mask:
    s = _as_stack(ms)
    _check_mask(s)
    return jax.tree.map(lambda x: None if x is None else fn(x), s, is_leaf=is_none)


def _as_list(ms) -> list:
    if not isinstance(ms, (list, tuple)):
        raise TypeError(f"expected a list or tuple of masks, got {type(ms).__name__}")
    if not ms:
        raise ValueError("expected at least one mask, got an empty sequence")
    _check_same(list(ms), require_bool=False)
    return list(ms)


def _as_stack(ms) -> Mask:
    """A list/tuple of masks is stacked; anything else must already be a stack."""
    if isinstance(ms, (list, tuple)):
        return stack(ms)
    stack_size(ms)
    return ms


def stack_size(s) -> int:
    """k, the common leading axis of a stack's array leaves (ValueError if there is none)."""
    leaves = [x for x in jax.tree.leaves(s) if x is not None]
    if not leaves:
        raise ValueError("expected a stack with at least one array leaf")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"not a stack: leaves have leading axes {sorted(map(str, sizes))}; "
                         "pass a list of masks, or arrays with a common leading sibling axis")
    return sizes.pop()


def _check_mask(m: Mask) -> None:
    items, _ = jax.tree_util.tree_flatten_with_path(m, is_leaf=is_none)
    if not any(x is not None for _, x in items):
        raise ValueError("a mask needs at least one prunable (non-None) leaf")
    for p, x in items:
        if x is not None and getattr(x, "dtype", None) != np.bool_:
            raise TypeError(f"mask leaf {path_str(p)!r} must be a bool array, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")


def _check_same(ms: list, require_bool: bool = True) -> None:
    """Same tree structure, same None positions, same shapes (and bool leaves)."""
    first, treedef = jax.tree_util.tree_flatten_with_path(ms[0], is_leaf=is_none)
    for i, m in enumerate(ms):
        if require_bool:
            _check_mask(m)
        items, td = jax.tree_util.tree_flatten_with_path(m, is_leaf=is_none)
        for (p, x), (q, y) in zip(first, items):
            if path_str(p) != path_str(q):
                raise ValueError(f"mask {i} does not match mask 0: {path_str(q)!r} where mask 0 "
                                 f"has {path_str(p)!r}")
            if (x is None) != (y is None) or (x is not None and x.shape != y.shape):
                raise ValueError(f"mask {i} does not match mask 0 at {path_str(p)!r}: "
                                 f"{_describe(y)} vs {_describe(x)}")
        if td != treedef:
            raise ValueError(f"mask {i} has a different tree structure from mask 0")


def _check_fits(mask: Mask, params: Params) -> None:
    """The mask's structure is a prefix of the params' and shapes agree (a stack on either side ok)."""
    m_items, _ = jax.tree_util.tree_flatten_with_path(mask, is_leaf=is_none)
    p_items = jax.tree_util.tree_flatten_with_path(params)[0]
    p_shapes = {path_str(p): np.shape(x) for p, x in p_items}
    m_paths = {path_str(p) for p, _ in m_items}
    for p, x in m_items:
        q = path_str(p)
        if x is None:
            if not any(r == q or r.startswith(q + "/") for r in p_shapes):
                raise ValueError(f"mask leaf {q!r} has no parameter of that path")
            continue
        if q not in p_shapes:
            raise ValueError(f"mask leaf {q!r} has no parameter of that path")
        ps = p_shapes[q]
        if not (x.shape == ps or x.shape == ps[1:] or x.shape[1:] == ps):
            raise ValueError(f"mask does not fit params at {q!r}: mask shape {x.shape}, "
                             f"param shape {ps}")
    for r in p_shapes:
        if not any(r == q or r.startswith(q + "/") for q in m_paths):
            raise ValueError(f"params leaf {r!r} has no mask entry (use None to keep it dense)")


def _check_fraction(d: Any, name: str, allow_zero: bool = False) -> None:
    if isinstance(d, jax.core.Tracer):
        return
    arr = np.asarray(d, dtype=np.float64)
    lo_ok = arr >= 0 if allow_zero else arr > 0
    if not (np.all(np.isfinite(arr)) and np.all(lo_ok) and np.all(arr <= 1)):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {d!r}")


def _check_at_least(m: Any, k: int, name: str = "at_least") -> None:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= k:
        raise ValueError(f"{name} must be an integer in 1..{k} (k = {k} masks), got {m!r}")


def _check_finite(params: Params) -> None:
    for p, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not isinstance(x, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(x))):
            raise ValueError(f"parameter {path_str(p)!r} holds NaN or Inf; cannot rank by magnitude")


def _describe(x) -> str:
    return "None" if x is None else f"shape {tuple(x.shape)}"
