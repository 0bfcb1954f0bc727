"""Combining masks: union, intersection, "kept in at least m of k", the registry of named
compositions, and matched-density composition of sibling networks."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxlottery.masks.core import (Density, Mask, Params, Rule, _as_stack, _check_at_least,
                                   _check_finite, _check_fraction, _n_keep, _ranks,
                                   _ranks_of_order, _reduce, _scores, _split_like, default_rule,
                                   is_none, stack_size)

# --- named compositions: the one registry that validation, IMP, the pipeline and the report read


@dataclasses.dataclass(frozen=True)
class Composition:
    """A named way to compose k masks: keep the weights kept in at least `at_least(k)` of them.

    `min_k` is the smallest k' it is composed for (a majority of 2 would be an intersection);
    `label`, `color` and `marker` are how tables and figures show it."""

    name: str
    at_least: Callable[[int], int]
    min_k: int = 1
    label: str = ""
    color: str = "tab:red"
    marker: str = "x"

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise ValueError(f"a composition's name must be an identifier, got {self.name!r}")
        if not self.label:
            object.__setattr__(self, "label", self.name)


COMPOSITIONS: dict[str, Composition] = {}


def register(composition: Composition) -> Composition:
    """Add (or replace) a named composition; every part of jaxlottery picks it up by name."""
    COMPOSITIONS[composition.name] = composition
    return composition


register(Composition("union", lambda k: 1, color="tab:blue", marker="o"))
register(Composition("intersection", lambda k: k, color="tab:orange", marker="s"))
register(Composition("vote", lambda k: k // 2 + 1, min_k=3, color="tab:green", marker="^"))


def at_least(how: str | int, k: int) -> int:
    """The threshold m ("kept in at least m of k") of a named composition of k masks (union 1,
    intersection k, vote a majority), or `how` itself when it is already a number."""
    if isinstance(how, str):
        if how not in COMPOSITIONS:
            raise ValueError(f"unknown composition how={how!r}; registered: {sorted(COMPOSITIONS)}")
        return COMPOSITIONS[how].at_least(k)
    _check_at_least(how, k, "how")
    return how


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


def compose(params_stack: Params | Sequence[Params], density: Density,
            how: str | int = "union", rule: Rule = default_rule,
            exact: bool = False) -> tuple[Mask, jax.Array]:
    """Matched-density composition of the k siblings' global magnitude masks.

    Finds the per-sibling density d such that composing (a name in `COMPOSITIONS`, such as
    `"union"` or `"intersection"`, or an int m for "kept in at least m of k") the k masks `magnitude_prune(sibling, d)` keeps as close as
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
    m = at_least(how, k)
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
