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
from jaxlottery import siblings, stacks


def interpolate(a: Any, b: Any, alpha: float) -> Any:
    """(1 - alpha) a + alpha b, leaf by leaf (alpha 0 gives a, alpha 1 gives b, exactly)."""
    return jax.tree.map(lambda x, y: (1 - alpha) * x + alpha * y, a, b)


@jax.jit
def path(a: Any, b: Any, alphas: jax.Array) -> Any:
    """The networks at `alphas` on the line from `a` to `b`, as a stack (leading axis = points);
    the end points (alpha 0 and 1) are a and b exactly."""
    def one(x, y):
        al = alphas.reshape((-1,) + (1,) * x.ndim).astype(x.dtype)
        return (1 - al) * x[None] + al * y[None]
    return jax.tree.map(one, a, b)


@functools.lru_cache(maxsize=None)
def _batch_stats_program(model: nn.Module, strategy: str, k: int, n: int, batches: int,
                         batch_size: int, on_device: bool, xla_options: str):
    # running statistics := this batch's statistics
    probe = siblings.member_model(model.clone(bn_momentum=0.0), strategy)

    def one(variables, data, i):
        x = jax.lax.dynamic_slice_in_dim(data.x_train, jnp.minimum(i * batch_size, n - batch_size),
                                         batch_size)
        _, updates = probe.apply(variables, data_lib.normalize(x, data.mean, data.std),
                                 train=True, mutable=["batch_stats"])
        return updates.get("batch_stats", {})  # a network without BatchNorm has none

    def zero(stack):
        return jax.tree.map(jnp.zeros_like, stack["batch_stats"])
    return siblings.batched_sums(one, zero, strategy, k, batches, on_device, xla_options)


def recompute_batch_stats(stack: dict, data: data_lib.DeviceData, model: nn.Module,
                          batches: int = 20, batch_size: int = 500, *,
                          strategy: str | None = None, steps_per_call: int | None = None,
                          xla_options: str | None = None) -> dict:
    """BatchNorm statistics of every network of a stack of variables, re-estimated on the first
    `batches` training batches (unaugmented): the mean over batches of each batch's mean and
    variance. All networks in one program (see `siblings.batched_sums`)."""
    n = data.x_train.shape[0]
    batch_size = min(batch_size, n)
    batches = min(batches, -(-n // batch_size))
    how = siblings.resolve(strategy, steps_per_call, xla_options)
    fn = _batch_stats_program(model, how.strategy, stacks.size(stack), n, batches, batch_size,
                              how.steps_per_call > 1, how.xla_options)
    return {"params": stack["params"],
            "batch_stats": jax.tree.map(lambda x: x / batches, fn(stack, data))}


def error_barrier(a: dict, b: dict, data: data_lib.DeviceData, model: nn.Module,
                  points: int = 31, bn: str = "interpolate", eval_batch: int = 1000,
                  on_point: Callable[[], Any] | None = None, *, chunk: int | None = None,
                  strategy: str | None = None, steps_per_call: int | None = None,
                  xla_options: str | None = None) -> dict:
    """Test error along the line from `a` to `b` (variables dicts) and its barrier height.

    The points are evaluated (and, with bn="recompute", their BN statistics re-estimated) as
    stacks of `chunk` networks (default: all points in one), the last chunk padded. Returns
    alphas, errors (fractions), the end points' errors and `barrier` = max error - mean of the
    end errors, in fractions (x100 for points). `on_point()` runs once per point evaluated
    (a progress bar's update)."""
    if bn not in ("interpolate", "recompute"):
        raise ValueError(f"bn must be 'interpolate' or 'recompute', got {bn!r}")
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    alphas = np.linspace(0.0, 1.0, points)
    chunk = min(chunk or points, points)
    how = dict(strategy=strategy, steps_per_call=steps_per_call, xla_options=xla_options)
    errors = []
    for c in range(0, points, chunk):
        part = alphas[np.minimum(np.arange(c, c + chunk), points - 1)]
        stack = path(a, b, jnp.asarray(part, jnp.float32))
        if bn == "recompute":
            stack = recompute_batch_stats(stack, data, model, **how)
        res = siblings.evaluate_stack(stack, data, model, eval_batch, **how)
        for r in res[:min(chunk, points - c)]:
            errors.append(1.0 - r["accuracy"])
            if on_point is not None:
                on_point()
    ends = (errors[0], errors[-1])
    return {"alphas": alphas.tolist(), "errors": errors, "end_errors": list(ends), "bn": bn,
            "barrier": float(max(errors) - np.mean(ends))}
