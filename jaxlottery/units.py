"""How quantities read in prose: durations sized for people (logs, estimates, readings)."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """A human-sized duration: 40 s, 12 min, 3.5 h, 9 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} days"
