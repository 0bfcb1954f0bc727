"""Pruning criteria by name: the score that ranks a trained network's weights for its mask.

The study's masks (the siblings' one-shot masks and their snapshots, the composed masks and
their one-shot baselines, every IMP level) keep the prunable weights of highest score. A
criterion maps what is known about a network (`Evidence`) to a nonnegative score per weight,
shaped like its parameters; `masks.magnitude_prune` and `masks.compose` then rank the scores as
they rank |w| (the absolute value of a nonnegative score is itself), so a criterion is one
function and one `register` line. The reference masks (the spawn weights' own mask, "IoU with
W_t's mask") stay magnitude masks under every criterion: they measure the initialization's
imprint, whatever ranks the trained weights.

Shipped:
- `magnitude` |w_T| (the paper's; the default, every existing result unchanged);
- `movement` |w_T - w_t|: how far each weight travelled from where the network started (W_t
  for siblings, its own init for a control network), a mask that carries no magnitude of W_t;
- `snip` |w_t * dL/dw(w_t)| on the network's own first `SNIP_BATCHES` batches after its
  spawn point (Lee et al. 2019's connection sensitivity, scored at the spawn point, so siblings
  differ only in their data);
- `random` uniform scores from the network's own key: the control (consistency at chance).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

Params = Any

SNIP_BATCHES = 4  # the batches SNIP's gradient averages (part of what "snip" means)


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What a criterion may read about one network or a stack (leading member axis) of them.

    `params`: the trained weights W_T. `start`: the weights training started from (one network
    shared by a stack, or a stack). `keys`: one PRNG key per member (a stack) or one key.
    `grads`: dL/dw at `start` on the member's own first batches (shaped like `params`)."""

    params: Params
    start: Params | None = None
    keys: jax.Array | None = None
    grads: Params | None = None


@dataclasses.dataclass(frozen=True)
class Criterion:
    """A named score: `score(evidence) -> nonnegative pytree shaped like evidence.params`,
    reading only the evidence fields named in `needs`; `description` is what reports say."""

    name: str
    score: Callable[[Evidence], Params]
    description: str
    needs: tuple[str, ...] = ()

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise ValueError(f"a criterion's name must be an identifier, got {self.name!r}")
        unknown = set(self.needs) - {"start", "keys", "grads"}
        if unknown:
            raise ValueError(f"criterion {self.name!r} needs unknown evidence {sorted(unknown)}")


CRITERIA: dict[str, Criterion] = {}


def register(criterion: Criterion) -> Criterion:
    """Add (or replace) a named criterion; `--criterion` and every stage pick it up by name."""
    CRITERIA[criterion.name] = criterion
    return criterion


def get(name: str) -> Criterion:
    if name not in CRITERIA:
        raise ValueError(f"unknown criterion {name!r}; registered: {', '.join(sorted(CRITERIA))}")
    return CRITERIA[name]


def _uniform(keys: jax.Array, params: Params) -> Params:
    """Uniform [0, 1) scores like `params`, one draw per member key (a stack when `keys` has a
    leading axis, one network when it is a single key)."""
    def one(key, like):
        leaves, treedef = jax.tree.flatten(like)
        draws = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(treedef, [jax.random.uniform(k, x.shape, jnp.float32)
                                            for k, x in zip(draws, leaves)])
    if keys.ndim == 0:
        return one(keys, params)
    return jax.vmap(one)(keys, params)


register(Criterion("magnitude", lambda e: jax.tree.map(jnp.abs, e.params),
                   "global magnitude |w_T|"))
register(Criterion("movement",
                   lambda e: jax.tree.map(lambda w, s: jnp.abs(w - s), e.params, e.start),
                   "movement |w_T - w_t| from the spawn point", needs=("start",)))
register(Criterion("snip",
                   lambda e: jax.tree.map(lambda g, s: jnp.abs(g * s), e.grads, e.start),
                   f"SNIP |w_t dL/dw| at the spawn point on the network's own first "
                   f"{SNIP_BATCHES} batches", needs=("start", "grads")))
register(Criterion("random", lambda e: _uniform(e.keys, e.params),
                   "random scores (the control)", needs=("keys",)))


def scores(name: str, evidence: Evidence) -> Params:
    """The named criterion's nonnegative scores for `evidence` (checked for what it needs)."""
    criterion = get(name)
    missing = [f for f in criterion.needs if getattr(evidence, f) is None]
    if missing:
        raise ValueError(f"criterion {name!r} needs {', '.join(missing)} in its evidence")
    return criterion.score(evidence)
