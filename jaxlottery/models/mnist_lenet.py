"""OpenLTH's fully connected LeNet, `mnist_lenet_<width>[_<width>...]` (the lottery-ticket
paper's LeNet-300-100 is `mnist_lenet_300_100`): the image flattened, one ReLU layer per
width, a dense head; PyTorch's default biases, kaiming-normal kernels. Every kernel is pruned."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlottery.models.layers import Network, kaiming_normal, torch_bias
from jaxlottery.models.registry import Family, register


class LeNet(Network):
    """No convolutions (every sibling strategy computes the same) and no BatchNorm."""

    widths: tuple[int, ...] = (300, 100)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate((*self.widths, self.num_classes)):
            x = nn.Dense(width, kernel_init=kaiming_normal, bias_init=torch_bias(x.shape[-1]),
                         dtype=self.dtype, name=f"fc{i}" if i < len(self.widths) else "dense")(x)
            x = nn.relu(x) if i < len(self.widths) else x
        return x.astype(jnp.float32)


def lenet(widths: str, num_classes: int = 10, dtype: Any = jnp.float32,
          conv: str = "lax") -> LeNet:
    """The module of `mnist_lenet_<widths>` (validated eagerly)."""
    sizes = tuple(int(w) for w in widths.split("_"))
    if not all(w >= 1 for w in sizes):
        raise ValueError(f"a LeNet's widths must be positive integers, got {widths}")
    return LeNet(widths=sizes, num_classes=num_classes, dtype=dtype, conv=conv)


register(Family("mnist_lenet", "mnist_lenet_<width>[_<width>...]", r"(?P<widths>\d+(?:_\d+)*)",
                lenet, lambda widths: f"LeNet-{widths.replace('_', '-')}", toy="mnist_lenet_32_16"))
