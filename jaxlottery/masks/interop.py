"""Masks made elsewhere, in this library's conventions (`convert`), back into Flax NNX's
(`to_nnx`), and into any optax optimizer (`keep_pruned_zero`).

jaxpruner keeps masks as uint8 0/1 arrays; Flax NNX keeps parameters (and so masks built with
`jax.tree.map` over them) in `nnx.State` pytrees whose leaf paths end in the Variable's
`value`. The mask functions here take NNX states as they are (the default rule reads the name
before `value`); integer masks need `convert`, since `~` and `&` mean other things on integers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlottery.masks.core import Mask, _check_mask, is_none, nest, path_str


def convert(tree: Any) -> Mask:
    """`tree` as a mask of plain nested dicts with bool leaves: integer or bool leaves holding
    only 0 and 1 become bool (a traced leaf is taken as given: nonzero is kept), and a Flax NNX
    state (every leaf path ending in `value`) becomes nested dicts without the `value` level, as
    `nnx.State.to_pure_dict()` gives. `None` leaves stay `None`. A float leaf, or an integer one
    holding other values, raises ValueError naming it (scores are not a mask:
    `masks.mask_from_scores` makes one)."""
    items, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
    paths = [path_str(p) for p, _ in items]
    leaves = [_as_bool(path, x) for path, (_, x) in zip(paths, items)]
    if not items or not all(p.endswith("/value") for p in paths):
        return jax.tree.unflatten(treedef, leaves)
    # An NNX state: the same tree without the Variables' `value` level.
    return nest({path[:-len("/value")]: x for path, x in zip(paths, leaves)})


def _as_bool(path: str, x: Any) -> Any:
    if x is None:
        return None
    dtype = getattr(x, "dtype", None)
    if dtype is None or not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise ValueError(f"leaf {path!r} is {dtype or type(x).__name__}, not a 0/1 mask; a mask "
                         "from scores: masks.mask_from_scores")
    if dtype == np.bool_:
        return x
    if not isinstance(x, jax.core.Tracer):
        values = np.unique(np.asarray(x))
        if not set(values.tolist()) <= {0, 1}:
            raise ValueError(f"leaf {path!r} holds {values[:5].tolist()}..., not only 0 and 1")
    return jnp.asarray(x) != 0


def to_nnx(mask: Mask, like: Any) -> Any:
    """A mask of plain nested dicts (what `convert` returns) in the structure of the Flax NNX
    state `like` (`nnx.state(model, nnx.Param)`): each Variable's value is the mask's leaf at
    its path, None where the mask has none, so `convert(to_nnx(m, state)) == m`. ValueError if
    `like` is not an NNX state, or the mask has a path or shape the state lacks."""
    _check_mask(mask)
    flat = {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(mask, is_leaf=is_none)[0]}
    items, treedef = jax.tree_util.tree_flatten_with_path(like)
    paths = [path_str(p) for p, _ in items]
    if not items or not all(p.endswith("/value") for p in paths):
        raise ValueError("`like` is not a Flax NNX state (its leaf paths do not end in `value`); "
                         "pass nnx.state(model, nnx.Param)")
    paths = [p[:-len("/value")] for p in paths]
    extra = sorted(p for p, x in flat.items() if x is not None and p not in set(paths))
    if extra:
        raise ValueError(f"the mask has leaves the state lacks: {extra[:3]}")
    for path, (_, x) in zip(paths, items):
        m = flat.get(path)
        if m is not None and np.shape(m) != np.shape(x):
            raise ValueError(f"mask leaf {path!r} has shape {np.shape(m)}, the state's "
                             f"{np.shape(x)}")
    return jax.tree.unflatten(treedef, [flat.get(p) for p in paths])


def keep_pruned_zero(mask: Mask):
    """An optax transformation that keeps the pruned weights of `mask` at exactly 0 whatever
    the optimizer before it does (momentum, Adam's moments, decoupled weight decay): last in a
    chain, it turns each pruned entry's update into -param, so param + update = 0 there, and
    leaves kept entries' updates as they are. Needs the params in `update(grads, state, params)`
    and a mask with the params' structure (None: never pruned).

        opt = optax.chain(optax.adamw(1e-3), masks.keep_pruned_zero(mask))
    """
    import optax

    _check_mask(mask)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("keep_pruned_zero needs the params: call "
                             "optimizer.update(grads, state, params)")
        return jax.tree.map(lambda m, u, p: u if m is None else jnp.where(m, u, -p),
                            mask, updates, params, is_leaf=is_none), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
