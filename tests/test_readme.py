"""Every jaxlottery name the README and its guide pages (docs/guide/) mention exists and has a
docstring; their commands are real."""

import glob
import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONT = open(os.path.join(ROOT, "README.md")).read()  # the front door alone
GUIDE = sorted(glob.glob(os.path.join(ROOT, "docs", "guide", "*.md")))
# what the names and commands are checked in: the README and every guide page it links to
README = "\n".join([FRONT, *(open(path).read() for path in GUIDE)])
MODULES = ("masks", "stacks", "models", "data", "datasets", "train", "siblings", "sharding",
           "imp", "connectivity", "config", "experiment", "stages", "retraining", "pipeline",
           "paths", "results", "estimate", "report", "reading", "checkpoint", "files",
           "cli")


def mentioned():
    names = set()
    for module in MODULES:
        for attr in re.findall(rf"\b{module}\.([A-Za-z_][A-Za-z0-9_]*)", README):
            if attr not in ("md", "json", "csv", "png", "npz", "py"):  # file names, not API
                names.add((module, attr))
    for module, attrs in re.findall(r"from jaxlottery\.(\w+) import ([\w, ]+)", README):
        names.update((module, a.strip()) for a in attrs.split(","))
    return sorted(names)


def test_the_readme_mentions_the_api():
    assert len(mentioned()) >= 15


@pytest.mark.parametrize("module,attr", mentioned())
def test_every_mentioned_name_exists_and_is_documented(module, attr):
    obj = getattr(importlib.import_module(f"jaxlottery.{module}"), attr)
    if callable(obj):
        assert obj.__doc__ and obj.__doc__.strip(), f"jaxlottery.{module}.{attr} has no docstring"


def test_the_readme_commands_name_real_files():
    for path in re.findall(r"python (experiments/\w+\.py|benchmarks/\w+\.py)", README):
        assert os.path.exists(os.path.join(ROOT, path)), path
    assert "pip install -e . && python experiments/run.py --k=10" in FRONT
    assert 'pip install -e ".[dev]" && python -m pytest' in FRONT
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert 'python -m pip install -e ".[dev]"' in ci and "python -m pytest" in ci


def test_dependency_floors_are_the_tested_minimum_versions():
    """pyproject.toml's floors are exactly the versions .ci/run installs and tests."""
    project = open(os.path.join(ROOT, "pyproject.toml")).read()
    floors = dict(re.findall(r'"([a-z_-]+)>=([0-9.]+)"', project.split("[project.scripts]")[0]))
    pins = dict(re.findall(r"^([a-z_-]+)==([0-9.]+)$",
                           open(os.path.join(ROOT, ".ci", "min_versions.txt")).read(), re.M))
    core = ("jax", "flax", "optax", "orbax-checkpoint", "numpy", "scipy", "tensorflow-datasets")
    from packaging.version import Version  # pytest's own dependency

    assert {p: Version(floors[p]) for p in core} == {p: Version(pins[p]) for p in core}
    assert pins["jaxlib"] == pins["jax"]
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert "-c .ci/min_versions.txt" in ci and 'pytest -m "not slow"' in ci
