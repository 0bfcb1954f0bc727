"""Iterative magnitude pruning with rewinding, for one network and in parallel over siblings.

Lottery-ticket IMP (Frankle & Carbin 2019; with rewinding, Frankle et al. 2020): train, prune
a fraction `rate` of the remaining weights by global magnitude, rewind the survivors to their
values at iteration t, train again; level L keeps exactly round((1 - rate)^L * n) weights.

Parallel IMP (the motivation of Movva, Frankle & Carbin): at every level k siblings train
under the same mask with different data orders, and their masks are composed (union,
intersection or majority vote, at exactly the level's density) into the next level's mask.

These are pure functions of trained weights and masks; `jaxlottery.experiment` runs the
training between levels (its `imp` stage), and any training loop can drive them:

    mask = masks.ones_like(params)
    for level in range(1, levels + 1):
        params = train(rewound_params, mask)          # your training, masked
        mask = imp.prune_further(params, mask, imp.level_density(level))
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxlottery import masks

Mask = Any
Params = Any


def level_density(level: int, rate: float = 0.2) -> float:
    """The density of IMP level `level`: (1 - rate)^level (level 0 is the dense network)."""
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}")
    if not 0 < rate < 1:
        raise ValueError(f"rate must lie in (0, 1), got {rate}")
    return (1.0 - rate) ** level


def prune_further(params: Params, mask: Mask, density: float) -> Mask:
    """The next level of single-network IMP: keep the `density` fraction (of all prunable
    weights, exactly) of largest |w| among the weights `mask` still keeps. `params` may be any
    nonnegative scores instead (`jaxlottery.criteria`): they rank the same way."""
    if float(density) > float(masks.density(mask)):
        raise ValueError(f"density {density} is above the current mask's "
                         f"{float(masks.density(mask)):.4f}: IMP only prunes further")
    scores = jax.tree.map(lambda m, w: None if m is None else jnp.where(m, jnp.abs(w), -1.0),
                          mask, params, is_leaf=masks.is_none)
    return masks.mask_from_scores(scores, density)


def compose_further(params_stack: Params, mask: Mask, density: float,
                    how: str | int = "union") -> Mask:
    """The next level of parallel IMP: the k siblings (a stack, trained under `mask`) composed
    (`how`: a name in `masks.COMPOSITIONS`, or m of k) at exactly `density`
    (`masks.compose(..., exact=True)`). A pruned weight is exactly zero
    in every sibling, so it ranks below every surviving weight and cannot come back. The stack
    may be nonnegative scores instead of weights (`jaxlottery.criteria`); a survivor whose
    score is exactly 0 in every sibling ties with the pruned weights, and the result is kept
    inside `mask` (one fewer weight per such tie, never a pruned one back)."""
    if float(density) > float(masks.density(mask)):
        raise ValueError(f"density {density} is above the current mask's "
                         f"{float(masks.density(mask)):.4f}: IMP only prunes further")
    composed, _ = masks.compose(masks.apply(params_stack, mask), density, how=how, exact=True)
    return masks.intersection([composed, mask])
