"""Masks on disk: a compressed .npz with every leaf's path and shape, written atomically."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxlottery.files import atomic_open
from jaxlottery.masks.core import Mask, Params, _check_mask, is_none, nest, path_str

FORMAT = "jaxlottery.mask"
FORMAT_VERSION = 1


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
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} file")
    entries = meta.get("leaves")
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("path"), str) and "shape" in e for e in entries):
        raise ValueError(f"{path}: corrupt {FORMAT} metadata (its list of leaves)")
    leaves = []
    for i, entry in enumerate(entries):
        x = arrays.get(f"leaf_{i}")
        if (entry["shape"] is None) != (x is None) or (x is not None and (
                list(x.shape) != entry["shape"] or x.dtype != np.bool_)):
            raise ValueError(f"{path}: corrupt entry for {entry['path']!r}")
        leaves.append(None if x is None else jnp.asarray(x))
    paths = [e["path"] for e in entries]
    if like is None:
        return nest(dict(zip(paths, leaves)))
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
