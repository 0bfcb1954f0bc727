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
    """A named way to compose k masks, as a rule on the members' ranks.

    Each member ranks the weights (0 = kept first); a composed mask at per-member count c keeps
    the weights whose composed rank is below c, so a rule is `rank(ranks, weights) -> composed`
    for ranks of shape (k, n) and optional per-member weights (k,) (such as the siblings' test
    accuracies; None = equal). The threshold rules are `at_least(k)`: keep the weights kept
    in at least m of the k members (composed rank = the m-th smallest member rank); give
    either `at_least` or `rank`. `min_k` is the smallest k' it is composed for (a majority of
    2 would be an intersection); `label`, `color` and `marker` are how tables and figures show
    it."""

    name: str
    at_least: Callable[[int], int] | None = None
    min_k: int = 1
    label: str = ""
    color: str = "tab:red"
    marker: str = "x"
    rank: Callable[[jax.Array, jax.Array | None], jax.Array] | None = None

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise ValueError(f"a composition's name must be an identifier, got {self.name!r}")
        if (self.at_least is None) == (self.rank is None):
            raise ValueError(f"composition {self.name!r}: give exactly one of at_least and rank")
        if not self.label:
            object.__setattr__(self, "label", self.name)

    def composed_rank(self, ranks: jax.Array, weights: jax.Array | None = None) -> jax.Array:
        """The (n,) composed rank of (k, n) member ranks (a weight kept by a member at count c
        has rank < c there)."""
        if self.rank is not None:
            return self.rank(ranks, weights)
        return jnp.sort(ranks, axis=0)[self.at_least(ranks.shape[0]) - 1]


COMPOSITIONS: dict[str, Composition] = {}


def register(composition: Composition) -> Composition:
    """Add (or replace) a named composition; every part of jaxlottery picks it up by name."""
    COMPOSITIONS[composition.name] = composition
    return composition


def weighted_majority(ranks: jax.Array, weights: jax.Array | None) -> jax.Array:
    """Kept where members holding more than half of the total weight keep it: the composed
    rank is the rank at which the members' cumulative weight (in order of their ranks) first
    exceeds half. Equal weights give the majority vote, (k // 2 + 1)-th smallest rank."""
    k = ranks.shape[0]
    w = jnp.ones((k,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    order = jnp.argsort(ranks, axis=0, stable=True)  # (k, n): members from lowest rank up
    cumulative = jnp.cumsum(w[order], axis=0)
    first = jnp.argmax(cumulative > 0.5 * jnp.sum(w), axis=0)  # (n,)
    return jnp.take_along_axis(jnp.take_along_axis(ranks, order, axis=0), first[None], 0)[0]


register(Composition("union", lambda k: 1, color="tab:blue", marker="o"))
register(Composition("intersection", lambda k: k, color="tab:orange", marker="s"))
register(Composition("vote", lambda k: k // 2 + 1, min_k=3, color="tab:green", marker="^"))
register(Composition("weighted_vote", rank=weighted_majority, min_k=3,
                     label="accuracy-weighted vote", color="tab:purple", marker="v"))


def composition_of(how: str | int) -> Composition:
    """The composition named `how`, or for an int m the rule "kept in at least m of k"."""
    if isinstance(how, str):
        if how not in COMPOSITIONS:
            raise ValueError(f"unknown composition how={how!r}; registered: {sorted(COMPOSITIONS)}")
        return COMPOSITIONS[how]
    return Composition(f"at_least_{how}", lambda k: how)


def at_least(how: str | int, k: int) -> int | None:
    """The threshold m ("kept in at least m of k") of a threshold composition of k masks (union
    1, intersection k, vote a majority), `how` itself when it is already a number, None for a
    rule that is not a threshold (a weighted vote)."""
    if isinstance(how, str):
        r = composition_of(how)
        return None if r.at_least is None else r.at_least(k)
    _check_at_least(how, k, "how")
    return how


def combine(ms: Sequence[Mask] | Mask, how: str | int,
            weights: Sequence[float] | jax.Array | None = None) -> Mask:
    """The k masks composed by a rule by name (or m of k): a kept weight has member rank 0, a
    pruned one 1, and the composed mask keeps composed rank < 1. `weights`: one per member,
    for the rules that read them."""
    s = _as_stack(ms)
    k = stack_size(s)
    r = composition_of(how)
    if r.at_least is not None:
        _check_at_least(r.at_least(k), k, "how")
    w = _check_weights(weights, k)
    return _reduce(s, lambda x: r.composed_rank(jnp.where(x.reshape(k, -1), 0, 1), w)
                   .reshape(x.shape[1:]) < 1)


def _check_weights(weights, k: int) -> jax.Array | None:
    if weights is None:
        return None
    w = jnp.asarray(weights, jnp.float32)
    if isinstance(w, jax.core.Tracer):  # under jit: the shape is checked, the values taken as given
        ok = w.shape == (k,)
    else:
        ok = w.shape == (k,) and bool(jnp.all(jnp.isfinite(w)) & jnp.all(w >= 0) & (jnp.sum(w) > 0))
    if not ok:
        raise ValueError(f"weights must be {k} finite nonnegative numbers (one per member, not "
                         f"all 0), got {weights!r}")
    return w


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
            exact: bool = False,
            weights: Sequence[float] | jax.Array | None = None) -> tuple[Mask, jax.Array]:
    """Matched-density composition of the k siblings' global magnitude masks.

    Finds the per-sibling density d such that composing (a name in `COMPOSITIONS`, such as
    `"union"` or `"intersection"`, or an int m for "kept in at least m of k") the k masks
    `magnitude_prune(sibling, d)` keeps as close as possible to `round(density * n)` weights.
    Union prunes each sibling harder than the target, intersection softer. `weights` (one per
    sibling, e.g. their accuracies) go to the rules that read them (`weighted_vote`). The
    params may be any nonnegative scores (`jaxlottery.criteria`). Returns `(mask, d)`.

    The search is exact rather than a bisection: with r_s(w) the rank of weight w in sibling s,
    the composed mask at per-sibling count c is {w : composed rank(r_1(w), ..., r_k(w)) < c}
    (for "at least m of k", the m-th smallest r_s(w)), so the best c is read off the sorted
    composed ranks. For the threshold rules counts move in steps of at most k weights, so the
    achieved density is within k / n of the target.

    `exact=True` keeps exactly `round(density * n)` weights: the weights that enter at the
    boundary count are taken in order of their summed rank over the siblings (then position).
    The mask is then vote(magnitude_prune(p_s, d)) at the smallest d reaching the target, minus
    at most k - 1 boundary weights. Iterative pruning uses it to keep 0.8^L exactly.
    """
    _check_fraction(density, "density")
    s = _as_stack(params_stack)
    k = stack_size(s)
    composition = composition_of(how)
    if composition.at_least is not None:
        _check_at_least(composition.at_least(k), k, name="how")
    w = _check_weights(weights, k)
    _check_finite(s)
    leaves, treedef = jax.tree.flatten(_scores(s, rule, jnp.abs), is_leaf=is_none)
    arrays = [x for x in leaves if x is not None]
    flat = jnp.concatenate([x.reshape(k, -1) for x in arrays], axis=1)  # (k, n)
    n = flat.shape[1]
    ranks = jax.vmap(_ranks)(flat)
    composed_rank = composition.composed_rank(ranks, w)  # (n,)
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
