"""OpenLTH's CIFAR VGG with BatchNorm, `cifar_vgg_<depth>[_<width>]` for depth 11, 13, 16, 19.

Simonyan & Zisserman's plans of 3x3 convolutions (each with a bias, BN and ReLU) and 2x2 max
pools, then global average pooling and one dense layer, as OpenLTH builds them for CIFAR-10.
Width (ours; default 64, OpenLTH's only size) is the first stage's channels; every stage
scales with it (VGG-16 at width 8: 8, 16, 32, 64, 64). OpenLTH average-pools the 2x2 map a
32x32 image leaves; the global mean here is the same there and defined for other sizes (a
28x28 image leaves 1x1). Conv and dense kernels are pruned; VGG-16 has 14,715,584."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxlottery.models.layers import SAME, Network, batch_norm, convolution, head
from jaxlottery.models.registry import Family, register

# Channels of each stage's convolutions at width 64; a max pool follows every stage but the last.
PLANS = {11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
         13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
         16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
         19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)}


class CifarVGG(Network):
    depth: int = 16
    width: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        layer = 0
        for stage, plan in enumerate(PLANS[self.depth]):
            if stage:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            for channels in plan:
                features = channels * self.width // 64
                x = convolution(self, features, 3, 1, SAME, f"conv{layer}", x.shape[-1])(x)
                x = nn.relu(batch_norm(self, train, f"bn{layer}")(x))
                layer += 1
        return head(self, x)


def vgg(depth: int = 16, width: int = 64, num_classes: int = 10, dtype: Any = jnp.float32,
        conv: str = "lax") -> CifarVGG:
    """The module of `cifar_vgg_<depth>_<width>` (validated eagerly)."""
    if depth not in PLANS:
        raise ValueError(f"a CIFAR VGG's depth is one of {sorted(PLANS)}, got {depth}")
    if width < 1 or width % 8:
        raise ValueError(f"a CIFAR VGG's width must be a positive multiple of 8 (every stage "
                         f"scales with it), got {width}")
    return CifarVGG(depth=depth, width=width, num_classes=num_classes, dtype=dtype, conv=conv)


register(Family(
    "cifar_vgg", "cifar_vgg_<depth>[_<width>]", r"(?P<depth>\d+)(?:_(?P<width>\d+))?", vgg,
    lambda depth, width: f"VGG-{depth}" + (f" width {width}" if width != 64 else ""),
    toy="cifar_vgg_11_8", defaults={"width": 64}))
