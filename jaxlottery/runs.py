"""A run directory read back into Python in one call: `load_run(path)`.

    run = jaxlottery.load_run("runs/0a1b2c3d4e5f")
    run.results["consistency"]           # every number (None until the run has finished)
    run.config                           # the Config it ran with
    w = run.siblings(0)                  # {"params", "batch_stats"}, leaves stacked over k
    m = run.masks(0, 0.107)              # the k siblings' one-shot masks (a stack)
    logits = run.model.apply(stacks.index(w, 0), images, train=False)   # sibling 0

Weights come back as parameter pytrees (nested dicts of arrays), read by their leaf paths; run
directories written before weights carried their paths are read through the model's own tree.
Nothing is loaded until it is asked for.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from jaxlottery import checkpoint, masks, models, paths
from jaxlottery.config import Config, ConfigError


@dataclasses.dataclass(frozen=True)
class Run:
    """One run directory: its configuration, its results (None while unfinished) and readers
    for the weights and masks each stage wrote."""

    path: str
    config: Config
    results: dict | None

    @property
    def finished(self) -> bool:
        return self.results is not None

    @property
    def model(self):
        """The Flax module the run trained (its `--model` for its classes)."""
        return models.create(self.config.model, self._classes(), self.config.compute_dtype)

    def spawn(self, t: int | str, init: int = 0) -> dict:
        """W_t: the shared network's variables at spawn point t (an epoch of the spawn epochs,
        or "<s>it" for one of the spawn iterations), of initialization `init` (`--inits`)."""
        return self._weights(self._in(init, paths.spawn_weights(self._spawn_point(t))))

    def siblings(self, t: int | str, init: int = 0) -> dict:
        """The final variables of the k siblings spawned at t, stacked on axis 0
        (`stacks.index(w, i)` is sibling i)."""
        return self._weights(self._in(init, paths.final(paths.siblings(self._spawn_point(t)))))

    def independent(self, init: int = 0) -> dict:
        """The final variables of the independently initialized controls, stacked."""
        return self._weights(self._in(init, paths.final(paths.INDEPENDENT)))

    def masks(self, t: int | str, density: float, of: str = "siblings", init: int = 0) -> masks.Mask:
        """One-shot masks at a density of `config.densities`: the k siblings spawned at t (a
        stack), W_t's own (`of="spawn"`), or the independent inits' (`of="independent"`)."""
        i = self._density_index(density)
        if of == "independent":
            file = paths.independent_masks(i)
        elif of in ("siblings", "spawn"):
            file = paths.sibling_masks(of, self._spawn_point(t), i)
        else:
            raise ValueError(f"of must be 'siblings', 'spawn' or 'independent', got {of!r}")
        return masks.load(self._file(self._in(init, file)))

    def composed(self, t: int) -> tuple[masks.Mask, list[dict]]:
        """The masks retrained from W_t (a stack: composed, baselines, random ...) and one dict
        per mask saying what it is (method, k, densities)."""
        if t not in self.config.retrain_spawn_epochs:
            raise ValueError(f"masks are retrained from epochs {list(self.config.retrain_spawn_epochs)}"
                             f", not {t}")
        meta = checkpoint.read_json(self._file(paths.composition(t, "meta")))
        return masks.load(self._file(paths.composition(t, "masks"))), meta

    # --- helpers -------------------------------------------------------------------------

    def _file(self, relative: str) -> str:
        path = os.path.join(self.path, relative)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: not written yet (the run has not reached that "
                                    "stage)")
        return path

    def _spawn_point(self, t: int | str) -> int | str:
        names = [name for name, _ in self.config.spawn_points()]
        if t not in names or isinstance(t, bool):
            its = self.config.spawn_iterations
            raise ValueError(f"the run spawned siblings at epochs {list(self.config.spawn_epochs)}"
                             + (f" and iterations {list(its)} (named '<s>it')" if its else "")
                             + f", not {t!r}")
        return t

    def _in(self, init: int, relative: str) -> str:
        """A file of initialization `init`: the run directory's own for 0, `inits/<j>/` after."""
        if not isinstance(init, int) or isinstance(init, bool) or not 0 <= init < self.config.inits:
            raise ValueError(f"the run has {self.config.inits} initialization(s) (--inits): init "
                             f"must be in 0..{self.config.inits - 1}, got {init!r}")
        return os.path.join(paths.replicate(init), relative) if init else relative

    def _density_index(self, density: float) -> int:
        for i, d in enumerate(self.config.densities):
            if np.isclose(d, density, rtol=1e-3):
                return i
        shown = ", ".join(f"{d:.4g}" for d in self.config.densities)
        raise ValueError(f"the run pruned at densities {shown}, not {density:g}")

    def _weights(self, relative: str) -> dict:
        path = self._file(relative)
        try:
            return checkpoint.load_arrays(path)
        except ValueError:  # an earlier version's positional layout: the model's tree gives the
            like = jax.eval_shape(lambda: models.init(
                jax.random.key(0), self.config.model, self._classes(),
                self._image_shape()))  # structure (shapes come from the file)
            return checkpoint.load_arrays(path, like)

    def _dataset(self) -> dict:
        return (self.results or {}).get("dataset") or {}

    def _classes(self) -> int:
        if "num_classes" in self._dataset():
            return int(self._dataset()["num_classes"])
        return int(self._mask_shape("dense/kernel")[-1])

    def _image_shape(self) -> tuple[int, int, int]:
        if "image_shape" in self._dataset():
            return tuple(self._dataset()["image_shape"])
        channels = int(self._mask_shape("stem_conv/kernel")[-2])
        return (32, 32, channels)  # the spatial size does not change any weight's shape

    def _mask_shape(self, suffix: str) -> tuple[int, ...]:
        """A leaf's shape from the first one-shot mask file (they hold every path's shape), for
        old run directories that have no results.json yet."""
        folder = os.path.join(self.path, "masks")
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        if not names:
            raise ValueError(f"{self.path}: an unfinished run of an earlier version: its weights "
                             "can be read once its masks stage has run")
        m = masks.load(os.path.join(folder, names[0]))
        items = jax.tree_util.tree_flatten_with_path(m, is_leaf=masks.is_none)[0]
        return next(np.shape(x) for p, x in items if masks.path_str(p).endswith(suffix))


def load_run(path: str | os.PathLike) -> Run:
    """The run directory at `path` (a `<workdir>/<run id>` folder, or its config.json or
    results.json): configuration, results if finished, and readers for weights and masks."""
    path = os.fspath(path)
    if os.path.isfile(path):
        path = os.path.dirname(path) or "."
    config_path = os.path.join(path, paths.CONFIG)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{path}: not a run directory (no {paths.CONFIG}); a run "
                                "directory is <workdir>/<run id>/")
    if not checkpoint.readable(config_path, lambda _: None, require=("config",)):
        raise ValueError(f"{config_path}: unreadable or not a jaxlottery run's configuration")
    record = checkpoint.read_json(config_path)
    try:
        config = Config.from_dict(record["config"])
    except (ConfigError, TypeError) as e:
        raise ValueError(f"{config_path}: written by jaxlottery {record.get('jaxlottery', '?')} "
                         f"with settings this version does not know ({e})") from None
    results_path = os.path.join(path, paths.RESULTS)
    results = (checkpoint.read_json(results_path)
               if checkpoint.readable(results_path, lambda _: None, require=("config",)) else None)
    return Run(path, config, results)
