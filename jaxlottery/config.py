"""One configuration for the whole study, named presets, validation, and the run's address.

`Config()` is the paper protocol (PROTOCOL.md). A run lives in `<workdir>/<run_id>`, where the
id hashes only the fields that differ from their defaults (OpenLTH's habit): adding an option
later, with a default, never renames an old run. Fields that change where or how fast a run
goes, not what it computes (data_dir, strategy, chunk sizes), are left out of the hash.

Presets (`preset(name, **overrides)`, the bundles in `jaxlottery.presets`): paper (the
default), quick, smoke, imprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import numpy as np

from jaxlottery import imprint
from jaxlottery.masks import COMPOSITIONS
from jaxlottery.presets import PRESETS

PAPER_DENSITIES = tuple(0.8**level for level in (3, 5, 7, 8, 10, 12, 14, 16, 18))
RETRAIN_DENSITIES = tuple(0.8**level for level in (5, 8, 12, 16))

class ConfigError(ValueError):
    """A setting that cannot run; the message names the flag."""


def option(default: Any, help: str, *, hashed: bool = True) -> Any:
    """A Config field with its help text (the CLI's --help) and whether it is part of the run
    id (`hashed=False`: it changes where or how fast a run goes, not what it computes)."""
    return dataclasses.field(default=default, metadata={"help": help, "hashed": hashed})


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a study; defaults are the paper protocol. Each field carries its help
    text; the command line, the run id and the training recipe are all made from the fields."""

    # Randomness: everything derives from this one seed (see jaxlottery.experiment).
    seed: int = option(0, "root seed: init, data orders, augmentation, subsets, random masks")
    # Data
    dataset: str = option("cifar10", "a TFDS name (cifar10, cifar100, mnist, fashion_mnist, "
                          "svhn_cropped), 'synthetic', or the path of an .npz file")
    data_dir: str | None = option(None, "where datasets are (or get) prepared; TFDS's default "
                                  "when none", hashed=False)
    train_subset: int | None = option(None, "train on a seeded random subset of this many "
                                      "images (none: all)")
    test_subset: int | None = option(None, "evaluate on a seeded random subset of this many "
                                     "test images")
    # Model
    model_depth: int = option(20, "ResNet depth 6n+2 (8, 14, 20, 32, 56)")
    model_width: int = option(16, "channels of the first stage (ResNet-20: 16)")
    # Recipe: every field of jaxlottery.train.Recipe, by the same name
    epochs: int = option(160, "length of the schedule; every network trains to its end")
    batch_size: int = option(128, "SGD batch size")
    lr: float = option(0.1, "initial learning rate")
    momentum: float = option(0.9, "SGD momentum (PyTorch form)")
    nesterov: bool = option(False, "Nesterov momentum (true/false)")
    weight_decay: float = option(1e-4, "added to every parameter's gradient before momentum")
    lr_drop_epochs: tuple[int, ...] = option((80, 120), "epochs at which the learning rate is "
                                             "multiplied by --lr_drop_factor")
    lr_drop_factor: float = option(0.1, "what the learning rate is multiplied by at each drop")
    augment: bool = option(True, "random flips and 4-pixel padded crops (true/false)")
    # Siblings and consistency
    k: int = option(10, "siblings spawned at every spawn point")
    spawn_epochs: tuple[int, ...] = option((0, 1, 2, 5), "epochs of shared training before the "
                                           "siblings split")
    densities: tuple[float, ...] = option(PAPER_DENSITIES, "fractions of weights kept, for the "
                                          "consistency analysis")
    independent_inits: int = option(3, "control networks trained from different inits (0 or >= 2)")
    spawn_iterations: tuple[int, ...] = option((), "more spawn points, in iterations of shared "
                                               "training (beside --spawn_epochs; the LMC paper "
                                               "finds ResNet-20 stable from about 2,000)")
    inits: int = option(1, "initializations the consistency design (shared training, siblings, "
                        "control) is repeated from, each derived from --seed; consistency gets a "
                        "spread and an interval over inits (composition uses the first)")
    snapshot_epochs: tuple[int, ...] | str = option(
        "auto", "epochs at which every sibling's (and control network's) one-shot masks are "
        "made and their consistency recorded during training; auto: about ten epochs spaced "
        "geometrically over the schedule; none: only at the end")
    # Composition and retraining
    k_values: tuple[int, ...] = option((2, 3, 5, 10), "numbers of siblings whose masks are "
                                       "composed (capped at --k)")
    compose: tuple[str, ...] = option(("union", "intersection", "vote"), "composition methods, "
                                      "by name in masks.COMPOSITIONS (vote: a majority of k')")
    retrain_spawn_epochs: tuple[int, ...] = option((0, 5), "spawn points whose composed masks "
                                                   "are retrained (rewound to W_t)")
    retrain_densities: tuple[float, ...] = option(RETRAIN_DENSITIES, "densities at which "
                                                  "composed and baseline masks are retrained")
    baseline_siblings: int = option(2, "single siblings pruned one-shot and retrained as the "
                                    "baseline (its replicate masks)")
    mask_replicates: int = option(2, "composed masks per method, k' and density, each from its "
                                  "own disjoint group of k' siblings (fewer where --k has no "
                                  "room: k' = k gives one): a verdict about a method needs "
                                  "several of its masks")
    positive_control: bool = option(True, "retrain a layer-matched random mask per one-shot "
                                    "baseline at every retraining density (random_matched): a "
                                    "design that cannot tell it from the magnitude masks "
                                    "supports no 'equivalent' (true/false)")
    natural_density: bool = option(False, "also retrain every composed mask at the density "
                                   "composing the siblings' one-shot masks gives it (union "
                                   "denser, intersection sparser than the target), each beside "
                                   "one-shot masks (and the control) at that same density: the "
                                   "paper's accuracy-sparsity reading (true/false)")
    retrain_seeds: int = option(1, "data orders every retrained mask and the dense control train "
                                "with; order r is the same for every mask (paired comparisons). "
                                "1: the noise of a difference is estimated from the dense "
                                "siblings' spread instead of measured")
    # Beyond the paper (the extra stages). Connectivity costs evaluations only and is on; the
    # baselines and IMP retrain networks and are off in the paper preset.
    random_baselines: tuple[str, ...] = option((), "extra retrained baselines: random (same "
                                               "global density), random_matched (same per-layer "
                                               "densities), reinit (the masks, fresh init)")
    lmc_pairs: int = option(1, "disjoint sibling pairs per spawn point for linear mode "
                            "connectivity (0: off)")
    lmc_points: int = option(31, "evenly spaced points on the line between two siblings (31 in "
                             "the LMC paper)")
    lmc_bn: tuple[str, ...] = option(("interpolate", "recompute"), "BatchNorm statistics on the "
                                     "path: interpolate, recompute (on training data), or both")
    imp_levels: int = option(0, "iterative magnitude pruning levels, rewound each time (0: off)")
    imp_rate: float = option(0.2, "fraction of the remaining weights IMP prunes per level "
                             "(level L keeps (1 - rate)^L)")
    imp_rewind_epoch: int | None = option(None, "epoch IMP rewinds to (a spawn epoch; none: the "
                                          "last retraining spawn point)")
    imp_k: int | None = option(None, "siblings trained per level of parallel IMP (none: k)")
    imp_compose: tuple[str, ...] = option(("union", "intersection", "vote"), "how parallel IMP "
                                          "composes its siblings' masks (names as --compose)")
    # Execution: where and how fast, not what (not hashed)
    strategy: str | None = option(None, "how siblings share a program: vmap, loop, map "
                                  "(lax.map) or separate (none: per backend)", hashed=False)
    steps_per_call: int | None = option(None, "training iterations per compiled call; 1 "
                                        "dispatches every iteration, a number >= an epoch's "
                                        "iterations makes each epoch one program (none: per "
                                        "backend)", hashed=False)
    shard: bool = option(True, "split sibling stacks over all devices (and hosts) when there "
                         "are several", hashed=False)
    checkpoint_every: int = option(1, "epochs between checkpoints of a training stage (always "
                                   "at its end)", hashed=False)
    retrain_chunk: int | None = option(None, "masks retrained together in one program (none: "
                                       "k on CPU; on a GPU/TPU as many as half its free memory "
                                       "holds)", hashed=False)
    eval_batch: int = option(1000, "test-set batch size", hashed=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):  # lists given for tuple options become tuples
            if isinstance(f.default, tuple):
                value = getattr(self, f.name)
                if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
                    raise ConfigError(f"--{f.name}: expected a list or tuple of values, got "
                                      f"{value!r}")
                object.__setattr__(self, f.name, tuple(value))
        if isinstance(self.snapshot_epochs, list):  # a list or "auto"
            object.__setattr__(self, "snapshot_epochs", tuple(self.snapshot_epochs))

    # --- derived ---------------------------------------------------------------------------

    def effective_k_values(self) -> tuple[int, ...]:
        """k values for composition, capped at k."""
        return tuple(sorted({min(v, self.k) for v in self.k_values}))

    def steps_per_epoch(self, n_train: int | None = None) -> int:
        """Iterations per epoch for `n_train` images (default: --train_subset, else CIFAR-10's
        50,000); the last batch is partial."""
        n = n_train or self.train_subset or 50_000
        return -(-n // self.batch_size)

    def spawn_points(self, n_train: int | None = None) -> list[tuple[int | str, int]]:
        """Every spawn point as (name, iteration), in order: epoch t is named t (an int), an
        iteration count s of --spawn_iterations is named "<s>it"."""
        spe = self.steps_per_epoch(n_train)
        points = [(t, t * spe) for t in self.spawn_epochs]
        points += [(f"{s}it", s) for s in self.spawn_iterations]
        return sorted(points, key=lambda p: (p[1], isinstance(p[0], str)))

    def late_spawn_points(self, n_train: int | None = None) -> list[int | str]:
        """Spawn points at or after the first learning-rate drop: not "a few epochs of shared
        pretraining" in the paper's sense (PROTOCOL.md, "What a run can test")."""
        if not self.lr_drop_epochs:
            return []
        first = min(self.lr_drop_epochs) * self.steps_per_epoch(n_train)
        return [name for name, step in self.spawn_points(n_train) if step >= first]

    def snapshots(self) -> tuple[int, ...]:
        """The epochs (1..epochs) at which sibling consistency is recorded during training:
        --snapshot_epochs, or with "auto" about ten epochs spaced geometrically from 1 to the
        end of the schedule."""
        if self.snapshot_epochs != "auto":
            return tuple(sorted(self.snapshot_epochs))
        points = np.unique(np.round(np.geomspace(1, self.epochs, min(10, self.epochs))))
        return tuple(int(e) for e in points)

    def imprint(self, n_train: int | None = None, from_epoch: float = 0) -> float:
        """`imprint.retained` of this run's recipe: the fraction of a weight's value at
        `from_epoch` still in it at the end of training."""
        spe = self.steps_per_epoch(n_train)
        return imprint.retained(self, n_train or self.train_subset or 50_000,
                                round(from_epoch * spe))

    def network_epochs(self, n_train: int | None = None) -> dict[str, float]:
        """Cost of each training stage in network-epochs (one network, one epoch); spawn points
        in iterations are converted at `n_train` images (default: see `steps_per_epoch`)."""
        n_masks = len(self.retrain_densities) * (
            self.masks_per_density() + self.baseline_siblings + self.control_masks()
            + len([m for m in self.random_baseline_methods() if m != "random_matched"])
            + self.natural_masks_per_density())
        n_masks = (n_masks + 1) * self.retrain_seeds  # + the dense control, per data order
        spe = self.steps_per_epoch(n_train)
        spawns = [step / spe for _, step in self.spawn_points(n_train)]
        design = {
            "shared": float(max(spawns)),
            "siblings": float(sum(self.k * (self.epochs - t) for t in spawns)),
            "independent": float(self.independent_inits * self.epochs),
        }
        cost = dict(design, retrain=float(sum(n_masks * (self.epochs - t)
                                              for t in self.retrain_spawn_epochs)))
        if self.inits > 1:
            cost["replicates"] = (self.inits - 1) * sum(design.values())
        if self.imp_levels:
            members = self.imp_levels * (1 + self.imp_siblings() * len(self.imp_chains()[2:]))
            members += self.imp_levels - 1  # one-shot baselines (level 1 is IMP's own level 1)
            cost["imp"] = float(members * (self.epochs - self.imp_rewind()))
        return cost

    def masks_per_density(self) -> int:
        """Composed masks per (spawn point, density): each method at each k' it is defined for,
        once per replicate group."""
        return sum(self.mask_groups(kk) for _, kk in self.compose_methods(self.effective_k_values()))

    def natural_masks_per_density(self) -> int:
        """Masks --natural_density adds per (spawn point, density): for each method and k', its
        replicate masks at their natural density, and the one-shot masks and controls retrained
        at that density beside them."""
        if not self.natural_density:
            return 0
        return sum(self.mask_groups(kk) + self.baseline_siblings + self.control_masks()
                   for _, kk in self.compose_methods(self.effective_k_values()))

    def mask_groups(self, k_prime: int) -> int:
        """Replicate masks of a method at k': disjoint groups of k' siblings, at most
        --mask_replicates, at least one."""
        return max(1, min(self.mask_replicates, self.k // k_prime))

    def control_masks(self) -> int:
        """Layer-matched random masks per (spawn point, density): one per one-shot baseline with
        --positive_control (or random_matched among --random_baselines), else none."""
        on = self.positive_control or "random_matched" in self.random_baselines
        return self.baseline_siblings if on else 0

    def compose_methods(self, ks: tuple[int, ...]) -> list[tuple[str, int]]:
        """(method, k') pairs that are composed: every method at every k' from its `min_k` on
        (`masks.COMPOSITIONS`; vote needs k' >= 3)."""
        return [(how, kk) for kk in ks for how in self.compose if kk >= _min_k(how)]

    def random_baseline_methods(self) -> list[str]:
        """Baseline masks retrained per (spawn point, density): random (global density),
        random_matched (the one-shot masks' per-layer densities: the positive control), and
        with "reinit" the one-shot mask and every composed mask at the largest k', from a
        fresh init."""
        out = ["random"] if "random" in self.random_baselines else []
        out += ["random_matched"] if self.control_masks() else []
        if "reinit" in self.random_baselines:
            ks = self.effective_k_values()[-1:]
            out += ["baseline_reinit"] + [f"{how}_reinit" for how, _ in self.compose_methods(ks)]
        return out

    def imp_rewind(self) -> int:
        """The epoch IMP rewinds to: --imp_rewind_epoch, else the last retraining spawn point."""
        if self.imp_rewind_epoch is not None:
            return self.imp_rewind_epoch
        return max(self.retrain_spawn_epochs) if self.retrain_spawn_epochs else self.spawn_epochs[-1]

    def imp_siblings(self) -> int:
        return self.k if self.imp_k is None else self.imp_k

    def imp_chains(self) -> list[str]:
        """IMP's chains: single-network IMP, one-shot at the same densities, and one parallel
        chain per composition method that is defined for imp_k siblings (vote needs 3)."""
        return ["imp", "oneshot"] + [how for how in self.imp_compose
                                     if self.imp_siblings() >= _min_k(how)]

    def run_id(self) -> str:
        """12 hex digits hashing the hashed fields that differ from their default (sorted JSON);
        a field in `INTRODUCED_AS` counts against the value it was introduced with, so a new
        default that changes the computation gives a new id."""
        default = type(self)()
        diff = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in NOT_HASHED
                and getattr(self, f.name) != INTRODUCED_AS.get(f.name, getattr(default, f.name))}
        text = json.dumps(diff, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def non_default(self) -> dict[str, Any]:
        default = type(self)()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown configuration fields: {unknown}")
        return cls(**{**{k: v for k, v in INTRODUCED_AS.items() if k in names}, **d})

    # --- validation ------------------------------------------------------------------------

    def validate(self) -> "Config":
        """Raise ConfigError naming the flag of the first setting that cannot run."""
        def need(ok: bool, flag: str, msg: str):
            if not ok:
                raise ConfigError(f"--{flag}: {msg}")

        need(_is_int(self.seed) and 0 <= self.seed < 2**32, "seed",
             f"must be an integer in 0..{2**32 - 1} (a 32-bit PRNG seed), got {self.seed!r}")
        for f in dataclasses.fields(self):
            values = getattr(self, f.name)
            if isinstance(values, tuple):
                repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
                need(not repeated, f.name, f"lists {', '.join(map(str, repeated))} more than "
                     "once; give each value once")
        need(_is_int(self.k) and self.k >= 1, "k", f"must be an integer >= 1, got {self.k!r}")
        need(self.k >= 2, "k", "needs at least 2 siblings to compare masks")
        try:
            check_architecture(self.model_depth, self.model_width, 10)
        except ValueError as e:
            flag = "model_depth" if "depth" in str(e) else "model_width"
            raise ConfigError(f"--{flag}: {e}") from None
        check_recipe(self)
        for flag, values in (("spawn_epochs", self.spawn_epochs),
                             ("retrain_spawn_epochs", self.retrain_spawn_epochs)):
            need(len(values) > 0 or flag == "retrain_spawn_epochs", flag,
                 "needs at least one spawn point")
            need(all(_is_int(t) and 0 <= t < self.epochs for t in values), flag,
                 f"spawn epochs must lie in 0..{self.epochs - 1} (the schedule has "
                 f"{self.epochs} epochs), got {list(values)}")
        need(all(_is_int(s) and s >= 1 for s in self.spawn_iterations), "spawn_iterations",
             f"must be positive integers (iterations of shared training), got "
             f"{list(self.spawn_iterations)}")
        need(_is_int(self.inits) and self.inits >= 1, "inits",
             f"must be an integer >= 1, got {self.inits!r}")
        snaps = self.snapshot_epochs
        need(snaps == "auto" or (isinstance(snaps, tuple) and all(
            _is_int(e) and 1 <= e <= self.epochs for e in snaps)), "snapshot_epochs",
             f"must be auto, none, or epochs in 1..{self.epochs} (the schedule has "
             f"{self.epochs} epochs), got {snaps if isinstance(snaps, str) else list(snaps)}")
        need(set(self.retrain_spawn_epochs) <= set(self.spawn_epochs), "retrain_spawn_epochs",
             f"must be among --spawn_epochs {list(self.spawn_epochs)}, got "
             f"{list(self.retrain_spawn_epochs)}")
        for flag, values in (("densities", self.densities),
                             ("retrain_densities", self.retrain_densities)):
            need(len(values) > 0, flag, "needs at least one density")
            need(all(isinstance(d, (int, float)) and 0 < d <= 1 for d in values), flag,
                 f"densities (fractions kept) must lie in (0, 1], got {list(values)}")
        need(len(self.k_values) > 0 and all(_is_int(v) and v >= 1 for v in self.k_values),
             "k_values", f"must be integers >= 1, got {list(self.k_values)}")
        need(max(self.k_values) <= self.k, "k_values",
             f"values above --k={self.k} are not possible, got {list(self.k_values)}")
        for flag in ("compose", "imp_compose"):
            bad = [c for c in getattr(self, flag) if c not in COMPOSITIONS]
            need(not bad, flag, f"unknown methods {bad}; choose from {', '.join(COMPOSITIONS)}")
        need(_is_int(self.independent_inits) and self.independent_inits >= 0, "independent_inits",
             f"must be an integer >= 0, got {self.independent_inits!r}")
        need(self.independent_inits != 1, "independent_inits",
             "needs 0 (off) or at least 2 networks to compare")
        need(_is_int(self.retrain_seeds) and self.retrain_seeds >= 1, "retrain_seeds",
             f"must be an integer >= 1, got {self.retrain_seeds!r}")
        need(_is_int(self.baseline_siblings) and 1 <= self.baseline_siblings <= self.k,
             "baseline_siblings", f"must be in 1..{self.k}, got {self.baseline_siblings!r}")
        need(_is_int(self.mask_replicates) and self.mask_replicates >= 1, "mask_replicates",
             f"must be an integer >= 1, got {self.mask_replicates!r}")
        need(isinstance(self.positive_control, bool), "positive_control",
             f"must be true or false, got {self.positive_control!r}")
        need(isinstance(self.natural_density, bool), "natural_density",
             f"must be true or false, got {self.natural_density!r}")
        bad = [b for b in self.random_baselines if b not in ("random", "random_matched", "reinit")]
        need(not bad, "random_baselines",
             f"unknown baselines {bad}; choose from random, random_matched, reinit")
        need(_is_int(self.lmc_pairs) and 0 <= 2 * self.lmc_pairs <= self.k, "lmc_pairs",
             f"needs 0..{self.k // 2} (disjoint pairs of --k={self.k} siblings), got "
             f"{self.lmc_pairs!r}")
        need(_is_int(self.lmc_points) and self.lmc_points >= 2, "lmc_points",
             f"must be an integer >= 2 (the path's two end points at least), got {self.lmc_points!r}")
        bad = [b for b in self.lmc_bn if b not in ("interpolate", "recompute")]
        need(not bad and (len(self.lmc_bn) > 0 or self.lmc_pairs == 0), "lmc_bn",
             f"choose one or both of interpolate, recompute, got {list(self.lmc_bn)}")
        need(_is_int(self.imp_levels) and self.imp_levels >= 0, "imp_levels",
             f"must be an integer >= 0, got {self.imp_levels!r}")
        need(isinstance(self.imp_rate, (int, float)) and 0 < self.imp_rate < 1, "imp_rate",
             f"the fraction pruned per level must lie in (0, 1), got {self.imp_rate!r}")
        need(not self.imp_levels or self.imp_rewind_epoch is not None
             or self.retrain_spawn_epochs, "imp_rewind_epoch", "IMP needs an epoch to rewind "
             "to: give --imp_rewind_epoch (no --retrain_spawn_epochs to take it from)")
        need(self.imp_rewind_epoch is None or self.imp_rewind_epoch in self.spawn_epochs,
             "imp_rewind_epoch", f"must be one of --spawn_epochs {list(self.spawn_epochs)} (the "
             f"weights kept for rewinding), got {self.imp_rewind_epoch!r}")
        need(self.imp_k is None or (_is_int(self.imp_k) and 2 <= self.imp_k <= self.k), "imp_k",
             f"must be in 2..{self.k} (siblings per level of parallel IMP), got {self.imp_k!r}")
        for flag in ("train_subset", "test_subset"):
            v = getattr(self, flag)
            need(v is None or (_is_int(v) and v >= 1), flag, f"must be a positive integer, got {v!r}")
        need(self.strategy in (None, "vmap", "loop", "map", "separate"), "strategy",
             f"must be vmap, loop, map or separate, got {self.strategy!r}")
        need(self.steps_per_call is None or (_is_int(self.steps_per_call) and self.steps_per_call >= 1),
             "steps_per_call", f"must be a positive integer (iterations per compiled call; a "
             f"number >= the iterations of an epoch makes each epoch one program), got "
             f"{self.steps_per_call!r}")
        need(_is_int(self.checkpoint_every) and self.checkpoint_every >= 1, "checkpoint_every",
             f"must be an integer >= 1, got {self.checkpoint_every!r}")
        need(self.retrain_chunk is None or (_is_int(self.retrain_chunk) and self.retrain_chunk >= 1),
             "retrain_chunk", f"must be a positive integer, got {self.retrain_chunk!r}")
        need(_is_int(self.eval_batch) and self.eval_batch >= 1, "eval_batch",
             f"must be a positive integer (test images per evaluation batch), got "
             f"{self.eval_batch!r}")
        need(isinstance(self.dataset, str) and self.dataset.strip() != "", "dataset",
             "is empty; give a TFDS name (cifar10, fashion_mnist, ...), 'synthetic', an .npz "
             "file or a folder of IDX files")
        need(self.data_dir is None or (isinstance(self.data_dir, str) and self.data_dir.strip()),
             "data_dir", "is empty; leave it out for TFDS's default folder")
        return self


NOT_HASHED = tuple(f.name for f in dataclasses.fields(Config) if not f.metadata["hashed"])
# Settings added after run directories existed whose default changes what a run computes, at
# the value that reproduces the version before them (issue 23: one composed mask per method,
# no positive control). A run id counts them against these values, so a default run made
# before them keeps its id only when asked for that design (`--mask_replicates=1
# --positive_control=false`), and a config.json written before them reads back with them.
INTRODUCED_AS = {"mask_replicates": 1, "positive_control": False}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_recipe(r: Any) -> None:
    """Raise ConfigError naming the flag of the first recipe setting of `r` (a Config or a
    jaxlottery.train.Recipe: the same names) that cannot run. The one check of the recipe."""
    def need(ok: bool, flag: str, msg: str):
        if not ok:
            raise ConfigError(f"--{flag}: {msg}")

    need(_is_int(r.epochs) and r.epochs >= 1, "epochs", f"must be >= 1, got {r.epochs!r}")
    need(_is_int(r.batch_size) and r.batch_size >= 1, "batch_size",
         f"must be >= 1, got {r.batch_size!r}")
    need(isinstance(r.lr, (int, float)) and r.lr > 0 and math.isfinite(r.lr), "lr",
         f"must be positive, got {r.lr!r}")
    need(isinstance(r.momentum, (int, float)) and 0 <= r.momentum < 1, "momentum",
         f"must be in [0, 1), got {r.momentum!r}")
    need(isinstance(r.nesterov, bool), "nesterov", f"must be true or false, got {r.nesterov!r}")
    need(isinstance(r.weight_decay, (int, float)) and r.weight_decay >= 0, "weight_decay",
         f"must be >= 0, got {r.weight_decay!r}")
    need(r.epochs > 1 or not r.lr_drop_epochs, "lr_drop_epochs",
         f"a schedule of 1 epoch has no epoch to drop at; give --lr_drop_epochs= (none), got "
         f"{list(r.lr_drop_epochs)}")
    need(all(_is_int(e) and 0 < e < r.epochs for e in r.lr_drop_epochs),
         "lr_drop_epochs", f"must lie in 1..{r.epochs - 1} (inside the {r.epochs}-epoch "
         f"schedule), got {list(r.lr_drop_epochs)}")
    need(len(set(r.lr_drop_epochs)) == len(r.lr_drop_epochs), "lr_drop_epochs",
         f"repeats an epoch, got {list(r.lr_drop_epochs)}; give each drop once")
    need(isinstance(r.lr_drop_factor, (int, float)) and 0 < r.lr_drop_factor <= 1,
         "lr_drop_factor", f"must lie in (0, 1], got {r.lr_drop_factor!r}")
    need(isinstance(r.augment, bool), "augment", f"must be true or false, got {r.augment!r}")


def check_architecture(depth: int, width: int, num_classes: int) -> None:
    """Raise ValueError unless (depth, width, num_classes) name a member of the CIFAR ResNet
    family (jaxlottery.models)."""
    if not _is_int(depth) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth!r}")
    if not _is_int(width) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


def _min_k(how: str) -> int:
    """The smallest k' a composition method is defined for (unknown names: validation's job)."""
    return COMPOSITIONS[how].min_k if how in COMPOSITIONS else 1


def preset(name: str, **overrides: Any) -> Config:
    """A named preset with some fields overridden."""
    if name not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return Config(**{**PRESETS[name], **overrides})
