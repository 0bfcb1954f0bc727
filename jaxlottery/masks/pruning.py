"""From scores to masks: one-shot magnitude pruning, random masks, any score pytree, and the
layer-wise density distributions (uniform, ERK) that sparse-training papers prune to.

Density is the fraction of prunable weights kept; sparsity, the fraction pruned, is 1 - density
(jaxpruner and most sparse-training code speak of sparsity: `sparsity=0.9` is `density=0.1`)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlottery.masks.core import (WEIGHT_NAMES, Density, Mask, Params, Rule, _check_finite,
                                   _check_fraction, _check_key, _check_mask, _n_keep, _scores, _split_like,
                                   _top_n, default_rule, is_none, path_str)


def magnitude_prune(params: Params, density: Density, scope: str = "global",
                    rule: Rule = default_rule, stacked: bool = False) -> Mask:
    """One-shot magnitude pruning: keep the `density` fraction of prunable weights of largest |w|.

    `scope="global"` ranks all prunable weights together (lottery-ticket global pruning: raw
    |w|, no per-layer normalization); `"layerwise"` (or `"uniform"`) keeps the same fraction in
    every leaf; `"erk"` keeps `layer_density_map(..., "erk")`'s fraction in each leaf.
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
    _check_key(key)
    _check_fraction(density, "density")
    return mask_from_scores(_uniform_like(key, _scores(params, rule, lambda x: x)), density, scope)


def random_mask_like(key: jax.Array, mask: Mask) -> Mask:
    """A uniformly random mask with exactly as many weights kept in every leaf as `mask`: the
    layer-matched random baseline (global magnitude pruning leaves very different densities
    per layer, which a globally uniform random mask ignores)."""
    _check_key(key)
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


SCOPES = ("global", "layerwise", "uniform", "erk")


def mask_from_scores(scores: Any, density: Density, scope: str = "global") -> Mask:
    """Keep the highest-scoring fraction `density` of entries (scores: pytree with None leaves),
    over all entries (`scope="global"`) or in each leaf (`"layerwise"`/`"uniform"`: `density`
    in every leaf; `"erk"`: `erk_densities` of the leaves' shapes)."""
    _check_fraction(density, "density")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    leaves, treedef = jax.tree.flatten(scores, is_leaf=is_none)
    arrays = [x for x in leaves if x is not None]
    if not arrays:
        raise ValueError(f"nothing to prune: no prunable leaves (the default rule prunes leaves "
                         f"of 2 or more dimensions named {', '.join(WEIGHT_NAMES)}; pass rule=)")
    if scope == "erk":
        per_leaf = erk_densities([x.shape for x in arrays], _concrete(density))
        kept = [_top_n(x.ravel(), _n_keep(d, x.size)).reshape(x.shape)
                for x, d in zip(arrays, per_leaf)]
    elif scope in ("layerwise", "uniform"):
        kept = [_top_n(x.ravel(), _n_keep(density, x.size)).reshape(x.shape) for x in arrays]
    else:
        flat = jnp.concatenate([x.ravel() for x in arrays])
        kept = _split_like(_top_n(flat, _n_keep(density, flat.size)), arrays)
    kept = iter(kept)
    return jax.tree.unflatten(treedef, [None if x is None else next(kept) for x in leaves])


def erk_densities(shapes: list[tuple[int, ...]], density: float) -> list[float]:
    """Per-layer densities of the Erdos-Renyi-kernel distribution (Evci et al. 2020, "Rigging
    the Lottery"): layer l keeps a fraction eps * (sum of its dimensions) / (product of its
    dimensions), eps chosen so that the layers together keep `density` of all their weights; a
    layer the formula would fill past 1 is kept dense and eps is solved again for the rest."""
    density = _concrete(density)
    sizes = np.array([float(np.prod(s)) for s in shapes])
    raw = np.array([float(np.sum(s)) / float(np.prod(s)) for s in shapes])
    dense = np.zeros(len(shapes), bool)
    while True:
        budget = density * sizes.sum() - sizes[dense].sum()
        eps = budget / np.sum(raw[~dense] * sizes[~dense]) if np.any(~dense) else 0.0
        over = ~dense & (eps * raw > 1.0)
        if not over.any():
            return [1.0 if d else float(eps * r) for d, r in zip(dense, raw)]
        dense |= over


def layer_density_map(params: Params, density: float, distribution: str = "erk",
                      rule: Rule = default_rule) -> dict[str, float]:
    """{leaf path: the fraction of it to keep} for the prunable leaves of `params`, keeping
    `density` of all prunable weights: "uniform" (the same in every leaf) or "erk"
    (`erk_densities`). `magnitude_prune(params, density, scope=distribution)` prunes to it."""
    _check_fraction(density, "density")
    if distribution not in ("uniform", "erk"):
        raise ValueError(f"distribution must be 'uniform' or 'erk', got {distribution!r}")
    items = [(path_str(p), x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
             if rule(path_str(p), x)]
    if not items:
        raise ValueError(f"nothing to prune: no prunable leaves (the default rule prunes leaves "
                         f"of 2 or more dimensions named {', '.join(WEIGHT_NAMES)}; pass rule=)")
    d = _concrete(density)
    values = (erk_densities([np.shape(x) for _, x in items], d) if distribution == "erk"
              else [d] * len(items))
    return dict(zip((p for p, _ in items), values))


def _concrete(density: Density) -> float:
    _check_fraction(density, "density")
    if isinstance(density, jax.core.Tracer):
        raise TypeError("an ERK distribution is computed from shapes on the host: pass the "
                        "density as a number, not a traced value")
    return float(density)
