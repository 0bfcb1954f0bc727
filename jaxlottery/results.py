"""The results dict of a study (results.json): the stages' outputs grouped into tables with
means and spreads, with the configuration, the data, the timing and the environment."""

from __future__ import annotations

import platform

import flax
import jax
import numpy as np

import jaxlottery
from jaxlottery import models, provenance
from jaxlottery import imprint as imprint_lib
from jaxlottery.config import Config
from jaxlottery.pipeline import Context
from jaxlottery.reading import judged  # noqa: F401 - results.judged, as before
from jaxlottery.reading.consistency import over_inits
from jaxlottery.statistics import spread


def assemble(ctx: Context, out: dict) -> dict:
    """The results dict (results.json) from the stages' outputs and the run's context."""
    cfg = ctx.config
    sibs = out["siblings"]["spawned"]
    retrained = out["retrain"]
    lmc, imp_rows = out["connectivity"], out["imp"]
    designs = [{"init": 0, "siblings": out["siblings"], "consistency": out["consistency"]}]
    designs += out.get("replicates") or []
    dense, consistency, layers, trajectory, trajectory_layers = [], [], [], [], []
    for design in designs:
        dense += _dense(ctx, design["init"], design["siblings"])
        consistency += design["consistency"]["rows"]
        layers += design["consistency"]["layers"]
        rows, layer_rows = _trajectory(ctx, design["init"], design["siblings"])
        trajectory += rows
        trajectory_layers += layer_rows
    entries = [e for es in retrained.values() for e in es]
    by = ("spawn_epoch", "method", "k", "target_density")
    retrained_rows = _grouped([e for e in entries if not e.get("natural")], by)
    extra = set(cfg.random_baseline_methods())
    images = sum(ctx.images.values())
    seconds = sum(ctx.timing.values())
    network = models.get(cfg.model)
    results = {
        "config": cfg.to_dict(),
        "run_id": cfg.run_id(),
        "dataset": {"name": ctx.dataset.name, "synthetic": ctx.dataset.synthetic,
                    "train": int(ctx.dataset.x_train.shape[0]),
                    "test": int(ctx.dataset.x_test.shape[0]),
                    "image_shape": list(ctx.dataset.image_shape),
                    "num_classes": ctx.dataset.num_classes},
        "model": {"name": cfg.model, "description": network.description,
                  "prunable_weights": network.prunable_weights(
                      ctx.dataset.num_classes, tuple(ctx.dataset.image_shape))},
        "imprint": imprint(cfg, int(ctx.dataset.x_train.shape[0])),
        "dense": dense,
        "consistency": consistency,
        "consistency_layers": layers,
        "consistency_over_inits": over_inits(consistency) if cfg.inits > 1 else [],
        "trajectory": trajectory,
        "trajectory_layers": trajectory_layers,
        "composition": [r for r in retrained_rows if r["method"] not in extra],
        "random_baselines": [r for r in retrained_rows if r["method"] in extra],
        "natural_density": _grouped([e for e in entries if e.get("natural")], by),
        "connectivity": lmc or [],
        "imp": (_grouped(imp_rows, ("chain", "level", "target_density"))
                + _imp_dense(cfg, sibs) if imp_rows else []),
        "retrained_masks": entries,
        "mask_overlaps": mask_overlaps(out["composition"]),
        "imp_members": imp_rows or [],
        "timing": {"seconds_per_stage": dict(ctx.timing), "train_images": images,
                   "connectivity_seconds": ctx.evaluation_seconds,
                   "images_per_s": images / seconds if seconds else None,
                   "device": jax.devices()[0].device_kind},
        "environment": environment(),
    }
    return judged(results)


def imprint(cfg: Config, n_train: int) -> dict:
    """What the initialization's imprint on the final weights is, from the configuration alone
    (`jaxlottery.imprint`): from W_0, and from W_t for every spawn point; whether a run
    that keeps this much can test claim 1; the spawn points after the first LR drop."""
    spe = cfg.steps_per_epoch(n_train)
    retained = cfg.imprint(n_train)
    return {"retained": retained, "formula": imprint_lib.FORMULA,
            "testable_below": imprint_lib.TESTABLE,
            "can_test_claim_1": retained <= imprint_lib.TESTABLE,
            "spawn_points": [{"spawn_epoch": name if isinstance(name, int) else round(step / spe, 4),
                              "spawn_iteration": step,
                              "retained": cfg.imprint(n_train, from_epoch=step / spe)}
                             for name, step in cfg.spawn_points(n_train)],
            "late_spawn_points": [name if isinstance(name, int) else round(
                int(name[:-2]) / spe, 4) for name in cfg.late_spawn_points(n_train)]}


