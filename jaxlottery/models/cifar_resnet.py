"""OpenLTH's CIFAR ResNet, `cifar_resnet_<depth>[_<width>]` (ResNet-20 is `cifar_resnet_20`).

A 3x3 stem, three stages of (depth - 2) / 6 basic blocks of widths w, 2w, 4w (stride 2
entering stages 2 and 3, with a 1x1 projection shortcut + BN where the shape changes), global
average pooling and a dense head; width w defaults to 16. Convolutions are bias-free; conv and
dense kernels are pruned. ResNet-20 has 270,896 prunable weights."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlottery.models.layers import SAME, Network, batch_norm, convolution, head
from jaxlottery.models.registry import Family, register


class Block(nn.Module):
    """Basic block: conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU."""

    features: int
    stride: int
    dtype: Any = jnp.float32
    conv: str = "lax"
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, train: bool):
        y = convolution(self, self.features, 3, self.stride, SAME, "conv1")(x)
        y = nn.relu(batch_norm(self, train, "bn1")(y))
        y = convolution(self, self.features, 3, 1, SAME, "conv2")(y)
        y = batch_norm(self, train, "bn2")(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = convolution(self, self.features, 1, self.stride, "VALID", "shortcut_conv")(x)
            x = batch_norm(self, train, "shortcut_bn")(x)
        return nn.relu(y + x)


class CifarResNet(Network):
    """OpenLTH's CIFAR ResNet: depth = 6n + 2 (8, 14, 20, 32, 56, ...), base width w."""

    depth: int = 20
    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = convolution(self, self.width, 3, 1, SAME, "stem_conv")(x)
        x = nn.relu(batch_norm(self, train, "stem_bn")(x))
        for stage in range(3):
            for block in range((self.depth - 2) // 6):
                stride = 2 if stage > 0 and block == 0 else 1
                x = Block(self.width * 2**stage, stride, self.dtype, self.conv,
                          self.bn_momentum,
                          name=f"stage{stage + 1}_block{block}")(x, train)
        return head(self, x)


def check_architecture(depth: int, width: int) -> None:
    """Raise ValueError unless (depth, width) name a member of the family."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet's depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, "
                         f"56, ...), got {depth}")
    if width < 1:
        raise ValueError(f"a CIFAR ResNet's width must be a positive integer, got {width}")


def resnet(depth: int = 20, width: int = 16, num_classes: int = 10, dtype: Any = jnp.float32,
           conv: str = "lax") -> CifarResNet:
    """The module of `cifar_resnet_<depth>_<width>` (validated eagerly)."""
    check_architecture(depth, width)
    return CifarResNet(depth=depth, width=width, num_classes=num_classes, dtype=dtype, conv=conv)


def name(depth: int = 20, width: int = 16) -> str:
    """The registry's name of a member: `cifar_resnet_20` for width 16, else with its width."""
    return f"cifar_resnet_{depth}" + (f"_{width}" if width != 16 else "")


register(Family(
    "cifar_resnet", "cifar_resnet_<depth>[_<width>]", r"(?P<depth>\d+)(?:_(?P<width>\d+))?",
    resnet, lambda depth, width: f"ResNet-{depth} width {width}", toy="cifar_resnet_8_4",
    defaults={"width": 16}))
