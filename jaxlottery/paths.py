"""Every file name of a run directory `<workdir>/<run id>/`, in one place.

Stages, the report and the tools that read a run ask here for their files, so a name is
spelled once. All names are relative to the run directory.
"""

from __future__ import annotations

import os

CONFIG = "config.json"  # the full configuration and the version that wrote it
RESULTS = "results.json"  # every number of the study (written last: the run's "done" marker)
REPORT = "report.md"
LOCK = "lock"  # the process holding the run (jaxlottery.files.RunLock)
FAILED = "failed.json"  # why a run stopped (a diverged loss)
CONSISTENCY = "consistency.json"
SHARED = "shared"
INDEPENDENT = "independent"

# Figures: the paper's three, then one per analysis beyond the paper (keyed by its results
# section, drawn only when that section has rows).
FIGURES = {"overlap": "overlap_vs_spawn.png", "accuracy": "accuracy_vs_density.png",
           "layers": "layer_overlap.png"}
EXTRA_FIGURES = {"trajectory": "trajectory.png", "connectivity": "connectivity.png",
                 "random_baselines": "baselines.png", "imp": "imp.png"}
# results.json sections written as CSV tables (connectivity's and differences' are derived:
# jaxlottery.reading).
TABLES = ("dense", "consistency", "consistency_layers", "consistency_over_inits", "trajectory",
          "trajectory_layers", "composition", "random_baselines", "natural_density", "mask_overlaps",
          "imp",
          "connectivity", "differences")


def csv(table: str) -> str:
    return f"{table}.csv"


def spawn_tag(t: int | str) -> str:
    """A spawn point in file names: `e5` after 5 epochs, `it500` after 500 iterations ("500it")."""
    return f"it{t[:-2]}" if isinstance(t, str) else f"e{t}"


def spawn_weights(t: int | str) -> str:
    """W_t: the shared network's variables at spawn point t."""
    return os.path.join(SHARED, f"spawn_{spawn_tag(t)}.npz")


def siblings(t: int | str) -> str:
    """The folder of the k siblings spawned at spawn point t."""
    return os.path.join("siblings", spawn_tag(t))


def replicate(j: int) -> str:
    """The folder of initialization j >= 1 of --inits: a run directory's consistency design
    (shared, siblings, masks, consistency) again, laid out the same way inside it."""
    return os.path.join("inits", str(j))


def final(folder: str) -> str:
    """A trained stack's final variables."""
    return os.path.join(folder, "final.npz")


def history(folder: str) -> str:
    return os.path.join(folder, "history.json")


def checkpoints(folder: str) -> str:
    return os.path.join(folder, "ckpt")


def sibling_masks(kind: str, t: int | str, density_index: int) -> str:
    """One-shot masks of the siblings (`kind="siblings"`) or of W_t (`"spawn"`)."""
    return os.path.join("masks", f"{kind}_{spawn_tag(t)}_d{density_index}.npz")


def independent_masks(density_index: int) -> str:
    return os.path.join("masks", f"independent_d{density_index}.npz")


def connectivity(t: int | str) -> str:
    return os.path.join("connectivity", f"{spawn_tag(t)}.json")


def composition(t: int, what: str) -> str:
    """The masks to retrain from W_t (`what="masks"`, .npz), their metadata (`"meta"`, .json)
    and the overlaps between them (`"overlaps"`, .json)."""
    name = {"masks": f"e{t}.npz", "meta": f"e{t}.json", "overlaps": f"e{t}_overlaps.json"}[what]
    return os.path.join("composition", name)


def retraining(t: int) -> str:
    return os.path.join("retrain", f"e{t}")


def imp_level(level: int) -> str:
    return os.path.join("imp", f"level{level}")


def imp_masks(level: int) -> str:
    return os.path.join(imp_level(level), "masks.npz")


def imp_members(level: int) -> str:
    return os.path.join(imp_level(level), "members.json")


def chunk(folder: str, c: int, ext: str = "") -> str:
    """Chunk c of a retraining folder: its training folder (no `ext`), its test accuracies
    (`.json`) or its final weights (`.npz`)."""
    return os.path.join(folder, f"chunk{c}{ext}")


def plan(folder: str) -> str:
    """How a retraining folder's networks are cut into stacks (fixed when first planned)."""
    return os.path.join(folder, "plan.json")
