"""One configuration for the whole study, named presets, validation, and the run's address.

`Config()` is the paper protocol (PROTOCOL.md). A run lives in `<workdir>/<run_id>`, where the
id hashes only the fields that differ from their defaults (OpenLTH's habit): adding an option
later, with a default, never renames an old run. Fields that change where or how fast a run
goes, not what it computes (data_dir, strategy, chunk sizes), are left out of the hash.

Presets (`PRESETS`, `preset(name)`):
- `paper`: the protocol on CIFAR-10, ResNet-20, k = 10 (about 23,000 network-epochs).
- `quick`: a scaled study for a laptop CPU: ResNet-8 of width 8, a 4,000-image subset,
  12 epochs, k = 4. Shows the effects qualitatively; not the paper's numbers.
- `smoke`: synthetic data, every stage, seconds per stage; for tests and first contact.

`quick` and `smoke` also run every analysis beyond the paper (IMP and parallel IMP, the
random and re-initialized baselines); `paper` runs those only when asked (--imp_levels,
--random_baselines), since they would more than double its cost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

from jaxlottery import models
from jaxlottery.train import Recipe

PAPER_DENSITIES = tuple(0.8**level for level in (3, 5, 7, 8, 10, 12, 14, 16, 18))
RETRAIN_DENSITIES = tuple(0.8**level for level in (5, 8, 12, 16))

# Fields that say where or how fast, not what: not part of the run id.
NOT_HASHED = ("data_dir", "strategy", "steps_per_call", "shard", "checkpoint_every",
              "retrain_chunk", "eval_batch")


class ConfigError(ValueError):
    """A setting that cannot run; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a study; defaults are the paper protocol."""

    # Randomness: everything derives from this one seed (see jaxlottery.experiment).
    seed: int = 0
    # Data
    dataset: str = "cifar10"  # a TFDS name, "synthetic", or the path of an .npz file
    data_dir: str | None = None
    train_subset: int | None = None  # a seeded random subset of the training set
    test_subset: int | None = None
    # Model
    model_depth: int = 20
    model_width: int = 16
    # Recipe
    epochs: int = 160
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_drop_epochs: tuple[int, ...] = (80, 120)
    augment: bool = True
    # Siblings and consistency
    k: int = 10
    spawn_epochs: tuple[int, ...] = (0, 1, 2, 5)
    densities: tuple[float, ...] = PAPER_DENSITIES
    independent_inits: int = 3  # control: networks from different inits, trained the same way
    # Composition and retraining
    k_values: tuple[int, ...] = (2, 3, 5, 10)
    compose: tuple[str, ...] = ("union", "intersection", "vote")  # vote = majority of k'
    retrain_spawn_epochs: tuple[int, ...] = (0, 5)
    retrain_densities: tuple[float, ...] = RETRAIN_DENSITIES
    baseline_siblings: int = 2  # one-shot baselines: single siblings pruned and retrained
    # Beyond the paper (jaxlottery.experiment's extra stages). Connectivity costs evaluations
    # only and is on; the baselines and IMP retrain networks and are off in the paper preset.
    random_baselines: tuple[str, ...] = ()  # random, random_matched, reinit
    lmc_pairs: int = 1  # disjoint sibling pairs per spawn point for mode connectivity; 0: off
    lmc_points: int = 31
    lmc_bn: tuple[str, ...] = ("interpolate", "recompute")
    imp_levels: int = 0  # iterative magnitude pruning levels; 0: off
    imp_rate: float = 0.2  # fraction of the remaining weights pruned per level
    imp_rewind_epoch: int | None = None  # None: the last of retrain_spawn_epochs
    imp_k: int | None = None  # siblings per level of parallel IMP; None: k
    imp_compose: tuple[str, ...] = ("union", "intersection", "vote")
    # Execution (not hashed)
    strategy: str | None = None  # vmap | loop | map | separate; None: the backend's default
    steps_per_call: int | None = None  # iterations per compiled call; None: the backend's default
    shard: bool = True  # split sibling stacks over all devices (of all processes) when several
    checkpoint_every: int = 1  # epochs between checkpoints of a training stage (and at its end)
    retrain_chunk: int | None = None  # masks retrained together; None: k (CPU) or what fits
    eval_batch: int = 1000

    def __post_init__(self):
        for name in ("lr_drop_epochs", "spawn_epochs", "densities", "k_values", "compose",
                     "retrain_spawn_epochs", "retrain_densities", "random_baselines",
                     "lmc_bn", "imp_compose"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    # --- derived ---------------------------------------------------------------------------

    def recipe(self) -> Recipe:
        return Recipe(lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                      batch_size=self.batch_size, epochs=self.epochs,
                      lr_drop_epochs=self.lr_drop_epochs, augment=self.augment)

    def effective_k_values(self) -> tuple[int, ...]:
        """k values for composition, capped at k."""
        return tuple(sorted({min(v, self.k) for v in self.k_values}))

    def network_epochs(self) -> dict[str, float]:
        """Cost of each training stage in network-epochs (one network, one epoch)."""
        n_masks = len(self.retrain_densities) * (self.masks_per_density() + self.baseline_siblings
                                                 + len(self.random_baseline_methods()))
        cost = {
            "shared": float(max(self.spawn_epochs)),
            "siblings": float(sum(self.k * (self.epochs - t) for t in self.spawn_epochs)),
            "independent": float(self.independent_inits * self.epochs),
            "retrain": float(sum(n_masks * (self.epochs - t) for t in self.retrain_spawn_epochs)),
        }
        if self.imp_levels:
            members = self.imp_levels * (1 + self.imp_siblings() * len(self.imp_chains()[2:]))
            members += self.imp_levels - 1  # one-shot baselines (level 1 is IMP's own level 1)
            cost["imp"] = float(members * (self.epochs - self.imp_rewind()))
        return cost

    def masks_per_density(self) -> int:
        """Composed masks per (spawn point, density): each method at each k' (vote needs k' >= 3)."""
        return len(self.compose_methods(self.effective_k_values()))

    def compose_methods(self, ks: tuple[int, ...]) -> list[tuple[str, int]]:
        """(method, k') pairs that are composed: every method at every k'; vote needs k' >= 3."""
        return [(how, kk) for kk in ks for how in self.compose if how != "vote" or kk >= 3]

    def random_baseline_methods(self) -> list[str]:
        """Baseline masks retrained per (spawn point, density): random (global density),
        random_matched (the one-shot mask's per-layer densities), and with "reinit" the
        one-shot mask and every composed mask at the largest k', from a fresh init."""
        out = [m for m in ("random", "random_matched") if m in self.random_baselines]
        if "reinit" in self.random_baselines:
            ks = self.effective_k_values()[-1:]
            out += ["baseline_reinit"] + [f"{how}_reinit" for how, _ in self.compose_methods(ks)]
        return out

    def imp_rewind(self) -> int:
        """The epoch IMP rewinds to: --imp_rewind_epoch, else the last retraining spawn point."""
        return max(self.retrain_spawn_epochs) if self.imp_rewind_epoch is None else self.imp_rewind_epoch

    def imp_siblings(self) -> int:
        return self.k if self.imp_k is None else self.imp_k

    def imp_chains(self) -> list[str]:
        """IMP's chains: single-network IMP, one-shot at the same densities, and one parallel
        chain per composition method (vote needs 3 siblings)."""
        return ["imp", "oneshot"] + [how for how in self.imp_compose
                                     if how != "vote" or self.imp_siblings() >= 3]

    def run_id(self) -> str:
        """12 hex digits hashing the non-default, hashed fields (sorted JSON)."""
        diff = {k: v for k, v in self.non_default().items() if k not in NOT_HASHED}
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
        return cls(**d)

    # --- validation ------------------------------------------------------------------------

    def validate(self) -> "Config":
        """Raise ConfigError naming the flag of the first setting that cannot run."""
        def need(ok: bool, flag: str, msg: str):
            if not ok:
                raise ConfigError(f"--{flag}: {msg}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        need(is_int(self.seed) and self.seed >= 0, "seed", f"must be an integer >= 0, got {self.seed!r}")
        need(is_int(self.k) and self.k >= 1, "k", f"must be an integer >= 1, got {self.k!r}")
        need(self.k >= 2, "k", "needs at least 2 siblings to compare masks")
        try:
            models.check_architecture(self.model_depth, self.model_width, 10)
        except ValueError as e:
            flag = "model_depth" if "depth" in str(e) else "model_width"
            raise ConfigError(f"--{flag}: {e}") from None
        need(is_int(self.epochs) and self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs!r}")
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size",
             f"must be >= 1, got {self.batch_size!r}")
        need(self.lr > 0 and math.isfinite(self.lr), "lr", f"must be positive, got {self.lr!r}")
        need(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum!r}")
        need(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay!r}")
        need(all(is_int(e) and 0 < e < self.epochs for e in self.lr_drop_epochs),
             "lr_drop_epochs", f"must lie in 1..{self.epochs - 1}, got {list(self.lr_drop_epochs)}")
        for flag, values in (("spawn_epochs", self.spawn_epochs),
                             ("retrain_spawn_epochs", self.retrain_spawn_epochs)):
            need(len(values) > 0, flag, "needs at least one spawn point")
            need(all(is_int(t) and 0 <= t < self.epochs for t in values), flag,
                 f"spawn epochs must lie in 0..{self.epochs - 1} (the schedule has "
                 f"{self.epochs} epochs), got {list(values)}")
        need(set(self.retrain_spawn_epochs) <= set(self.spawn_epochs), "retrain_spawn_epochs",
             f"must be among --spawn_epochs {list(self.spawn_epochs)}, got "
             f"{list(self.retrain_spawn_epochs)}")
        for flag, values in (("densities", self.densities),
                             ("retrain_densities", self.retrain_densities)):
            need(len(values) > 0, flag, "needs at least one density")
            need(all(isinstance(d, (int, float)) and 0 < d <= 1 for d in values), flag,
                 f"densities (fractions kept) must lie in (0, 1], got {list(values)}")
        need(len(self.k_values) > 0 and all(is_int(v) and v >= 1 for v in self.k_values),
             "k_values", f"must be integers >= 1, got {list(self.k_values)}")
        need(max(self.k_values) <= self.k, "k_values",
             f"values above --k={self.k} are not possible, got {list(self.k_values)}")
        bad = [c for c in self.compose if c not in ("union", "intersection", "vote")]
        need(not bad, "compose", f"unknown methods {bad}; choose from union, intersection, vote")
        need(is_int(self.independent_inits) and self.independent_inits >= 0, "independent_inits",
             f"must be an integer >= 0, got {self.independent_inits!r}")
        need(self.independent_inits != 1, "independent_inits",
             "needs 0 (off) or at least 2 networks to compare")
        need(is_int(self.baseline_siblings) and 1 <= self.baseline_siblings <= self.k,
             "baseline_siblings", f"must be in 1..{self.k}, got {self.baseline_siblings!r}")
        bad = [b for b in self.random_baselines if b not in ("random", "random_matched", "reinit")]
        need(not bad, "random_baselines",
             f"unknown baselines {bad}; choose from random, random_matched, reinit")
        need(is_int(self.lmc_pairs) and 0 <= 2 * self.lmc_pairs <= self.k, "lmc_pairs",
             f"needs 0..{self.k // 2} (disjoint pairs of --k={self.k} siblings), got "
             f"{self.lmc_pairs!r}")
        need(is_int(self.lmc_points) and self.lmc_points >= 2, "lmc_points",
             f"must be an integer >= 2 (the path's two end points at least), got {self.lmc_points!r}")
        bad = [b for b in self.lmc_bn if b not in ("interpolate", "recompute")]
        need(not bad and (len(self.lmc_bn) > 0 or self.lmc_pairs == 0), "lmc_bn",
             f"choose one or both of interpolate, recompute, got {list(self.lmc_bn)}")
        need(is_int(self.imp_levels) and self.imp_levels >= 0, "imp_levels",
             f"must be an integer >= 0, got {self.imp_levels!r}")
        need(isinstance(self.imp_rate, (int, float)) and 0 < self.imp_rate < 1, "imp_rate",
             f"the fraction pruned per level must lie in (0, 1), got {self.imp_rate!r}")
        need(self.imp_rewind_epoch is None or self.imp_rewind_epoch in self.spawn_epochs,
             "imp_rewind_epoch", f"must be one of --spawn_epochs {list(self.spawn_epochs)} (the "
             f"weights kept for rewinding), got {self.imp_rewind_epoch!r}")
        need(self.imp_k is None or (is_int(self.imp_k) and 2 <= self.imp_k <= self.k), "imp_k",
             f"must be in 2..{self.k} (siblings per level of parallel IMP), got {self.imp_k!r}")
        bad = [c for c in self.imp_compose if c not in ("union", "intersection", "vote")]
        need(not bad, "imp_compose", f"unknown methods {bad}; choose from union, intersection, vote")
        for flag in ("train_subset", "test_subset"):
            v = getattr(self, flag)
            need(v is None or (is_int(v) and v >= 1), flag, f"must be a positive integer, got {v!r}")
        need(self.strategy in (None, "vmap", "loop", "map", "separate"), "strategy",
             f"must be vmap, loop, map or separate, got {self.strategy!r}")
        need(self.steps_per_call is None or (is_int(self.steps_per_call) and self.steps_per_call >= 1),
             "steps_per_call", f"must be a positive integer (iterations per compiled call; a "
             f"number >= the iterations of an epoch makes each epoch one program), got "
             f"{self.steps_per_call!r}")
        need(is_int(self.checkpoint_every) and self.checkpoint_every >= 1, "checkpoint_every",
             f"must be an integer >= 1, got {self.checkpoint_every!r}")
        need(self.retrain_chunk is None or (is_int(self.retrain_chunk) and self.retrain_chunk >= 1),
             "retrain_chunk", f"must be a positive integer, got {self.retrain_chunk!r}")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": dict(model_depth=8, model_width=8, train_subset=4000, test_subset=2000, epochs=12,
                  lr_drop_epochs=(6, 9), k=4, spawn_epochs=(0, 1, 3),
                  densities=(0.8**3, 0.8**7, 0.8**10, 0.8**14), independent_inits=2,
                  k_values=(2, 4), retrain_spawn_epochs=(1,), retrain_densities=(0.8**7, 0.8**14),
                  baseline_siblings=2, random_baselines=("random", "random_matched", "reinit"),
                  lmc_pairs=2, imp_levels=4, imp_rate=0.36, imp_k=2),
    "smoke": dict(dataset="synthetic", model_depth=8, model_width=4, train_subset=256,
                  test_subset=128, epochs=3, lr_drop_epochs=(2,), batch_size=64, k=3,
                  spawn_epochs=(0, 1), densities=(0.5, 0.2), independent_inits=2, k_values=(2, 3),
                  retrain_spawn_epochs=(1,), retrain_densities=(0.2,), baseline_siblings=2,
                  random_baselines=("random", "random_matched", "reinit"), lmc_points=5,
                  imp_levels=2, imp_k=2),
}


def preset(name: str, **overrides: Any) -> Config:
    """A named preset with some fields overridden."""
    if name not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return Config(**{**PRESETS[name], **overrides})
