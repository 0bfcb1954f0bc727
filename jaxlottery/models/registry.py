"""Models by name: a family is a name pattern, a Flax module, a prunable rule and a
description; a model is one member of a family, named as OpenLTH names it where it can
(`cifar_resnet_20`, `cifar_vgg_16`). Every module of this package that calls `register` adds
its family; `jaxlottery.models` imports them all, so a new family is one new file."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlottery import masks

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # validation.COMPUTE_DTYPES


@dataclasses.dataclass(frozen=True)
class Family:
    """A family of networks named `<prefix>_<arguments>`.

    `pattern` matches the arguments (named groups: digits become ints, an unmatched optional
    group takes `defaults`' value); `module(num_classes=, dtype=, conv=, **arguments)` builds
    the Flax module (a `layers.Network`) and raises ValueError for arguments that name no
    member; `describe(**arguments)` is what logs and reports call the network; `prunable` is
    the rule every mask of the study is made with (`jaxlottery.masks`' rule form); `toy` names
    a small member for contract tests."""

    prefix: str
    syntax: str
    pattern: str
    module: Callable[..., nn.Module]
    describe: Callable[..., str]
    toy: str
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    prunable: masks.Rule = masks.default_rule

    def parse(self, name: str) -> dict[str, Any] | None:
        """The arguments `name` gives this family, or None when it is not one of its names."""
        found = re.fullmatch(re.escape(self.prefix) + "_" + self.pattern, name)
        if found is None:
            return None
        return {k: self.defaults[k] if v is None else int(v) if v.isdigit() else v
                for k, v in found.groupdict().items()}


@dataclasses.dataclass(frozen=True)
class Model:
    """One named network: its family and the arguments its name gives."""

    name: str
    family: Family
    arguments: tuple[tuple[str, Any], ...]

    @property
    def description(self) -> str:
        return self.family.describe(**dict(self.arguments))

    @property
    def prunable(self) -> masks.Rule:
        return self.family.prunable

    def module(self, num_classes: int = 10, compute_dtype: str = "float32",
               conv: str = "lax") -> nn.Module:
        """The Flax module for `num_classes` classes computing in `compute_dtype` (by name)."""
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got "
                             f"{compute_dtype!r}")
        return self.family.module(num_classes=num_classes, dtype=COMPUTE_DTYPES[compute_dtype],
                                  conv=conv, **dict(self.arguments))

    def prunable_weights(self, num_classes: int = 10,
                         image_shape: tuple[int, int, int] = (32, 32, 3)) -> int:
        """How many weights the family's rule prunes (from shapes: nothing is computed)."""
        params = jax.eval_shape(lambda: init(jax.random.key(0), self.name, num_classes,
                                             image_shape))["params"]
        rule = jax.tree.leaves(masks.prunable(params, self.prunable))
        return sum(math.prod(x.shape) for x, p in zip(jax.tree.leaves(params), rule) if p)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add a family (its prefix must be new); returns it."""
    if family.prefix in FAMILIES:
        raise ValueError(f"a model family named {family.prefix!r} is already registered")
    FAMILIES[family.prefix] = family
    return family


def syntaxes() -> str:
    return ", ".join(f.syntax for f in FAMILIES.values())


def get(name: str) -> Model:
    """The model `name` names; ValueError naming the families' syntax when it names none."""
    if not isinstance(name, str):
        raise ValueError(f"a model is named by a string ({syntaxes()}), got {name!r}")
    return _get(name)


@functools.lru_cache(maxsize=None)
def _get(name: str) -> Model:
    for family in FAMILIES.values():
        arguments = family.parse(name)
        if arguments is not None:
            model = Model(name, family, tuple(arguments.items()))
            model.module()  # its arguments name a member, or ValueError says why not
            return model
    raise ValueError(f"unknown model {name!r}; models are named {syntaxes()} (e.g. "
                     f"{', '.join(f.toy for f in FAMILIES.values())})")


def create(name: str, num_classes: int = 10, compute_dtype: str = "float32",
           conv: str = "lax") -> nn.Module:
    """The Flax module of the model `name` (`Model.module`)."""
    return get(name).module(num_classes, compute_dtype, conv)


def init(key: jax.Array, name: str = "cifar_resnet_20", num_classes: int = 10,
         image_shape: tuple[int, int, int] = (32, 32, 3)) -> dict[str, Any]:
    """Initialize the model `name`: `{"params": ..., "batch_stats": ...}` as plain dicts."""
    variables = _init_fn(name, num_classes, tuple(image_shape))(key)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


@functools.lru_cache(maxsize=None)
def _init_fn(name: str, num_classes: int, image_shape: tuple[int, int, int]):
    """One compiled initializer per model and image shape."""
    model = create(name, num_classes)
    return jax.jit(lambda k: model.init(k, jnp.zeros((1, *image_shape)), train=False))


def apply(variables: dict[str, Any], images: jax.Array, *, name: str = "cifar_resnet_20",
          num_classes: int = 10, train: bool = False):
    """Forward pass. In eval mode returns logits; in train mode `(logits, new_batch_stats)`."""
    model = create(name, num_classes)
    if not train:
        return model.apply(variables, images, train=False)
    logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
    return logits, updates.get("batch_stats", {})  # a network without BatchNorm has none
