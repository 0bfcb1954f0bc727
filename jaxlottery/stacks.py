"""The sibling axis: a stack is a pytree whose array leaves share a leading axis of k members.

Anything that exists once per network (params, batch statistics, optimizer state, masks, data
keys, metrics) can be a stack; training k siblings and retraining k masks map one function over
that axis. `None` leaves (the unprunable entries of a mask) are kept as they are by every
function here, and the functions work on device arrays and host numpy arrays alike.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def is_none(x: Any) -> bool:
    """`is_leaf` for tree maps that must see `None` leaves (masks' unprunable entries)."""
    return x is None


def _map(fn, tree: Any) -> Any:
    return jax.tree.map(lambda x: None if x is None else fn(x), tree, is_leaf=is_none)


def stack(trees: Sequence[Any]) -> Any:
    """Single trees (masks, params, states) stacked along a new leading axis."""
    trees = list(trees)
    if not trees:
        raise ValueError("expected at least one tree to stack, got none")
    return jax.tree.map(lambda *xs: None if xs[0] is None else jnp.stack(xs), *trees,
                        is_leaf=is_none)


def unstack(s: Any) -> list[Any]:
    """A stack split into a list of its members."""
    return [index(s, i) for i in range(size(s))]


def size(s: Any) -> int:
    """k, the common leading axis of a stack's array leaves (ValueError if there is none)."""
    leaves = [x for x in jax.tree.leaves(s) if x is not None]
    if not leaves:
        raise ValueError("expected a stack with at least one array leaf")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"not a stack: leaves have leading axes {sorted(map(str, sizes))}; "
                         "pass a list, or arrays with a common leading sibling axis")
    return sizes.pop()


def index(s: Any, i: int) -> Any:
    """Member i of a stack."""
    return _map(lambda x: x[i], s)


def take(s: Any, ids: Iterable[int]) -> Any:
    """Members `ids` (in that order, repeats allowed) of a stack, as a stack."""
    ids = np.asarray(list(ids), dtype=np.int64)
    return _map(lambda x: x[ids], s)


def first(s: Any, n: int) -> Any:
    """The first n members of a stack, as a stack (a slice: no copy on the host)."""
    return _map(lambda x: x[:n], s)


def pad(s: Any, n: int) -> Any:
    """The stack grown to n members with copies of its last one (inert padding: one compiled
    shape for stacks of different sizes, or a multiple of the device count)."""
    def one(x):
        extra = n - x.shape[0]
        return x if extra <= 0 else jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])
    return _map(one, s)


def unpad(s: Any, k: int) -> Any:
    """The stack without its padding: its first k members."""
    return first(s, k)
