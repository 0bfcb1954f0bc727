"""Claim 2's statistical model: composed masks against one-shot pruning, against each other and
against the positive control, judged as verdicts about methods rather than about single masks.
The sentences that read these comparisons are `jaxlottery.reading.composition` and
`jaxlottery.reading.baselines`.

The model. At one spawn point t and target density d, a family F (a method at a k', the one-shot
baseline, the layer-matched random control) has M_F replicate masks j (disjoint sibling groups;
single siblings), each retrained with the same R data orders r:

    y_Fjr = mu_F + o_r + a_Fj + e_Fjr,   a_Fj ~ N(0, s_mask^2),   e_Fjr ~ N(0, s_run^2)

The order effect o_r is shared by every mask of the cell, so it cancels from every comparison of
two families. A mask's mean over the orders, m_Fj, varies about its family's mean with variance
tau^2 = s_mask^2 + s_run^2 / R, estimated by the spread of mask means within each family, pooled
over the cell's families (df = sum of M_F - 1). The difference of two family means has standard
error tau sqrt(1/M_A + 1/M_B): mask-to-mask and order-to-order variation both, and with R = 1
tau is the spread between masks of one method retrained on the same order. A cell whose
families have one mask each (older runs) takes the dense siblings' spread instead, a lower
bound on tau (it has no mask-to-mask part), and says so.

Each comparison gets a t interval, a p-value of a difference from 0 and one of equivalence within
+-`statistics.MARGIN_POINTS` (two one-sided tests), both corrected by Holm within its family of
comparisons over the run (against the baseline and union against intersection together; the
dense control; the random baselines). Verdicts: "effect" (the corrected test excludes 0), "effect
within the margin" (and equivalence too), "equivalent" (equivalence only), "inconclusive". An
"equivalent" stands only at a density where the positive control (layer-matched random masks)
was detected; elsewhere it reads "inconclusive".
"""

from __future__ import annotations

import numpy as np

from jaxlottery import statistics

# Holm families: the comparisons corrected together (by reference), and the level.
COMPOSITION_FAMILY = ("baseline", "intersection")
LEVEL = 0.05
CONTROL = "random_matched"
# Accuracies are fractions of a finite test set, so a real spread of mask means is at least
# 100 / (n_test x orders) points; anything under this is float rounding of equal means.
ROUNDING_POINTS = 1e-9


def _replicate(e: dict) -> int:
    return e.get("replicate", e.get("sibling", 0))


def _runs(results: dict) -> dict:
    """Test accuracies in points by (spawn epoch, density, method, k) -> replicate -> seed, from
    the retrained masks (hand-built or older results without them: one mask, one order, its
    mean)."""
    runs: dict = {}
    for e in results.get("retrained_masks") or []:
        if e.get("natural"):  # their own cells: `natural_comparisons`
            continue
        family = (e["spawn_epoch"], e["target_density"], e["method"], e["k"])
        runs.setdefault(family, {}).setdefault(_replicate(e), {})[e.get("seed", 0)] = (
            100 * e["test_accuracy"])
    for r in (results.get("composition") or []) + (results.get("random_baselines") or []):
        family = (r["spawn_epoch"], r["target_density"], r["method"], r["k"])
        runs.setdefault(family, {0: {0: 100 * r["test_accuracy_mean"]}})
    return runs


def shared_runs(a: dict, b: dict) -> list[tuple[dict, dict]]:
    """The retraining runs two results have in common (same spawn point, target density,
    method, k', replicate mask and data order), paired: how a rerun shows it reproduced the
    runs it shares with an earlier one."""
    def key(e: dict) -> tuple:
        return (e["spawn_epoch"], e["target_density"], e["method"], e["k"], e.get("reinit", False),
                _replicate(e), e.get("seed", 0))

    theirs = {key(e): e for e in b.get("retrained_masks") or []}
    return [(e, theirs[key(e)]) for e in a.get("retrained_masks") or [] if key(e) in theirs]


def variance(families: list[np.ndarray]) -> dict:
    """The model's variance components from families of (masks x orders) accuracy tables:
    `tau` (std of a mask's mean over its orders, pooled within families) with `df`; and where
    R >= 2, `s_run` (order-to-order std within a mask, from the mask x order residuals; df
    sum (M - 1)(R - 1)) and `s_mask` (sqrt(max(0, tau^2 - s_run^2 / R)))."""
    means = [f.mean(axis=1) for f in families]
    tau, df = statistics.pooled_std(means)
    if tau is not None and tau < ROUNDING_POINTS:
        tau = 0.0  # equal means up to float rounding: no spread measured
    out = {"tau": tau, "df": df, "s_run": None, "s_mask": None}
    resid, df_run = 0.0, 0
    for f in families:
        m, r = f.shape
        if m > 1 and r > 1:
            e = f - f.mean(axis=1, keepdims=True) - f.mean(axis=0, keepdims=True) + f.mean()
            resid += float(np.sum(e**2))
            df_run += (m - 1) * (r - 1)
    if df_run and tau is not None:
        r = families[0].shape[1]
        out["s_run"] = float(np.sqrt(resid / df_run))
        out["s_mask"] = float(np.sqrt(max(0.0, tau**2 - out["s_run"] ** 2 / r)))
    return out


