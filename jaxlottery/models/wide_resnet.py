"""Zagoruyko & Komodakis' wide ResNet, `wrn_<depth>_<k>` (WRN-16-8 is `wrn_16_8`).

A 16-channel 3x3 stem, three stages of (depth - 4) / 6 pre-activation blocks
(BN-ReLU-conv3x3-BN-ReLU-conv3x3) of widths 16k, 32k, 64k (stride 2 entering stages 2 and 3;
a 1x1 projection of the pre-activated input where the shape changes), a final BN-ReLU, global
average pooling and a dense head. No dropout (the lottery-ticket studies train without it).
Bias-free convolutions; conv and dense kernels are pruned; WRN-16-8 has 10,954,160."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlottery.models.layers import SAME, Network, batch_norm, convolution, head
from jaxlottery.models.registry import Family, register


class PreActBlock(nn.Module):
    features: int
    stride: int
    dtype: Any = jnp.float32
    conv: str = "lax"
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, train: bool):
        a = nn.relu(batch_norm(self, train, "bn1")(x))
        y = convolution(self, self.features, 3, self.stride, SAME, "conv1")(a)
        y = nn.relu(batch_norm(self, train, "bn2")(y))
        y = convolution(self, self.features, 3, 1, SAME, "conv2")(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = convolution(self, self.features, 1, self.stride, "VALID", "shortcut_conv")(a)
        return y + x


class WideResNet(Network):
    depth: int = 16
    k: int = 8

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = convolution(self, 16, 3, 1, SAME, "stem_conv")(x)
        for stage in range(3):
            for block in range((self.depth - 4) // 6):
                stride = 2 if stage > 0 and block == 0 else 1
                x = PreActBlock(16 * self.k * 2**stage, stride, self.dtype, self.conv,
                                self.bn_momentum,
                                name=f"stage{stage + 1}_block{block}")(x, train)
        x = nn.relu(batch_norm(self, train, "final_bn")(x))
        return head(self, x)


def wide_resnet(depth: int = 16, k: int = 8, num_classes: int = 10, dtype: Any = jnp.float32,
                conv: str = "lax") -> WideResNet:
    """The module of `wrn_<depth>_<k>` (validated eagerly)."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"a wide ResNet's depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, "
                         f"...), got {depth}")
    if k < 1:
        raise ValueError(f"a wide ResNet's widening factor k must be >= 1, got {k}")
    return WideResNet(depth=depth, k=k, num_classes=num_classes, dtype=dtype, conv=conv)


register(Family("wrn", "wrn_<depth>_<k>", r"(?P<depth>\d+)_(?P<k>\d+)", wide_resnet,
                lambda depth, k: f"WRN-{depth}-{k}", toy="wrn_10_1"))
