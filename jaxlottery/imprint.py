"""The initialization's imprint on the final weights: how much of a weight's value at some
iteration is still in it at the end of training, from the recipe alone.

With coupled weight decay (wd * w added to the gradient before momentum m), once momentum is in
its steady state every step shrinks w by lr_s * wd / (1 - m), whatever the gradient adds; the
part of w that is its value at iteration t therefore decays to

    exp(-wd / (1 - m) * sum over iterations s >= t of lr_s).

Assumptions: momentum's steady state (its ramp-up after a spawn is ignored) and plain SGD on w;
the scale invariance of weights followed by BatchNorm (which lets the gradient regrow a shrunk
weight's norm) is ignored. The paper's recipe keeps about 0.04 of W_0 (160 epochs of CIFAR-10),
30 epochs about 0.54, the `quick` preset 0.98. Magnitude masks of a run that keeps most of it
largely restate W_0's magnitudes, so such a run cannot test claim 1 (PROTOCOL.md, "What a run
can test"). Pure Python: configuration and readings use it without the training code.
"""

from __future__ import annotations

import math
from typing import Any

# A run that keeps more than this fraction of the initialization's imprint cannot test claim 1
# (near chance at t = 0) either way: its magnitude masks largely restate W_0's magnitudes.
TESTABLE = 1 / 3

FORMULA = ("exp(-weight_decay / (1 - momentum) * sum over iterations of the learning rate): "
           "coupled weight decay in momentum's steady state, BatchNorm's scale invariance ignored")


def retained(r: Any, n_train: int, start_step: int = 0) -> float:
    """The fraction of a weight's value at iteration `start_step` that is still in it at the
    end of the schedule of `r` (a Config, a jaxlottery.train.Recipe, or anything with their
    recipe fields) for `n_train` training images (the last batch of an epoch partial)."""
    spe = -(-n_train // r.batch_size)
    total = r.epochs * spe
    edges = [0] + [e * spe for e in sorted(r.lr_drop_epochs)] + [total]
    lr_sum = sum(r.lr * r.lr_drop_factor**j * max(0, edges[j + 1] - max(edges[j], start_step))
                 for j in range(len(edges) - 1))
    return math.exp(-r.weight_decay / (1 - r.momentum) * lr_sum)
