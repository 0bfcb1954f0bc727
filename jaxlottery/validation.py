"""What a setting may be: every check of the study's settings, each naming the flag it
concerns, so a bad input fails before anything is written (`Config.validate`), and the rules of
the training recipe and the model family that `train.Recipe` and `models` apply too."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxlottery.criteria import CRITERIA
from jaxlottery.masks import COMPOSITIONS


STRATEGIES = ("vmap", "hybrid", "loop", "map", "streams", "separate")  # jaxlottery.execution describes them
COMPUTE_DTYPES = ("float32", "bfloat16")
XLA_OPTION_SETS = ("none", "graphs", "concurrent", "concurrent_unrolled")  # siblings.XLA_OPTIONS


class ConfigError(ValueError):
    """A setting that cannot run; the message names the flag."""


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


def check_config(c: Any) -> None:
    """Raise ConfigError naming the flag of the first setting of `c` (a Config) that cannot
    run: every flag checked by class, before anything is written."""
    def need(ok: bool, flag: str, msg: str):
        if not ok:
            raise ConfigError(f"--{flag}: {msg}")

    need(_is_int(c.seed) and 0 <= c.seed < 2**32, "seed",
         f"must be an integer in 0..{2**32 - 1} (a 32-bit PRNG seed), got {c.seed!r}")
    for f in dataclasses.fields(c):
        values = getattr(c, f.name)
        if isinstance(values, tuple):
            repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
            need(not repeated, f.name, f"lists {', '.join(map(str, repeated))} more than "
                 "once; give each value once")
    need(_is_int(c.k) and c.k >= 1, "k", f"must be an integer >= 1, got {c.k!r}")
    need(c.k >= 2, "k", "needs at least 2 siblings to compare masks")
    try:
        from jaxlottery import models  # the registry names the networks (flax: not at import)

        models.get(c.model)
    except ValueError as e:
        raise ConfigError(f"--model: {e}") from None
    check_recipe(c)
    for flag, values in (("spawn_epochs", c.spawn_epochs),
                         ("retrain_spawn_epochs", c.retrain_spawn_epochs)):
        need(len(values) > 0 or flag == "retrain_spawn_epochs", flag,
             "needs at least one spawn point")
        need(all(_is_int(t) and 0 <= t < c.epochs for t in values), flag,
             f"spawn epochs must lie in 0..{c.epochs - 1} (the schedule has "
             f"{c.epochs} epochs), got {list(values)}")
    need(all(_is_int(s) and s >= 1 for s in c.spawn_iterations), "spawn_iterations",
         f"must be positive integers (iterations of shared training), got "
         f"{list(c.spawn_iterations)}")
    need(_is_int(c.inits) and c.inits >= 1, "inits",
         f"must be an integer >= 1, got {c.inits!r}")
    snaps = c.snapshot_epochs
    need(snaps == "auto" or (isinstance(snaps, tuple) and all(
        _is_int(e) and 1 <= e <= c.epochs for e in snaps)), "snapshot_epochs",
         f"must be auto, none, or epochs in 1..{c.epochs} (the schedule has "
         f"{c.epochs} epochs), got {snaps if isinstance(snaps, str) else list(snaps)}")
    need(set(c.retrain_spawn_epochs) <= set(c.spawn_epochs), "retrain_spawn_epochs",
         f"must be among --spawn_epochs {list(c.spawn_epochs)}, got "
         f"{list(c.retrain_spawn_epochs)}")
    for flag, values in (("densities", c.densities),
                         ("retrain_densities", c.retrain_densities)):
        need(len(values) > 0, flag, "needs at least one density")
        need(all(isinstance(d, (int, float)) and 0 < d <= 1 for d in values), flag,
             f"densities (fractions kept) must lie in (0, 1], got {list(values)}")
    need(len(c.k_values) > 0 and all(_is_int(v) and v >= 1 for v in c.k_values),
         "k_values", f"must be integers >= 1, got {list(c.k_values)}")
    need(max(c.k_values) <= c.k, "k_values",
         f"values above --k={c.k} are not possible, got {list(c.k_values)}")
    for flag in ("compose", "imp_compose"):
        bad = [c for c in getattr(c, flag) if c not in COMPOSITIONS]
        need(not bad, flag, f"unknown methods {bad}; choose from {', '.join(COMPOSITIONS)}")
    need(_is_int(c.independent_inits) and c.independent_inits >= 0, "independent_inits",
         f"must be an integer >= 0, got {c.independent_inits!r}")
    need(c.independent_inits != 1, "independent_inits",
         "needs 0 (off) or at least 2 networks to compare")
    need(_is_int(c.retrain_seeds) and c.retrain_seeds >= 1, "retrain_seeds",
         f"must be an integer >= 1, got {c.retrain_seeds!r}")
    need(_is_int(c.baseline_siblings) and 1 <= c.baseline_siblings <= c.k,
         "baseline_siblings", f"must be in 1..{c.k}, got {c.baseline_siblings!r}")
    need(_is_int(c.mask_replicates) and c.mask_replicates >= 1, "mask_replicates",
         f"must be an integer >= 1, got {c.mask_replicates!r}")
    need(isinstance(c.positive_control, bool), "positive_control",
         f"must be true or false, got {c.positive_control!r}")
    need(isinstance(c.natural_density, bool), "natural_density",
         f"must be true or false, got {c.natural_density!r}")
    bad = [b for b in c.random_baselines if b not in ("random", "random_matched", "reinit")]
    need(not bad, "random_baselines",
         f"unknown baselines {bad}; choose from random, random_matched, reinit")
    need(_is_int(c.lmc_pairs) and 0 <= 2 * c.lmc_pairs <= c.k, "lmc_pairs",
         f"needs 0..{c.k // 2} (disjoint pairs of --k={c.k} siblings), got "
         f"{c.lmc_pairs!r}")
    need(_is_int(c.lmc_points) and c.lmc_points >= 2, "lmc_points",
         f"must be an integer >= 2 (the path's two end points at least), got {c.lmc_points!r}")
    bad = [b for b in c.lmc_bn if b not in ("interpolate", "recompute")]
    need(not bad and (len(c.lmc_bn) > 0 or c.lmc_pairs == 0), "lmc_bn",
         f"choose one or both of interpolate, recompute, got {list(c.lmc_bn)}")
    need(_is_int(c.imp_levels) and c.imp_levels >= 0, "imp_levels",
         f"must be an integer >= 0, got {c.imp_levels!r}")
    need(isinstance(c.imp_rate, (int, float)) and 0 < c.imp_rate < 1, "imp_rate",
         f"the fraction pruned per level must lie in (0, 1), got {c.imp_rate!r}")
    need(not c.imp_levels or c.imp_rewind_epoch is not None
         or c.retrain_spawn_epochs, "imp_rewind_epoch", "IMP needs an epoch to rewind "
         "to: give --imp_rewind_epoch (no --retrain_spawn_epochs to take it from)")
    need(c.imp_rewind_epoch is None or c.imp_rewind_epoch in c.spawn_epochs,
         "imp_rewind_epoch", f"must be one of --spawn_epochs {list(c.spawn_epochs)} (the "
         f"weights kept for rewinding), got {c.imp_rewind_epoch!r}")
    need(c.imp_k is None or (_is_int(c.imp_k) and 2 <= c.imp_k <= c.k), "imp_k",
         f"must be in 2..{c.k} (siblings per level of parallel IMP), got {c.imp_k!r}")
    for flag in ("train_subset", "test_subset"):
        v = getattr(c, flag)
        need(v is None or (_is_int(v) and v >= 1), flag, f"must be a positive integer, got {v!r}")
    need(c.strategy is None or c.strategy in STRATEGIES, "strategy",
         f"must be one of {', '.join(STRATEGIES)}, got {c.strategy!r}")
    need(c.xla_options is None or c.xla_options in XLA_OPTION_SETS, "xla_options",
         f"must be one of {', '.join(XLA_OPTION_SETS)}, got {c.xla_options!r}")
    need(c.flat_update is None or isinstance(c.flat_update, bool), "flat_update",
         f"must be true or false, got {c.flat_update!r}")
    need(isinstance(c.criterion, str) and c.criterion in CRITERIA, "criterion",
         f"must be one of {', '.join(CRITERIA)}, got {c.criterion!r}")
    need(c.compute_dtype in COMPUTE_DTYPES, "compute_dtype",
         f"must be one of {', '.join(COMPUTE_DTYPES)}, got {c.compute_dtype!r}")
    need(c.steps_per_call is None or (_is_int(c.steps_per_call) and c.steps_per_call >= 1),
         "steps_per_call", f"must be a positive integer (iterations per compiled call; a "
         f"number >= the iterations of an epoch makes each epoch one program), got "
         f"{c.steps_per_call!r}")
    need(_is_int(c.checkpoint_every) and c.checkpoint_every >= 1, "checkpoint_every",
         f"must be an integer >= 1, got {c.checkpoint_every!r}")
    need(c.retrain_chunk is None or (_is_int(c.retrain_chunk) and c.retrain_chunk >= 1),
         "retrain_chunk", f"must be a positive integer, got {c.retrain_chunk!r}")
    need(_is_int(c.eval_batch) and c.eval_batch >= 1, "eval_batch",
         f"must be a positive integer (test images per evaluation batch), got "
         f"{c.eval_batch!r}")
    need(isinstance(c.dataset, str) and c.dataset.strip() != "", "dataset",
         "is empty; give a TFDS name (cifar10, fashion_mnist, ...), 'synthetic', an .npz "
         "file or a folder of IDX files")
    need(c.data_dir is None or (isinstance(c.data_dir, str) and c.data_dir.strip()),
         "data_dir", "is empty; leave it out for TFDS's default folder")
