"""Prose that quotes a results dict: a template's `{{ expression }}` or `{{ expression :format }}`
placeholders are evaluated against the results (helpers below) and formatted, so no sentence
of a reading can drift from its table. The tests render every template under docs/ and compare
with the committed text.

    python -m jaxlottery.quote docs/quick_fashion_mnist/README.md.in   # -> README.md beside it

A template names its results file on its first line, `<!-- results: results.json -->`, and
optionally a JSON file of facts measured outside the run (wall time, peak memory, date), seen
as `run`: `<!-- results: results.json, run.json -->` (paths relative to the template); that
line is not part of the output."""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Any

from jaxlottery import composability, config, reading, statistics
from jaxlottery.reading import baselines, composition, consistency, iterative
from jaxlottery.files import read_json
from jaxlottery.units import duration

_PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}", re.S)
_HEADER = re.compile(r"<!-- results: ([^,\s]+)(?:, (\S+))? -->\n")


class QuoteError(ValueError):
    """A placeholder that does not evaluate to exactly one value."""


def _matches(row: dict, where: dict) -> bool:
    for key, want in where.items():
        have = row.get(key)
        if isinstance(want, float) and isinstance(have, (int, float)):
            if not math.isclose(have, want, rel_tol=1e-3):
                return False
        elif have != want:
            return False
    return True


def namespace(results: dict, run: dict | None = None, here: str | None = None) -> dict[str, Any]:
    """What a placeholder can use: `results`, `run`, row finders over the results' sections and
    the readings' tables, `load(path)` for another run's JSON (relative to the template's
    folder `here`: a reading that compares two runs), a few formatting helpers, and the
    reading wing: `reading` (`reading.common.reference_density`, ...) and its analysis modules
    `consistency`, `composition`, `baselines`, `iterative` (connectivity's is
    `reading.connectivity`: `connectivity()` is its table)."""

    def rows(section: str | list, **where) -> list[dict]:
        table = results.get(section) or [] if isinstance(section, str) else section
        return [r for r in table if _matches(r, where)]

    def row(section: str | list, **where) -> dict:
        found = rows(section, **where)
        if len(found) != 1:
            raise QuoteError(f"{len(found)} rows of {section if isinstance(section, str) else 'a table'}"
                             f" match {where}, need exactly one")
        return found[0]

    def span(values, fmt: str = ".1f") -> str:
        """"lo-hi" of values as formatted ("lo to hi" when signed; one value when both format
        alike)."""
        lo, hi = format(min(values), fmt), format(max(values), fmt)
        signed = "+" in fmt or min(values) < 0
        return lo if lo == hi else f"{lo} to {hi}" if signed else f"{lo}-{hi}"

    def judged(section: str = "composition", reference: str = "baseline", **where) -> list[dict]:
        """The judged differences of a section (`composability.composition_deltas`; section
        "imp": `reading.iterative.imp_deltas`) matching `where`."""
        table = (iterative.imp_deltas(results) if section == "imp" else
                 composability.composition_deltas(results, section, reference))
        return rows(table, **where)

    def verdict_counts(table: list[dict]) -> str:
        """"2 effects, 1 inconclusive" for a list of judged differences."""
        counts = {v: sum(d["verdict"] == v for d in table) for v in dict.fromkeys(
            d["verdict"] for d in table)}
        return ", ".join(f"{n} {v}" for v, n in counts.items())

    def load(path: str) -> Any:
        if here is None:
            raise QuoteError("load() needs the template's folder (render_file)")
        return read_json(os.path.join(here, path))

    return {
        "results": results, "run": run or {}, "rows": rows, "row": row, "load": load,
        "differences": lambda: reading.differences(results),
        "connectivity": lambda: reading.connectivity.connectivity_table(results),
        "pct": lambda x: 100 * x, "duration": duration, "span": span,
        "judged": judged, "verdict_counts": verdict_counts,
        "statistics": statistics, "composability": composability, "config": config,
        "reading": reading, "consistency": consistency, "composition": composition,
        "baselines": baselines, "iterative": iterative,
        "imprint": lambda: consistency.imprint_of(results),
        **{f.__name__: f for f in (min, max, len, sum, abs, round, sorted, all, any, next, zip,
                                   map, list, dict, set, float, int, str, format)},
    }


def render(template: str, results: dict, run: dict | None = None,
           here: str | None = None) -> str:
    """The template with every placeholder replaced by its value (formatted after a colon)."""
    ns = namespace(results, run, here)

    def one(m: re.Match) -> str:
        text = m.group(1).strip()
        expr, fmt = text, ""
        if " :" in text:
            expr, fmt = text.rsplit(" :", 1)
        try:
            # The repository's own templates; globals, so comprehensions see the helpers too.
            value = eval(expr, {"__builtins__": {}, **ns})  # noqa: S307
        except QuoteError:
            raise
        except Exception as e:
            raise QuoteError(f"{{{{ {text} }}}}: {type(e).__name__}: {e}") from None
        return format(value, fmt.strip())

    return _PLACEHOLDER.sub(one, template)


def render_file(template_path: str) -> tuple[str, str]:
    """(output path, rendered text) of a `.in` template, its results read from its header."""
    with open(template_path) as f:
        text = f.read()
    header = _HEADER.match(text)
    if header is None or not template_path.endswith(".in"):
        raise QuoteError(f"{template_path}: a template ends in .in and starts with "
                         "'<!-- results: FILE -->'")
    here = os.path.dirname(template_path)
    results = read_json(os.path.join(here, header.group(1)))
    run = read_json(os.path.join(here, header.group(2))) if header.group(2) else None
    return template_path[:-3], render(text[header.end():], results, run, here)


def main(argv: list[str] | None = None) -> None:
    """Render each template given into the file it names (its path without `.in`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jaxlottery.quote", description=(
        "Render reading templates (docs/**/*.md.in) against the results they name, each into "
        "the file without .in beside it."))
    parser.add_argument("templates", nargs="+", metavar="TEMPLATE.md.in")
    for path in parser.parse_args(argv).templates:
        try:
            out, text = render_file(path)
        except (OSError, ValueError) as e:  # QuoteError, unreadable or invalid JSON
            sys.exit(f"error: {path}: {e}")
        with open(out, "w") as f:
            f.write(text)
        print(out)


if __name__ == "__main__":
    main()
