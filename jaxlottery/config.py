"""One configuration for the whole study, named presets, validation, and the run's address.

`Config()` is the paper protocol (PROTOCOL.md). A run lives in `<workdir>/<run_id>`, where the
id hashes only the fields that differ from their defaults (OpenLTH's habit): adding an option
later, with a default that keeps what runs compute, never renames an old run; one whose default
changes it counts against its `INTRODUCED_AS` value. What a setting may be: `validation`. Fields that change where or how fast a run
goes, not what it computes (data_dir, strategy, chunk sizes), are left out of the hash.

Presets (`preset(name, **overrides)`, the bundles in `jaxlottery.presets`): paper (the
default), quick, smoke, imprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

import numpy as np

from jaxlottery import imprint
from jaxlottery.masks import COMPOSITIONS
from jaxlottery.presets import PRESETS
# config's API since before validation.py existed: ConfigError and the recipe's rule
from jaxlottery.validation import ConfigError, check_config, check_recipe  # noqa: F401

PAPER_DENSITIES = tuple(0.8**level for level in (3, 5, 7, 8, 10, 12, 14, 16, 18))
RETRAIN_DENSITIES = tuple(0.8**level for level in (5, 8, 12, 16))

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
    model: str = option("cifar_resnet_20", "the network, by name in jaxlottery.models: "
                        "cifar_resnet_20 is the paper's ResNet-20; others such as "
                        "cifar_resnet_8_4 (depth 8, width 4), cifar_vgg_16, wrn_16_8, "
                        "mnist_lenet_300_100 (an unknown name lists every family)")
    compute_dtype: str = option("float32", "dtype of the networks' arithmetic: float32, or "
                                "bfloat16 (opt-in: weights, BN statistics, loss and everything "
                                "stored stay float32; its measured effect is in the README)")
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
    criterion: str = option("magnitude", "what ranks the trained weights for every mask "
                            "(one-shot, composed, IMP): magnitude (the paper's), movement, snip "
                            "or random (jaxlottery.criteria); W_t's reference masks stay "
                            "magnitude")
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
    xla_options: str | None = option(None, "a named set of per-program XLA compiler options "
                                     "(siblings.XLA_OPTIONS: none, concurrent, ...; they apply "
                                     "on the backend they are written for; none: per backend)",
                                     hashed=False)
    flat_update: bool | None = option(None, "compute each network's update on one flat vector "
                                      "(fewer, larger kernels; the same arithmetic) (true/false; "
                                      "none: per backend)", hashed=False)
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
        diff.update(diff.pop("model", None) and _model_key(self.model) or {})
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
        d = _named_model(d)
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown configuration fields: {unknown}")
        return cls(**{**{k: v for k, v in INTRODUCED_AS.items() if k in names}, **d})

    # --- validation (jaxlottery.validation) ------------------------------------------------

    def validate(self) -> "Config":
        """Raise ConfigError naming the flag of the first setting that cannot run."""
        check_config(self)
        return self


NOT_HASHED = tuple(f.name for f in dataclasses.fields(Config) if not f.metadata["hashed"])
# Settings added after run directories existed whose default changes what a run computes, at
# the value that reproduces the version before them (issue 23: one composed mask per method,
# no positive control). A run id counts them against these values, so a default run made
# before them keeps its id only when asked for that design (`--mask_replicates=1
# --positive_control=false`), and a config.json written before them reads back with them.
INTRODUCED_AS = {"mask_replicates": 1, "positive_control": False}


def _resnet_arguments(model: Any) -> tuple[int, int] | None:
    """(depth, width) of a `cifar_resnet_<depth>[_<width>]` name, else None."""
    if not isinstance(model, str):
        return None
    found = re.fullmatch(r"cifar_resnet_(\d+)(?:_(\d+))?", model)
    return (int(found[1]), int(found[2] or 16)) if found else None


def _model_key(model: Any) -> dict[str, Any]:
    """What a run id hashes for the model: a CIFAR ResNet as the `model_depth`/`model_width`
    fields that named it before models had names (so its runs keep their ids; `cifar_resnet_20`
    and `cifar_resnet_20_16` are one network and one id), any other model by its name."""
    resnet = _resnet_arguments(model)
    if resnet is None:
        return {"model": model}
    return {k: v for k, v, default in zip(("model_depth", "model_width"), resnet, (20, 16))
            if v != default}


def _named_model(d: dict[str, Any]) -> dict[str, Any]:
    """A record written before models had names (`model_depth`, `model_width`) with the name
    of the network those fields gave."""
    if "model_depth" not in d and "model_width" not in d:
        return d
    if "model" in d:
        raise ConfigError("a configuration names its model twice: model and "
                          "model_depth/model_width")
    d = dict(d)
    depth, width = d.pop("model_depth", 20), d.pop("model_width", 16)
    if not (isinstance(depth, int) and isinstance(width, int)):
        raise ConfigError(f"model_depth and model_width must be integers, got {depth!r}, "
                          f"{width!r}")
    d["model"] = f"cifar_resnet_{depth}" + (f"_{width}" if width != 16 else "")
    return d


def _min_k(how: str) -> int:
    """The smallest k' a composition method is defined for (unknown names: validation's job)."""
    return COMPOSITIONS[how].min_k if how in COMPOSITIONS else 1


def preset(name: str, **overrides: Any) -> Config:
    """A named preset with some fields overridden."""
    if name not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return Config(**{**PRESETS[name], **overrides})