def _dense(ctx: Context, init: int, nets: dict) -> list[dict]:
    """Final test accuracy of the siblings at every spawn point and of the control."""
    rows = []
    for t, s in nets["spawned"].items():
        acc = s["history"][-1]["test_accuracy"] if s["history"] else None
        rows.append({"init": init, "spawn_epoch": ctx.spawn_epoch(t), "test_accuracy": acc,
                     **_spread(acc or [])})
    indep = nets["independent"]
    if indep is not None and indep["history"]:
        acc = indep["history"][-1]["test_accuracy"]
        rows.append({"init": init, "spawn_epoch": None, "control": "independent_inits",
                     "test_accuracy": acc, **_spread(acc)})
    return rows


def _trajectory(ctx: Context, init: int, nets: dict) -> tuple[list[dict], list[dict]]:
    """The snapshots recorded in the sibling stages' histories, as rows (one per spawn point or
    control, epoch and density) and per-layer rows: the overlap through training."""
    stacks_ = [(t, None, s) for t, s in nets["spawned"].items()]
    if nets["independent"] is not None:
        stacks_.append((None, "independent_inits", nets["independent"]))
    drops = [e * ctx.spe for e in ctx.config.lr_drop_epochs]
    rows, layer_rows = [], []
    for t, control, s in stacks_:
        where = {"init": init, "spawn_epoch": None if t is None else ctx.spawn_epoch(t),
                 "spawn_iteration": None if t is None else ctx.spawn_step(t), "control": control}
        for record in s["history"]:
            for snap in record.get("snapshot") or []:
                at = dict(where, epoch=record["epoch"], step=record["step"], density=snap["density"])
                lr = ctx.recipe.lr * ctx.recipe.lr_drop_factor ** sum(record["step"] > b for b in drops)
                rows.append(dict(at, lr=lr, test_accuracy_mean=float(np.mean(record["test_accuracy"])),
                                 **{k: v for k, v in snap.items() if k not in ("layers", "density")}))
                layer_rows += [dict(at, **layer) for layer in snap["layers"]]
    return rows, layer_rows


def mask_overlaps(composed: dict) -> list[dict]:
    """The composition stage's pairwise overlaps of retrained masks, each mask named by its
    method, k' and replicate: one row per pair at a spawn point and density."""
    rows = []
    for t, c in composed.items():
        names = c["entries"]
        for o in c.get("overlaps") or []:
            a, b = names[o["a"]], names[o["b"]]
            rows.append({"spawn_epoch": t, "density": o["density"],
                         "method_a": a["method"], "k_a": a["k"], "replicate_a": a.get("replicate", 0),
                         "method_b": b["method"], "k_b": b["k"], "replicate_b": b.get("replicate", 0),
                         "iou": o["iou"], "kappa": o["kappa"]})
    return rows


def _spread(acc: list[float]) -> dict:
    """mean, std (ddof=1), stderr and runs of a list of accuracies (None where undefined)."""
    s = spread(acc)
    return {"mean": s["mean"], "std": s["std"], "stderr": s["stderr"], "runs": s["runs"]}


def _grouped(entries: list[dict], by: tuple[str, ...]) -> list[dict]:
    """Test accuracy over the runs sharing the `by` fields: mean, std (ddof=1), stderr and
    `runs` (std and stderr None for one run); and the mean densities."""
    groups: dict = {}
    for e in entries:
        groups.setdefault(tuple(e[f] for f in by), []).append(e)
    rows = []
    for values, es in groups.items():
        accs = [e["test_accuracy"] for e in es]
        row = dict(zip(by, values))
        for f in ("spawn_epoch", "reinit", "natural_of"):
            if f in es[0] and f not in row:
                row[f] = es[0][f]
        row["achieved_density"] = float(np.mean([e["achieved_density"] for e in es]))
        if "sibling_density" in es[0]:
            row["sibling_density"] = float(np.mean([e["sibling_density"] for e in es]))
        s = spread(accs)
        row.update(test_accuracy_mean=s["mean"], test_accuracy_std=s["std"],
                   test_accuracy_stderr=s["stderr"], runs=s["runs"])
        if "replicate" in es[0]:
            row["masks"] = len({e["replicate"] for e in es})
        rows.append(row)
    return rows


def _imp_dense(cfg: Config, sibs: dict) -> list[dict]:
    """Level 0 of every IMP chain: the dense siblings it starts from."""
    t = cfg.imp_rewind()
    hist = sibs[t]["history"]
    if not hist:
        return []
    acc = hist[-1]["test_accuracy"]
    rows = []
    for chain in cfg.imp_chains():
        s = spread(acc[:1 if chain in ("imp", "oneshot") else cfg.imp_siblings()])
        rows.append({"chain": chain, "level": 0, "target_density": 1.0, "achieved_density": 1.0,
                     "spawn_epoch": t, "test_accuracy_mean": s["mean"],
                     "test_accuracy_std": s["std"], "test_accuracy_stderr": s["stderr"],
                     "runs": s["runs"]})
    return rows


def environment() -> dict:
    source = provenance.source()
    return {"jaxlottery": jaxlottery.__version__, "commit": source["commit"],
            "modified": source["modified"], "jax": jax.__version__,
            "flax": flax.__version__, "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
            "process_count": jax.process_count(), "python": platform.python_version()}
