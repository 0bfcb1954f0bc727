"""Per-epoch training checkpoints (orbax) and atomic result files.

A training stage keeps its checkpoints in its own folder, one orbax step per saved iteration,
each holding the state stack and a small JSON of progress (the history so far). Orbax writes
a step into a temporary folder and renames it when complete, so a kill during a save leaves
the previous step as the newest complete one. Data keys are never stored: they are derived
from the configuration's seed, so a resumed run recomputes them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxlottery.files import atomic_open, atomic_write_bytes


class Checkpoints:
    """The checkpoints of one training stage: save every epoch, resume from the newest."""

    def __init__(self, directory: str, keep: int = 2):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict) -> None:
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        self._manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict] | None:
        """(state, meta) of `step` (default: newest), shaped like `like`; None if none saved."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def close(self) -> None:
        self._manager.close()


def write_json(path: str, obj: Any) -> None:
    """JSON file written atomically (temp file, fsync, rename)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=_jsonable) + "\n").encode())


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def save_arrays(path: str, tree: Any) -> None:
    """A pytree of arrays as an .npz (leaves in flatten order), atomically."""
    with atomic_open(path) as f:
        np.savez(f, *[np.asarray(x) for x in jax.tree.leaves(tree)])


def load_arrays(path: str, like: Any) -> Any:
    """Read `save_arrays` output back into the structure of `like`."""
    with np.load(path, allow_pickle=False) as f:
        leaves = [f[f"arr_{i}"] for i in range(len(f.files))]
    treedef = jax.tree.structure(like)
    if treedef.num_leaves != len(leaves):
        raise ValueError(f"{path}: holds {len(leaves)} arrays, expected {treedef.num_leaves}")
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.generic, jax.Array)) and np.ndim(x) == 0:
        return np.asarray(x).item()
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
