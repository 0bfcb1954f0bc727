"""The results dict of a study (results.json): the stages' outputs grouped into tables with
means and spreads, with the configuration, the data, the timing and the environment."""

from __future__ import annotations

import platform

import flax
import jax
import numpy as np

import jaxlottery
from jaxlottery import verdicts
from jaxlottery.config import Config
from jaxlottery.pipeline import Context
from jaxlottery.statistics import spread


def assemble(ctx: Context, out: dict) -> dict:
    """The results dict (results.json) from the stages' outputs and the run's context."""
    cfg = ctx.config
    sibs, indep = out["siblings"]["spawned"], out["siblings"]["independent"]
    consistency, retrained = out["consistency"], out["retrain"]
    lmc, imp_rows = out["connectivity"], out["imp"]
    dense = []
    for t, s in sibs.items():
        acc = s["history"][-1]["test_accuracy"] if s["history"] else None
        dense.append({"spawn_epoch": t, "test_accuracy": acc, **_spread(acc or [])})
    if indep is not None and indep["history"]:
        acc = indep["history"][-1]["test_accuracy"]
        dense.append({"spawn_epoch": None, "control": "independent_inits", "test_accuracy": acc,
                      **_spread(acc)})
    retrained_rows = _grouped([e for es in retrained.values() for e in es],
                              ("spawn_epoch", "method", "k", "target_density"))
    extra = set(cfg.random_baseline_methods())
    images = sum(ctx.images.values())
    seconds = sum(ctx.timing.values())
    results = {
        "config": cfg.to_dict(),
        "run_id": cfg.run_id(),
        "dataset": {"name": ctx.dataset.name, "synthetic": ctx.dataset.synthetic,
                    "train": int(ctx.dataset.x_train.shape[0]),
                    "test": int(ctx.dataset.x_test.shape[0]),
                    "image_shape": list(ctx.dataset.image_shape),
                    "num_classes": ctx.dataset.num_classes},
        "dense": dense,
        "consistency": consistency["rows"],
        "consistency_layers": consistency["layers"],
        "composition": [r for r in retrained_rows if r["method"] not in extra],
        "random_baselines": [r for r in retrained_rows if r["method"] in extra],
        "connectivity": lmc or [],
        "imp": (_grouped(imp_rows, ("chain", "level", "target_density"))
                + _imp_dense(cfg, sibs) if imp_rows else []),
        "retrained_masks": [e for es in retrained.values() for e in es],
        "imp_members": imp_rows or [],
        "timing": {"seconds_per_stage": dict(ctx.timing), "train_images": images,
                   "connectivity_seconds": ctx.evaluation_seconds,
                   "images_per_s": images / seconds if seconds else None,
                   "device": jax.devices()[0].device_kind},
        "environment": environment(),
    }
    return judged(results)


def judged(results: dict) -> dict:
    """`results` with its verdicts recorded: `differences` (every judged difference with its
    interval, runs and noise source) and `readings` (the computed sentences). The report
    recomputes both from the tables, so a results.json judged by an older rule is redrawn by
    the current one (`python -m jaxlottery.report RUN_DIR`)."""
    return dict(results, differences=verdicts.differences(results),
                readings=verdicts.readings(results))


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
        for f in ("spawn_epoch", "reinit"):
            if f in es[0] and f not in row:
                row[f] = es[0][f]
        row["achieved_density"] = float(np.mean([e["achieved_density"] for e in es]))
        if "sibling_density" in es[0]:
            row["sibling_density"] = float(np.mean([e["sibling_density"] for e in es]))
        s = spread(accs)
        row.update(test_accuracy_mean=s["mean"], test_accuracy_std=s["std"],
                   test_accuracy_stderr=s["stderr"], runs=s["runs"])
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
    return {"jaxlottery": jaxlottery.__version__, "jax": jax.__version__,
            "flax": flax.__version__, "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
            "process_count": jax.process_count(), "python": platform.python_version()}