def dense_noise(results: dict, t: int | None) -> tuple[float | None, int, int]:
    """The dense siblings spawned at epoch t (of the first init): their accuracy spread in
    points (ddof=1), its degrees of freedom and their number: the noise of a single network
    where nothing else measures it."""
    row = next((r for r in results.get("dense") or []
                if r.get("spawn_epoch") == t and r.get("init", 0) == 0), None)
    if row is None or row.get("std") is None:
        return None, 0, 0
    runs = row.get("runs") or len(row.get("test_accuracy") or [])
    return 100 * row["std"], runs - 1, runs


def _overlap(results: dict, t: int, d: float, a: tuple, b: tuple) -> float | None:
    """Mean IoU between the masks of family a and of family b ((method, k) each) at (t, d)."""
    values = [r["iou"] for r in results.get("mask_overlaps") or []
              if r["spawn_epoch"] == t and np.isclose(r["density"], d)
              and {(r["method_a"], r["k_a"]), (r["method_b"], r["k_b"])} == {a, b}]
    return float(np.mean(values)) if values else None


def _compare(name: tuple, other: tuple, fams: dict, tau: dict, reference: str, section: str,
             t: int, d: float, results: dict) -> dict:
    """One comparison: family `name` minus family `other` ((method, k) -> masks x orders)."""
    a, b = fams[name], fams[other]
    diff = float(a.mean() - b.mean())
    ma, mb = a.shape[0], b.shape[0]
    se = None if tau["tau"] is None else tau["tau"] * np.sqrt(1 / ma + 1 / mb)
    j = statistics.judge(diff, se, tau["df"] or None, ma * a.shape[1], tau["source"])
    row = {"spawn_epoch": t, "k": name[1], "density": d, "method": name[0],
           "reference": reference, "section": section, "delta_points": diff,
           "stderr_points": se, "ci_low": j["interval"] and j["interval"][0],
           "ci_high": j["interval"] and j["interval"][1], "df": j["df"], "masks": ma,
           "reference_masks": mb, "orders": a.shape[1], "runs": ma * a.shape[1],
           "bound_points": j["interval"] and max(abs(x) for x in j["interval"]),
           "p": None, "p_equivalence": None, "iou": None, "replicate_iou": None,
           "s_mask": tau["s_mask"], "s_run": tau["s_run"], "noise": tau["source"]}
    if se is not None and j["df"]:
        row["p"] = statistics.p_difference(diff, se, j["df"])
        row["p_equivalence"] = statistics.p_equivalence(diff, se, j["df"])
    if reference != "dense":
        row["iou"] = _overlap(results, t, d, name, other)
    row["replicate_iou"] = _overlap(results, t, d, name, name)
    return row


def _noise(fams: list[np.ndarray], results: dict, t: int, what: str) -> dict:
    """The cell's tau: pooled over `fams` where a family has two masks (and they differ at
    all), else the dense siblings' spread (divided by sqrt(R): a mean over R orders), with its
    source in words."""
    v = variance(fams)
    r = fams[0].shape[1]
    if v["tau"]:
        n = sum(f.shape[0] for f in fams if f.shape[0] > 1)
        return dict(v, source=f"spread of mask means within {what}, pooled ({n} masks x {r} "
                    "order(s): mask-to-mask and order-to-order variation)")
    sd, df, k = dense_noise(results, t)
    why = "no replicate masks" if v["tau"] is None else "replicate masks all scored alike"
    return {"tau": None if sd is None else sd / np.sqrt(r), "df": df, "s_run": None,
            "s_mask": None, "source": f"{why}: the spread of the {k} dense siblings "
            f"spawned at epoch {t} (no mask-to-mask part: a lower bound)"}


