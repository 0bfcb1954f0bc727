"""Which code made a run: the package version and, in a git checkout, the commit (and whether
the working tree had changes). Recorded in every run's config.json and results.json, and printed
by `--version`."""

from __future__ import annotations

import functools
import os
import subprocess

import jaxlottery


@functools.lru_cache(maxsize=None)
def source(here: str | None = None) -> dict:
    """{"version", "commit" (40 hex digits, or None outside a git checkout or without git),
    "modified" (tracked files changed since that commit; None without a commit)} of the code
    in `here` (default: the folder holding this package)."""
    here = here or os.path.dirname(os.path.dirname(os.path.abspath(jaxlottery.__file__)))

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", here, *args], capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--verify", "HEAD")
    if commit is not None and len(commit) != 40:
        commit = None
    changes = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"version": jaxlottery.__version__, "commit": commit,
            "modified": None if changes is None else bool(changes)}


def describe() -> str:
    """'jaxlottery 0.1.0 (commit 8ef233f, modified)'."""
    s = source()
    if not s["commit"]:
        return f"jaxlottery {s['version']}"
    return (f"jaxlottery {s['version']} (commit {s['commit'][:7]}"
            f"{', modified' if s['modified'] else ''})")
