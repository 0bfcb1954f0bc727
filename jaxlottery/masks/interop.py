"""Masks made elsewhere, in this library's conventions: `convert`.

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

from jaxlottery.masks.core import Mask, is_none, nest, path_str


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
