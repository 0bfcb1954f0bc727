"""The reading wing: one module per analysis, each reading a results dict only and producing
that analysis's tables, verdict sentence, report.md section and figures (`common`: what they
share). `ANALYSES` lists them in the order of `results["readings"]`; `jaxlottery.report`
assembles report.md, the CSV tables and the figures from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from jaxlottery import composability, paths
from jaxlottery.reading import baselines, composition, connectivity, consistency, iterative


def _always(results: dict) -> bool:
    return True


def _has(section: str) -> Callable[[dict], bool]:
    """Whether a results dict has rows in `section`."""
    return lambda results: bool(results.get(section))


@dataclasses.dataclass(frozen=True)
class Figure:
    """A PNG of an analysis: its file name (`jaxlottery.paths`), the function drawing it
    (results, path -> its legend's labels) and whether a results dict gets it."""

    file: str
    draw: Callable[[dict, str], list[str]]
    drawn: Callable[[dict], bool] = _always


@dataclasses.dataclass(frozen=True)
class Analysis:
    """An analysis as the report reads it: its name (its key in `results["readings"]`), whether
    a results dict has it, its verdict sentence, its report.md section (a list of blocks; None
    where another analysis's section holds it), its figures, the CSV tables derived from it
    (name -> rows) and the judged differences it adds to differences.csv."""

    name: str
    present: Callable[[dict], bool]
    verdict: Callable[[dict], str]
    section: Callable[[dict], list[str]] | None = None
    figures: tuple[Figure, ...] = ()
    tables: Mapping[str, Callable[[dict], list[dict]]] = dataclasses.field(default_factory=dict)
    differences: Callable[[dict], list[dict]] | None = None


ANALYSES = (
    Analysis("Claim 1 (consistency)", _always, consistency.consistency_verdict,
             section=consistency.section,
             figures=(Figure(paths.FIGURES["overlap"], consistency.figure_overlap),
                      Figure(paths.FIGURES["layers"], consistency.figure_layers,
                             _has("consistency_layers")),
                      Figure(paths.EXTRA_FIGURES["trajectory"], consistency.figure_trajectory,
                             _has("trajectory")))),
    # Claim 2's comparisons include the random baselines' (one model, `composability`).
    Analysis("Claim 2 (composability)", _always, composition.composition_verdict,
             section=composition.section,
             figures=(Figure(paths.FIGURES["accuracy"], composition.figure_accuracy,
                             _has("composition")),),
             differences=composability.comparisons),
    Analysis("Mode connectivity", _has("connectivity"), connectivity.connectivity_verdict,
             section=connectivity.section,
             figures=(Figure(paths.EXTRA_FIGURES["connectivity"],
                             connectivity.figure_connectivity),),
             tables={"connectivity": connectivity.connectivity_table}),
    Analysis("Baselines", _has("random_baselines"), baselines.baselines_verdict,
             section=baselines.section,
             figures=(Figure(paths.EXTRA_FIGURES["random_baselines"],
                             baselines.figure_baselines),)),
    # Its section is a part of claim 2's, its points are drawn on claim 2's figure.
    Analysis("Natural density", _has("natural_density"), composition.natural_verdict,
             differences=composition.natural_differences),
    Analysis("IMP", _has("imp"), iterative.imp_verdict, section=iterative.section,
             figures=(Figure(paths.EXTRA_FIGURES["imp"], iterative.figure_imp),),
             differences=iterative.imp_differences),
)


def differences(results: dict) -> list[dict]:
    """Every judged difference (differences.csv): the composition comparisons
    (`composability.comparisons`: composed masks against one-shot, union against
    intersection, against the dense control, random baselines against one-shot; with
    `--natural_density` the natural-density cells, section `natural_*`), then the IMP
    chains minus single-network IMP."""
    return [d for a in ANALYSES if a.differences is not None for d in a.differences(results)]


def readings(results: dict) -> dict[str, str]:
    """Every computed sentence, by claim or analysis (those whose section is present)."""
    return {a.name: a.verdict(results) for a in ANALYSES if a.present(results)}


def judged(results: dict) -> dict:
    """`results` with its verdicts recorded: `differences` (every judged difference with its
    interval, runs and noise source) and `readings` (the computed sentences). The report
    recomputes both from the tables, so a results.json judged by an older rule is redrawn by
    the current one (`python -m jaxlottery.report RUN_DIR`)."""
    return dict(results, differences=differences(results),
                readings=readings(results))
