"""From scores to masks: one-shot magnitude pruning, random masks, any score pytree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxlottery.masks.core import (Density, Mask, Params, Rule, _check_finite, _check_fraction,
                                   _check_mask, _n_keep, _scores, _split_like, _top_n,
                                   default_rule, is_none)


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
