"""Linear mode connectivity (Frankle et al. 2020, arXiv 1912.05671) between two networks.

The instability of two siblings is the largest test error on the straight line between their
weights minus the mean of the two end points' errors; under about 2 points counts as stable.
BatchNorm statistics on the path are either interpolated with the weights
(`bn="interpolate"`) or recomputed for each point from training batches (`bn="recompute"`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlottery import data as data_lib
from jaxlottery import train as train_lib


def interpolate(a: Any, b: Any, alpha: float) -> Any:
    """(1 - alpha) a + alpha b, leaf by leaf (alpha 0 gives a, alpha 1 gives b, exactly)."""
    return jax.tree.map(lambda x, y: (1 - alpha) * x + alpha * y, a, b)


def recompute_batch_stats(variables: dict, data: data_lib.DeviceData, model: nn.Module,
                          batches: int = 20, batch_size: int = 500) -> dict:
    """BatchNorm statistics of `variables` re-estimated on the first `batches` training
    batches (unaugmented): the mean over batches of each batch's mean and variance."""
    probe = model.clone(bn_momentum=0.0)  # running statistics := this batch's statistics
    n = data.x_train.shape[0]
    batch_size = min(batch_size, n)
    starts = [min(i * batch_size, n - batch_size) for i in range(batches) if i * batch_size < n]
    total = None
    for s in starts:
        st = _batch_stats(variables, data, jnp.asarray(s), probe=probe, batch_size=batch_size)
        total = st if total is None else jax.tree.map(jnp.add, total, st)
    return {"params": variables["params"],
            "batch_stats": jax.tree.map(lambda x: x / len(starts), total)}


@functools.partial(jax.jit, static_argnames=("probe", "batch_size"))
def _batch_stats(variables: dict, data: data_lib.DeviceData, start: jax.Array, *,
                 probe: nn.Module, batch_size: int) -> Any:
    x = jax.lax.dynamic_slice_in_dim(data.x_train, start, batch_size)
    _, updates = probe.apply(variables, data_lib.normalize(x, data.mean, data.std), train=True,
                             mutable=["batch_stats"])
    return updates["batch_stats"]


def error_barrier(a: dict, b: dict, data: data_lib.DeviceData, model: nn.Module,
                  points: int = 31, bn: str = "interpolate", eval_batch: int = 1000,
                  on_point: Callable[[], Any] | None = None) -> dict:
    """Test error along the line from `a` to `b` (variables dicts) and its barrier height.

    Returns alphas, errors (fractions), the end points' errors and `barrier` = max error -
    mean of the end errors, in fractions (x100 for points). `on_point()` runs after each
    point (a progress bar's update)."""
    if bn not in ("interpolate", "recompute"):
        raise ValueError(f"bn must be 'interpolate' or 'recompute', got {bn!r}")
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    alphas = np.linspace(0.0, 1.0, points)
    errors = []
    for alpha in alphas:
        v = interpolate(a, b, float(alpha))
        if bn == "recompute":
            v = recompute_batch_stats(v, data, model)
        errors.append(1.0 - train_lib.evaluate(v, data, model, eval_batch)["accuracy"])
        if on_point is not None:
            on_point()
    ends = (errors[0], errors[-1])
    return {"alphas": alphas.tolist(), "errors": errors, "end_errors": list(ends), "bn": bn,
            "barrier": float(max(errors) - np.mean(ends))}
