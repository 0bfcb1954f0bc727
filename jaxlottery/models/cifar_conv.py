"""The lottery-ticket paper's Conv-2, Conv-4 and Conv-6 (Frankle & Carbin 2019, Figure 2),
`cifar_conv_<2|4|6>`: pairs of 3x3 ReLU convolutions of 64, 128 and 256 channels, each pair
followed by a 2x2 max pool, then dense layers of 256 and 256 and the head; no BatchNorm,
Gaussian Glorot kernels, zero biases (the paper's). Every kernel is pruned."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlottery.models.layers import CONVOLUTIONS, Network
from jaxlottery.models.registry import Family, register


class ConvN(Network):
    depth: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        glorot = nn.initializers.glorot_normal()
        for i in range(self.depth):
            x = nn.relu(nn.Conv(64 * 2 ** (i // 2), (3, 3), padding=((1, 1), (1, 1)),
                                kernel_init=glorot, dtype=self.dtype,
                                conv_general_dilated=CONVOLUTIONS[self.conv], name=f"conv{i}")(x))
            if i % 2:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        for i in range(2):
            x = nn.relu(nn.Dense(256, kernel_init=glorot, dtype=self.dtype, name=f"fc{i}")(x))
        return nn.Dense(self.num_classes, kernel_init=glorot, dtype=self.dtype,
                        name="dense")(x).astype(jnp.float32)


def conv_n(depth: int, num_classes: int = 10, dtype: Any = jnp.float32,
           conv: str = "lax") -> ConvN:
    """The module of `cifar_conv_<depth>` (validated eagerly)."""
    if depth not in (2, 4, 6):
        raise ValueError(f"the lottery-ticket paper's Conv-N has 2, 4 or 6 convolutions, "
                         f"got {depth}")
    return ConvN(depth=depth, num_classes=num_classes, dtype=dtype, conv=conv)


register(Family("cifar_conv", "cifar_conv_<2|4|6>", r"(?P<depth>\d+)", conv_n,
                lambda depth: f"Conv-{depth}", toy="cifar_conv_2"))
