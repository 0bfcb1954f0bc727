"""The readings of a results dict: differences to the baselines and one computed sentence per
analysis (claim 2's in `jaxlottery.composability`). They read `results` only; a composition method is read wherever it appears, in the
order of `masks.COMPOSITIONS` (methods registered later, then any others, follow)."""

from __future__ import annotations

import types

import numpy as np

from jaxlottery import composability, imprint, statistics
from jaxlottery.composability import dense_noise
from jaxlottery.masks import COMPOSITIONS


def methods_in(rows: list[dict], key: str = "method") -> list[str]:
    """The composition methods present in `rows`, registered ones in registry order first."""
    present = list(dict.fromkeys(r[key] for r in rows))
    return [m for m in COMPOSITIONS if m in present] + [m for m in present if m not in COMPOSITIONS]


def reference_density(densities: list[float]) -> float:
    """The density the verdicts quote: the one closest to 10.7% (0.8^10)."""
    return min(densities, key=lambda d: abs(np.log(d / 0.8**10)))


# Landis & Koch's "slight agreement": a kappa under this is what the readings call close to
# chance ("not much more similar than chance", the paper's claim 1 at t = 0).
SLIGHT_KAPPA = 0.2


def imprint_of(results: dict) -> dict:
    """The run's `imprint` section, computed from its configuration where an older results
    file has none (`results.imprint`)."""
    if results.get("imprint"):
        return results["imprint"]
    cfg, n = results["config"], results["dataset"]["train"]
    recipe = types.SimpleNamespace(**{**_RECIPE_DEFAULTS, **cfg})
    retained = imprint.retained(recipe, n)
    spe = -(-n // recipe.batch_size)
    first = min(cfg.get("lr_drop_epochs") or [cfg["epochs"]])
    return {"retained": retained, "testable_below": imprint.TESTABLE,
            "can_test_claim_1": retained <= imprint.TESTABLE,
            "spawn_points": [{"spawn_epoch": t, "spawn_iteration": t * spe,
                              "retained": imprint.retained(recipe, n, t * spe)}
                             for t in cfg["spawn_epochs"]],
            "late_spawn_points": [t for t in cfg["spawn_epochs"] if t >= first]}


_RECIPE_DEFAULTS = {"lr_drop_factor": 0.1, "momentum": 0.9}


def imprint_sentence(results: dict) -> str:
    """What the initialization's imprint says about the run's power to test claim 1."""
    imp = imprint_of(results)
    kept = imp["retained"]
    text = (f"This run's schedule keeps {kept:.2f} of each weight's initial value in the final "
            f"weights (exp(-wd/(1-momentum) x sum of learning rates); the paper's recipe keeps "
            f"about 0.04)")
    criterion = results["config"].get("criterion", "magnitude")
    if criterion != "magnitude":
        return text + (f". Its masks rank by the {criterion} criterion, not the paper's "
                       "magnitude, so it does not test claim 1 (a claim about magnitude masks) "
                       "whatever the imprint; beside a magnitude run from the same seed it says "
                       "how much of that run's overlap comes from ranking by magnitude.")
    if kept > imp["testable_below"]:
        return text + (f": more than {imp['testable_below']:.2f}, so its magnitude masks largely "
                       "restate W_0's magnitudes and it cannot test claim 1 (near chance at "
                       "t = 0) either way.")
    return text + (f": at most {imp['testable_below']:.2f}, so the initialization's magnitudes no "
                   "longer dominate the final ones and the run can test claim 1.")


def over_inits(rows: list[dict]) -> list[dict]:
    """Consistency per (spawn point, density) over initializations: for each statistic the
    mean over inits of the per-init means, and for kappa and IoU their spread (ddof=1) and 95%
    interval over inits (Student's t, inits - 1 degrees of freedom): the init is the unit of
    replication of a claim about initializations."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["spawn_epoch"], r["density"]), []).append(r)
    out = []
    for (t, d), rs in groups.items():
        row = {"spawn_epoch": t, "density": d, "inits": len(rs)}
        for stat in ("kappa_mean", "iou_mean"):
            values = [r[stat] for r in rs if r.get(stat) is not None]
            sp = statistics.spread(values)
            ci = statistics.interval(sp["mean"], sp["stderr"], len(values) - 1) if values else None
            name = stat.removesuffix("_mean")
            row.update({stat: sp["mean"], f"{name}_std_over_inits": sp["std"],
                        f"{name}_ci_low": ci and ci[0], f"{name}_ci_high": ci and ci[1]})
        for stat in ("layer_matched_chance_iou", "iou_with_spawn_mask", "kappa_with_spawn_mask",
                     "kappa_independent_inits"):
            values = [r[stat] for r in rs if r.get(stat) is not None]
            row[stat] = float(np.mean(values)) if values else None
        out.append(row)
    return out


def _per_init(rows: list[dict], d: float) -> list[dict]:
    """The reading's rows at density d, one per spawn point: over inits where the run has
    several, else init 0's."""
    return sorted((r for r in rows if r["density"] == d), key=lambda r: r["spawn_epoch"])


def consistency_verdict(results: dict) -> str:
    rows = results["consistency"]
    d = reference_density(sorted({r["density"] for r in rows}))
    several = results.get("consistency_over_inits") or []
    at = _per_init(several if several else [r for r in rows if r.get("init", 0) == 0], d)
    first, last = at[0], at[-1]
    has_kappa = first.get("kappa_mean") is not None
    if several:
        spread_of = lambda r: (f" (95% interval over {r['inits']} inits "  # noqa: E731
                               f"{r['kappa_ci_low']:+.3f}..{r['kappa_ci_high']:+.3f})")
    else:
        spread_of = lambda r: ("" if r.get("kappa_std") is None else  # noqa: E731
                               f" +- {r['kappa_std']:.3f} (std over {r.get('pairs', '?')} pairs)")
    if has_kappa:
        later = (f" and {last['kappa_mean']:.3f}{spread_of(last)} at epoch "
                 f"{last['spawn_epoch']:g}" if len(at) > 1 else "")
        iou = (f"{first['iou_mean']:.3f} -> {last['iou_mean']:.3f}" if len(at) > 1
               else f"{first['iou_mean']:.3f}")
        line = (f"At density {100 * d:.1f}%: sibling kappa {first['kappa_mean']:.3f}"
                f"{spread_of(first)} when spawned at epoch {first['spawn_epoch']:g}{later} "
                "(Cohen's kappa within each layer, combined: 0 = random masks with the same "
                f"per-layer densities, 1 = identical); IoU {iou} against layer-matched chance "
                f"{first['layer_matched_chance_iou']:.3f}")
        control = first.get("kappa_independent_inits")
        if control is not None:
            line += f"; independently initialized networks: kappa {control:.3f}"
        rises = last["kappa_mean"] - first["kappa_mean"] > (
            0 if several and last["kappa_ci_low"] is not None and first["kappa_ci_high"] is not None
            and last["kappa_ci_low"] > first["kappa_ci_high"] else
            2 * max(first.get("kappa_std") or 0, last.get("kappa_std") or 0, 1e-3))
    else:  # an older results file: IoU only
        excess = lambda r: r["iou_mean"] - r["layer_matched_chance_iou"]  # noqa: E731
        line = (f"At density {100 * d:.1f}%: sibling IoU {first['iou_mean']:.3f} when spawned "
                f"at epoch {first['spawn_epoch']:g} and {last['iou_mean']:.3f} at epoch "
                f"{last['spawn_epoch']:g}; naive chance {first['chance_iou']:.3f}, layer-matched "
                f"chance {first['layer_matched_chance_iou']:.3f}. Excess over layer-matched "
                f"chance: {excess(first):+.3f} -> {excess(last):+.3f}")
        rises = excess(last) - excess(first) > 2 * max(first.get("iou_std") or 0,
                                                       last.get("iou_std") or 0, 1e-3)
    if len(at) > 1:
        line += " (rises with the spawn point)." if rises else " (no clear rise with the spawn point)."
    else:
        line += "."
    imp = imprint_of(results)
    line += " " + imprint_sentence(results)
    t0 = first if first["spawn_epoch"] == 0 else None
    if t0 is not None and has_kappa and imp["can_test_claim_1"]:
        word = ("close to chance (slight agreement, kappa under "
                f"{SLIGHT_KAPPA:g}), as the paper says" if t0["kappa_mean"] < SLIGHT_KAPPA else
                f"well above chance (kappa {SLIGHT_KAPPA:g} or more), against the paper")
        line += f" At t = 0 the siblings' masks are {word}."
    with_spawn = first.get("kappa_with_spawn_mask" if has_kappa else "iou_with_spawn_mask")
    if with_spawn is not None and with_spawn >= first["kappa_mean" if has_kappa else "iou_mean"] - 0.02:
        line += (f" Siblings spawned at epoch {first['spawn_epoch']:g} agree with the spawn "
                 f"weights' own mask ({'kappa' if has_kappa else 'IoU'} {with_spawn:.3f}) about as "
                 "much as with each other: their agreement is inherited from W_t.")
    late = imp.get("late_spawn_points") or []
    if late:
        line += (f" Spawn point(s) {', '.join(f'{t:g}' for t in late)} lie at or after the first "
                 "learning-rate drop: not \"a few epochs of shared pretraining\" in the paper's "
                 "sense.")
    return line


def differences(results: dict) -> list[dict]:
    """Every judged difference (differences.csv): the composition comparisons
    (`composability.comparisons`: composed masks against one-shot, union against
    intersection, against the dense control, random baselines against one-shot; with
    `--natural_density` the natural-density cells, section `natural_*`), then the IMP
    chains minus single-network IMP."""
    return (composability.comparisons(results)
            + [dict(d, section=f"natural_{d['section']}")
               for d in composability.natural_comparisons(results)]
            + [dict(d, method=d["chain"], reference="imp") for d in imp_deltas(results)])


# A pair of networks is linearly mode connected when its error barrier is under 2 points
# (Frankle et al. 2020).
STABLE_POINTS = 2.0


def connectivity_table(results: dict) -> list[dict]:
    """Barrier per (spawn epoch, BN mode): mean, std (ddof=1), stderr and 95% interval over
    sibling pairs, in points, read against the 2-point stability threshold (stable: the whole
    interval below it), beside the sibling mask IoU (and its excess over layer-matched chance)
    at the reference density. `stable` is the mean alone under 2 points."""
    rows = results.get("connectivity") or []
    cons = results["consistency"]
    d = reference_density(sorted({r["density"] for r in cons}))
    iou = {r["spawn_epoch"]: r for r in cons if r["density"] == d and r.get("init", 0) == 0}
    out = []
    for t in sorted({r["spawn_epoch"] for r in rows}):
        for bn in dict.fromkeys(r["bn"] for r in rows):
            bs = [100 * r["barrier"] for r in rows if r["spawn_epoch"] == t and r["bn"] == bn]
            if not bs:
                continue
            c = iou.get(t, {})
            s = statistics.spread(bs)
            ci = statistics.interval(s["mean"], s["stderr"], len(bs) - 1)
            out.append({"spawn_epoch": t, "bn": bn, "barrier_points": s["mean"],
                        "barrier_std": s["std"], "barrier_stderr": s["stderr"],
                        "ci_low": ci and ci[0], "ci_high": ci and ci[1], "pairs": len(bs),
                        "stable": bool(s["mean"] < STABLE_POINTS),
                        "reading": {"below": "stable", "above": "unstable"}.get(
                            statistics.against(s["mean"], s["stderr"], len(bs) - 1,
                                               STABLE_POINTS), "inconclusive" if ci else
                            "one pair: no interval"), "density": d,
                        "iou_mean": c.get("iou_mean"),
                        "iou_excess": (c["iou_mean"] - c["layer_matched_chance_iou"]) if c else None})
    return out


def connectivity_verdict(results: dict) -> str:
    table = connectivity_table(results)
    if not table:
        return "Mode connectivity was not measured (--lmc_pairs=0)."
    parts = []
    for bn in dict.fromkeys(r["bn"] for r in table):
        rs = sorted((r for r in table if r["bn"] == bn), key=lambda r: r["spawn_epoch"])
        first, last = rs[0], rs[-1]
        stable_from = next((r["spawn_epoch"] for r in rs if r["stable"]), None)
        sure = [r["spawn_epoch"] for r in rs if r["reading"] == "stable"]
        parts.append(f"BN {bn}: barrier {first['barrier_points']:.1f} -> "
                     f"{last['barrier_points']:.1f} points from epoch {first['spawn_epoch']} to "
                     f"{last['spawn_epoch']} ("
                     + (f"stable, under 2 points, from epoch {stable_from}" if stable_from is not None
                        else "never under 2 points") + "; "
                     + (f"95% interval under 2 points at epoch(s) {', '.join(map(str, sure))}"
                        if sure else "under 2 points by its 95% interval at no epoch")
                     + f"; {first['pairs']} pair(s) per epoch)")
    rs = sorted((r for r in table if r["bn"] == table[0]["bn"]), key=lambda r: r["spawn_epoch"])
    if len(rs) > 1 and all(r["iou_excess"] is not None for r in rs):
        b = [r["barrier_points"] for r in rs]
        x = [r["iou_excess"] for r in rs]
        if len(rs) < 3 or np.std(b) == 0 or np.std(x) == 0:
            parts.append(f"a correlation of barriers with mask consistency is not computable "
                         f"from {len(rs)} spawn points" + (" (one of them does not vary)"
                                                           if len(rs) >= 3 else " (needs 3)"))
        else:
            together = np.corrcoef(b, x)[0, 1]
            word = ("fall as mask consistency rises" if together < -0.5 else
                    "rise with mask consistency" if together > 0.5 else
                    "move independently of mask consistency")
            parts.append(f"across {len(rs)} spawn points the barriers {word} (correlation "
                         f"{together:+.2f} with the IoU excess over layer-matched chance at "
                         f"{100 * rs[0]['density']:.1f}%; {len(rs)} points: suggestive, not a test)")
    return "; ".join(parts) + "."


def _measured(j: dict) -> dict:
    """A judged difference's numbers as table columns (points; the interval as low, high)."""
    ci = j["interval"]
    return {"delta_points": j["difference"], "stderr_points": j["stderr"],
            "ci_low": ci and ci[0], "ci_high": ci and ci[1]}


def _count_verdicts(ds: list[dict]) -> str:
    counts = {v: sum(x["verdict"] == v for x in ds) for v in dict.fromkeys(x["verdict"] for x in ds)}
    return ", ".join(f"{v} in {n}" for v, n in counts.items())


def imp_deltas(results: dict) -> list[dict]:
    """Each chain's accuracy minus single-network IMP's, level by level (levels >= 1; a row
    that is IMP's own, one-shot's level 1, is the reference, not compared), in points, judged
    by `statistics.judge`. The chains train different networks (unpaired): the
    variance of each mean is its runs' spread over its run count, where a chain with one run
    takes the dense siblings' spread at the rewind epoch; df is the smallest of those used."""
    rows = [r for r in results.get("imp") or [] if r["level"] > 0 and not r.get("same_as")]
    ref = {r["level"]: r for r in rows if r["chain"] == "imp"}
    out = []
    for r in rows:
        if r["chain"] == "imp" or r["level"] not in ref:
            continue
        sd_dense, df_dense, k = dense_noise(results, r.get("spawn_epoch"))
        var, dfs, sources = 0.0, [], []
        for g in (r, ref[r["level"]]):
            runs = g.get("runs", 1)
            if runs > 1 and g.get("test_accuracy_std") is not None:
                var += (100 * g["test_accuracy_std"]) ** 2 / runs
                dfs.append(runs - 1)
                sources.append(f"{g['chain']}: its {runs} runs")
            elif sd_dense is not None:
                var += sd_dense**2 / runs
                dfs.append(df_dense)
                sources.append(f"{g['chain']}: one run, the {k} dense siblings' spread")
            else:
                var = float("nan")
        se = float(np.sqrt(var)) if np.isfinite(var) else None
        j = statistics.judge(100 * (r["test_accuracy_mean"] - ref[r["level"]]["test_accuracy_mean"]),
                             se, min(dfs) if dfs and se is not None else None, r.get("runs", 1),
                             "; ".join(sources) or "none")
        out.append({"chain": r["chain"], "level": r["level"], "density": r["target_density"],
                    **_measured(j), "df": j["df"], "verdict": j["verdict"], "noise": j["noise"]})
    return out


def imp_verdict(results: dict) -> str:
    deltas = imp_deltas(results)
    if not deltas:
        return "IMP did not run (--imp_levels=0)."
    parts = []
    for chain in dict.fromkeys(x["chain"] for x in deltas):
        ds = [x for x in deltas if x["chain"] == chain]
        last = max(ds, key=lambda x: x["level"])
        name = "one-shot" if chain == "oneshot" else f"parallel IMP ({chain})"
        ci = ("" if last["ci_low"] is None else
              f", 95% CI {last['ci_low']:+.2f}..{last['ci_high']:+.2f}")
        parts.append(f"{name} - IMP: mean {np.mean([x['delta_points'] for x in ds]):+.2f} points, "
                     f"{last['delta_points']:+.2f} at the last level ({100 * last['density']:.1f}%"
                     f"{ci}: {last['verdict']}; levels: {_count_verdicts(ds)})")
    return "; ".join(parts) + "."


def readings(results: dict) -> dict[str, str]:
    """Every computed sentence, by claim or analysis (those whose section is present)."""
    out = {"Claim 1 (consistency)": consistency_verdict(results),
           "Claim 2 (composability)": composability.composition_verdict(results)}
    for name, section, verdict in (("Mode connectivity", "connectivity", connectivity_verdict),
                                   ("Baselines", "random_baselines",
                                    composability.baselines_verdict),
                                   ("Natural density", "natural_density",
                                    composability.natural_verdict),
                                   ("IMP", "imp", imp_verdict)):
        if results.get(section):
            out[name] = verdict(results)
    return out


def judged(results: dict) -> dict:
    """`results` with its verdicts recorded: `differences` (every judged difference with its
    interval, runs and noise source) and `readings` (the computed sentences). The report
    recomputes both from the tables, so a results.json judged by an older rule is redrawn by
    the current one (`python -m jaxlottery.report RUN_DIR`)."""
    return dict(results, differences=differences(results),
                readings=readings(results))
