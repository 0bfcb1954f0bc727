"""What several analyses of the reading wing share: the methods and the reference density
their readings quote, the markdown table and number formats, the CSV writer and the matplotlib
helpers (a figure's style per composition method, its legend, error bars, the atomic PNG)."""

from __future__ import annotations

import csv
import io

import numpy as np

from jaxlottery.files import atomic_write_bytes
from jaxlottery.masks import COMPOSITIONS


def methods_in(rows: list[dict], key: str = "method") -> list[str]:
    """The composition methods present in `rows`, registered ones in registry order first."""
    present = list(dict.fromkeys(r[key] for r in rows))
    return [m for m in COMPOSITIONS if m in present] + [m for m in present if m not in COMPOSITIONS]


def reference_density(densities: list[float]) -> float:
    """The density the verdicts quote: the one closest to 10.7% (0.8^10)."""
    return min(densities, key=lambda d: abs(np.log(d / 0.8**10)))


def markdown_table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    """A markdown table of `rows`, one column per (key, heading, format) ("-" where a row has
    no value)."""
    head = "| " + " | ".join(c[1] for c in cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = ""
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            cells.append("-" if v is None else format(v, fmt) if fmt else str(v))
        body += "| " + " | ".join(cells) + " |\n"
    return head + body


def num(value: float | None, fmt: str) -> str:
    """A number formatted, or "-" right-aligned in its width where there is none."""
    return format(value, fmt) if value is not None else "-".rjust(int(fmt.split(".")[0]))


def points(fraction: float | None, scale: float = 100) -> str:
    """A spread in points ("-" where one run leaves it undefined)."""
    return "-" if fraction is None else f"{scale * fraction:.2f}"


def write_csv(path: str, rows: list[dict]) -> None:
    """`rows` as a CSV file (every key any row has; lists joined by ";"), written atomically."""
    buf = io.StringIO()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str) -> None:
    """The figure as a PNG at `path`, written atomically; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def style(method: str) -> tuple[str, str, str]:
    """(label, color, marker) of a composition method (an unregistered one: red crosses)."""
    c = COMPOSITIONS.get(method)
    return (c.label, c.color, c.marker) if c else (method, "tab:red", "x")


def legend_labels(ax) -> list[str]:
    """The labels of an axes' legend (none without one)."""
    return [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []


ERROR_BARS = "error bars: standard error over the retraining runs (none: one run)"


def error_bars(rows: list[dict]) -> list[float]:
    """Error bars in points: each row's standard error over its runs (0 for one run)."""
    return [100 * (r.get("test_accuracy_stderr") or 0) for r in rows]