def comparisons(results: dict) -> list[dict]:
    """Every composition comparison of the run, judged (see the module): each composed
    family minus the one-shot baseline, union minus intersection at each k', each composed
    family minus the dense control, and each random baseline (the control among them) minus the
    one-shot baseline; per (spawn epoch, density)."""
    runs = _runs(results)
    composed = {r["method"] for r in results.get("composition") or []} - {"baseline", "dense"}
    extra = {r["method"] for r in results.get("random_baselines") or []}
    out = []
    for t, d in dict.fromkeys((f[0], f[1]) for f in runs if f[1] < 1):
        here = {(m, k): by_mask for (tt, dd, m, k), by_mask in runs.items()
                if tt == t and np.isclose(dd, d)}
        dense = runs.get((t, 1.0, "dense", 1))
        orders = sorted(set.intersection(*(set(s) for f in here.values() for s in f.values()),
                                         *([set(dense[0])] if dense else [])))
        if not orders or ("baseline", 1) not in here:
            continue
        fams = {name: np.asarray([[s[o] for o in orders] for s in f.values()])
                for name, f in here.items()}
        if dense:
            fams["dense", 1] = np.asarray([[dense[0][o] for o in orders]])
        magnitude = [n for n in fams if n[0] in composed]
        tau = _noise([fams[n] for n in magnitude + [("baseline", 1)]], results, t,
                     "each composition method and the one-shot baseline")
        for name in magnitude:
            out.append(_compare(name, ("baseline", 1), fams, tau, "baseline", "composition",
                                t, d, results))
            if name[0] == "union" and ("intersection", name[1]) in fams:
                out.append(_compare(name, ("intersection", name[1]), fams, tau, "intersection",
                                    "composition", t, d, results))
            if ("dense", 1) in fams:
                out.append(_compare(name, ("dense", 1), fams, tau, "dense", "composition",
                                    t, d, results))
        others = [n for n in fams if n[0] in extra]
        if others:
            tau_x = _noise([fams[n] for n in others + [("baseline", 1)]], results, t,
                           "each random baseline and the one-shot baseline")
            out += [_compare(n, ("baseline", 1), fams, tau_x, "baseline", "random_baselines",
                             t, d, results) for n in others]
    return _verdicts(out)


def _family(row: dict) -> tuple:
    """The Holm family of a comparison."""
    if row["section"] == "composition":
        return ("composition", "dense" if row["reference"] == "dense" else "methods")
    return ("random_baselines", row["method"] == CONTROL)


def _verdicts(rows: list[dict]) -> list[dict]:
    """Holm-corrected p-values and the verdict of every comparison; "equivalent" only where
    the control was detected at that (spawn epoch, density)."""
    for fam in dict.fromkeys(_family(r) for r in rows):
        members = [r for r in rows if _family(r) == fam]
        for key in ("p", "p_equivalence"):
            for r, adjusted in zip(members, statistics.holm([r[key] for r in members])):
                r[f"{key}_holm"] = adjusted
        for r in members:
            r["comparisons"] = len(members)
    detected = {(r["spawn_epoch"], r["density"]): control_detected(r)
                for r in rows if r["section"] == "random_baselines" and r["method"] == CONTROL}
    for r in rows:
        p, q = r["p_holm"], r["p_equivalence_holm"]
        if p is None:
            r["verdict"] = "no noise estimate"
        elif p < LEVEL:
            r["verdict"] = "effect within the margin" if q < LEVEL / 2 else "effect"
        else:
            r["verdict"] = "equivalent" if q < LEVEL / 2 else "inconclusive"
        r["control"] = {True: "detected", False: "not detected", None: "absent"}[
            detected.get((r["spawn_epoch"], r["density"]))]
        if r["verdict"] == "equivalent" and r["control"] != "detected" and r["section"] == "composition":
            r["verdict"] = "inconclusive"  # a design that could not see the control
    return rows


def control_detected(control: dict) -> bool:
    """Whether a comparison of the positive control with one-shot detected it: below one-shot,
    Holm-corrected p under LEVEL."""
    return control["p_holm"] is not None and control["p_holm"] < LEVEL and control["delta_points"] < 0


def natural_comparisons(results: dict) -> list[dict]:
    """`--natural_density`: each composed mask at the density composition gave it against
    one-shot masks (and the control) retrained at that density, judged by the same model as
    the matched cells, as a family of their own (Holm over these comparisons only). Rows as
    `comparisons`, with `from_density`, the target the siblings were pruned to."""
    entries = results.get("retrained_masks") or []
    natural = [dict(e, natural=False) for e in entries if e.get("natural")]
    if not natural:
        return []
    rows = results.get("natural_density") or []
    sub = {"retrained_masks": natural + [e for e in entries if e["method"] == "dense"],
           "composition": [r for r in rows if r["method"] != CONTROL],
           "random_baselines": [r for r in rows if r["method"] == CONTROL],
           "dense": results.get("dense") or [], "mask_overlaps": results.get("mask_overlaps")}
    source = {(e["spawn_epoch"], e["target_density"]): e["sibling_density"] for e in natural}
    return [dict(r, natural=True, from_density=source[r["spawn_epoch"], r["density"]])
            for r in comparisons(sub)]


def composition_deltas(results: dict, section: str = "composition",
                       reference: str = "baseline") -> list[dict]:
    """The judged comparisons of `section` (composition or random_baselines) against
    `reference` (baseline, intersection or dense)."""
    return [r for r in comparisons(results) if r["section"] == section
            and r["reference"] == reference]
