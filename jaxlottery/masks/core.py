"""The mask conventions in code: types, which leaves are prunable, applying, stacking and
counting masks, and the helpers and input checks every other part of `masks` shares."""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxlottery import stacks
from jaxlottery.stacks import is_none, size as stack_size

Mask = Any  # pytree of bool arrays and None
Params = Any
Rule = Callable[[str, Any], bool]
Density = Union[float, jax.Array]


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


def nest(flat: dict[str, Any]) -> dict:
    """Nested dicts from leaves keyed by `path_str` paths (Flax trees are nested dicts)."""
    out: dict = {}
    for key, x in flat.items():
        *parents, last = key.split("/")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = x
    return out


WEIGHT_NAMES = ("kernel", "w", "weight")  # Flax (linen and NNX), Haiku, Equinox and PyTorch


def default_rule(path: str, leaf: Any) -> bool:
    """Prune conv and dense weights: leaves with at least 2 dimensions named `kernel` (Flax; in
    an NNX state the name comes before the Variable's `value`: `conv/kernel/value`), `w`
    (Haiku: `linear/w`) or `weight` (Equinox modules, PyTorch-style state dicts). Biases,
    normalization scales and embeddings named otherwise are kept; pass `rule=` for others."""
    parts = path.split("/")
    name = parts[-2] if len(parts) > 1 and parts[-1] == "value" else parts[-1]
    return name in WEIGHT_NAMES and np.ndim(leaf) >= 2


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
    """Stack single masks (or params) of one structure along a new leading sibling axis."""
    return stacks.stack(_as_list(ms))


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
    """num / den, NaN where den is 0: the overlap of masks that keep nothing is not defined
    (an empty layer agrees with another empty layer about nothing)."""
    num, den = jnp.asarray(num, jnp.float32), jnp.asarray(den, jnp.float32)
    return jnp.where(den == 0, jnp.nan, num / jnp.where(den == 0, 1.0, den))


def _reduce_axes(stacked: bool) -> Callable:
    return (lambda x: tuple(range(1, x.ndim))) if stacked else (lambda x: None)


def _size(x, stacked: bool) -> int:
    return int(np.prod(x.shape[1:] if stacked else x.shape))


def _prunable_items(m: Mask) -> list[tuple[str, jax.Array]]:
    items, _ = jax.tree_util.tree_flatten_with_path(m, is_leaf=is_none)
    return [(path_str(p), x) for p, x in items if x is not None]


def _prunable_leaves(m: Mask) -> list[jax.Array]:
    return [x for _, x in _prunable_items(m)]


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


def _check_mask(m: Mask) -> None:
    items, _ = jax.tree_util.tree_flatten_with_path(m, is_leaf=is_none)
    if not any(x is not None for _, x in items):
        raise ValueError("a mask needs at least one prunable (non-None) leaf")
    for p, x in items:
        if x is not None and getattr(x, "dtype", None) != np.bool_:
            hint = ("; masks.convert(mask) turns 0/1 integer masks (jaxpruner keeps uint8) into "
                    "bool" if np.issubdtype(getattr(x, "dtype", np.float32), np.integer) else "")
            raise TypeError(f"mask leaf {path_str(p)!r} must be a bool array, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}{hint}")


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
    """A number (or real array) in (0, 1], or [0, 1] with `allow_zero`; TypeError for what is
    not a number (a string, a bool, None, a list, a complex), ValueError for one outside."""
    if isinstance(d, jax.core.Tracer):
        return
    interval = "[0, 1]" if allow_zero else "(0, 1]"
    real = (isinstance(d, (int, float, np.integer, np.floating)) and not isinstance(d, (bool, np.bool_))) \
        or (isinstance(d, (np.ndarray, jax.Array)) and (np.issubdtype(d.dtype, np.integer)
                                                       or np.issubdtype(d.dtype, np.floating)))
    if not real:
        raise TypeError(f"{name} must be a number in {interval} (the fraction of weights kept; "
                        f"sparsity is 1 - density), got {d!r} ({type(d).__name__})")
    arr = np.asarray(d, dtype=np.float64)
    lo_ok = arr >= 0 if allow_zero else arr > 0
    if not (np.all(np.isfinite(arr)) and np.all(lo_ok) and np.all(arr <= 1)):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {d!r}")


def _check_key(key: Any) -> None:
    """A JAX PRNG key: a typed key (jax.random.key) or a raw uint32 key (jax.random.PRNGKey)."""
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape[-1:] == (2,)
    if not (typed or raw or isinstance(key, jax.core.Tracer)):
        raise TypeError(f"key must be a JAX PRNG key (jax.random.key(seed)), got {key!r} "
                        f"({type(key).__name__})")


def _check_at_least(m: Any, k: int, name: str = "at_least") -> None:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= k:
        raise ValueError(f"{name} must be an integer in 1..{k} (k = {k} masks), got {m!r}")


def _check_finite(params: Params) -> None:
    for p, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not isinstance(x, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(x))):
            raise ValueError(f"parameter {path_str(p)!r} holds NaN or Inf; cannot rank by magnitude")


def _describe(x) -> str:
    return "None" if x is None else f"shape {tuple(x.shape)}"
