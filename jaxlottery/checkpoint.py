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
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxlottery.files import atomic_open, fault_point
from jaxlottery.files import read_json, write_json  # noqa: F401 - checkpoint's API, as before
from jaxlottery.masks.core import nest, path_str
from jaxlottery.sharding import fully_addressable


class Checkpoints:
    """The checkpoints of one training stage: save every epoch, resume from the newest."""

    def __init__(self, directory: str, keep: int = 2):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def latest_step(self) -> int | None:
        """The newest complete step (after any save in flight has finished)."""
        self.wait()
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Start saving `state` and `meta` as `step`; returns before the files are written.

        The state is copied to the host first (the only part the device waits for), so the
        training program may reuse (donate) its buffers at once; the files are written in a
        background thread, into a temporary folder renamed when complete. A save waits for the
        previous one to finish; `wait()` or `close()` waits for the last."""
        # Arrays spread over several processes are left to orbax, which copies its shards.
        host = jax.tree.map(lambda x: jax.device_get(x) if fully_addressable(x) else x, state)
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(json.loads(json.dumps(meta)))))
        fault_point("checkpoint")  # the save is in flight

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None,
                log: Callable[[str], None] = print) -> tuple[Any, dict] | None:
        """(state, meta) of `step` (default: the newest readable one), shaped like `like`;
        None if there is none. A step that cannot be read (cut by a kill, a bad copy) is
        reported by path and the next older one is tried."""
        steps = [step] if step is not None else sorted(self._manager.all_steps(), reverse=True)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        for s in steps:
            try:
                out = self._manager.restore(s, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
            except Exception as e:  # noqa: BLE001 - any unreadable step: fall back
                log(f"checkpoint {os.path.join(self.directory, str(s))} is unreadable "
                    f"({type(e).__name__}: {str(e)[:200]}); trying an older one")
                continue
            _check_shapes(out["state"], like, os.path.join(self.directory, str(s)))
            return out["state"], out["meta"]
        return None

    def close(self) -> None:
        self._manager.close()


def _check_shapes(state: Any, like: Any, where: str) -> None:
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(like)):
        if np.shape(a) != np.shape(b):
            raise ValueError(f"{where}: holds shape {np.shape(a)} where {np.shape(b)} is expected")


def readable(path: str, log: Callable[[str], None] = print, require: tuple[str, ...] = ()) -> bool:
    """Whether a finished-stage file exists and reads back whole: a .json parses to a dict or
    a list (a dict holding the keys `require`), every array of an .npz decompresses with a good
    CRC. A file that does not (truncated, empty, `null`, another layout) is reported by path and
    moved aside to `<path>.corrupt`, so the stage that wrote it runs again."""
    if not os.path.exists(path):
        return False
    try:
        if path.endswith(".json"):
            obj = read_json(path)
            if not isinstance(obj, (dict, list)):
                raise ValueError(f"holds {type(obj).__name__}, not a dict or a list")
            missing = [k for k in require if not isinstance(obj, dict) or k not in obj]
            if missing:
                raise ValueError(f"has no {', '.join(missing)}")
        elif path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                for name in f.files:
                    f[name]
        return True
    except Exception as e:  # noqa: BLE001 - unreadable for any reason: recompute
        log(f"{path} is unreadable ({type(e).__name__}: {str(e)[:200]}); moved to "
            f"{path}.corrupt and recomputing")
        os.replace(path, path + ".corrupt")
        return False


def save_arrays(path: str, tree: Any) -> None:
    """A pytree of arrays as an .npz keyed by each leaf's path (`params/conv_0/kernel`), so the
    file reads back without the tree it came from (`load_arrays`, `jaxlottery.load_run`);
    written atomically."""
    items = jax.tree_util.tree_flatten_with_path(tree)[0]
    keys = [path_str(p) or "leaf" for p, _ in items]
    if len(set(keys)) != len(keys) or any(k.startswith("arr_") for k in keys):
        raise ValueError(f"{path}: leaf paths must be unique and not start with 'arr_' "
                         f"(the older positional layout), got {keys[:5]}...")
    with atomic_open(path) as f:
        np.savez(f, **{k: np.asarray(x) for k, (_, x) in zip(keys, items)})


def load_arrays(path: str, like: Any = None, as_numpy: bool = False) -> Any:
    """Read a `save_arrays` file: without `like` as nested dicts from its leaf paths; with `like`
    in that tree's structure, each leaf found by its path (a ValueError names the first path
    that differs). Files of earlier versions hold positional arrays (`arr_0`, ...) and need
    `like`. Host numpy arrays with `as_numpy` (for slicing without a compiled program per
    shape), else device arrays."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    convert = (lambda x: x) if as_numpy else jax.numpy.asarray
    positional = all(k == f"arr_{i}" for i, k in enumerate(arrays))
    if like is None:
        if positional and arrays:
            raise ValueError(f"{path}: an earlier version's positional arrays; pass like= (a tree "
                             "of the same structure), as jaxlottery.load_run does")
        return nest({k: convert(x) for k, x in arrays.items()})
    items, treedef = jax.tree_util.tree_flatten_with_path(like)
    if len(items) != len(arrays):
        raise ValueError(f"{path}: holds {len(arrays)} arrays, expected {len(items)}")
    if positional:
        leaves = [arrays[f"arr_{i}"] for i in range(len(items))]
    else:
        keys = [path_str(p) or "leaf" for p, _ in items]
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise ValueError(f"{path}: no array for {missing[0]!r} (it holds "
                             f"{', '.join(list(arrays)[:3])}, ...)")
        leaves = [arrays[k] for k in keys]
    return jax.tree.unflatten(treedef, [convert(x) for x in leaves])
