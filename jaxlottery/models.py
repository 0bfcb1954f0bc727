"""The CIFAR ResNet family of OpenLTH (`cifar_resnet_<depth>[_<width>]`) in Flax linen.

ResNet-20 is depth 20, width 16: a 3x3 stem, three stages of (depth - 2) / 6 basic blocks of
widths w, 2w, 4w (stride 2 entering stages 2 and 3, with a 1x1 projection shortcut + BN where
the shape changes), global average pooling and a dense head. Initialization follows OpenLTH:
kernels ~ N(0, 2 / fan_in) untruncated (PyTorch `kaiming_normal_`), BN scale ~ U[0, 1),
BN bias 0, dense bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default).

Parameters are plain nested dicts; conv and dense weights are named `kernel`, which is what
`jaxlottery.masks` prunes by default. Images are NHWC float32.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlottery.config import check_architecture  # noqa: F401 - the family's rule, models API too

# PyTorch kaiming_normal_(mode="fan_in", nonlinearity="relu"): std = sqrt(2 / fan_in), untruncated.
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def uniform_01(key, shape, dtype=jnp.float32):
    """BatchNorm scale init of OpenLTH: U[0, 1)."""
    return jax.random.uniform(key, shape, dtype)


def torch_linear_bias(fan_in: int):
    """PyTorch's default nn.Linear bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Block(nn.Module):
    """Basic block: conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU."""

    features: int
    stride: int
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, x, train: bool):
        bn = lambda name: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=self.bn_momentum,
            epsilon=self.bn_epsilon, scale_init=uniform_01, name=name)
        conv = lambda k, s, p, name: nn.Conv(  # noqa: E731
            self.features, (k, k), strides=(s, s), padding=p, use_bias=False,
            kernel_init=kaiming_normal, name=name)
        y = conv(3, self.stride, ((1, 1), (1, 1)), "conv1")(x)
        y = nn.relu(bn("bn1")(y))
        y = conv(3, 1, ((1, 1), (1, 1)), "conv2")(y)
        y = bn("bn2")(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = conv(1, self.stride, "VALID", "shortcut_conv")(x)
            x = bn("shortcut_bn")(x)
        return nn.relu(y + x)


class CifarResNet(nn.Module):
    """OpenLTH's CIFAR ResNet: depth = 6n + 2 (8, 14, 20, 32, 56, ...), base width w."""

    depth: int = 20
    width: int = 16
    num_classes: int = 10
    bn_momentum: float = 0.9  # Flax convention: PyTorch momentum 0.1
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool = False):
        blocks_per_stage = (self.depth - 2) // 6
        x = nn.Conv(self.width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=kaiming_normal, name="stem_conv")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                         epsilon=self.bn_epsilon, scale_init=uniform_01, name="stem_bn")(x)
        x = nn.relu(x)
        for stage in range(3):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                x = Block(self.width * 2**stage, stride, self.bn_momentum, self.bn_epsilon,
                          name=f"stage{stage + 1}_block{block}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        fan_in = x.shape[-1]
        return nn.Dense(self.num_classes, kernel_init=kaiming_normal,
                        bias_init=torch_linear_bias(fan_in), name="dense")(x)


def resnet(depth: int = 20, width: int = 16, num_classes: int = 10, **kw: Any) -> CifarResNet:
    """The module for a member of the family (validated eagerly)."""
    check_architecture(depth, width, num_classes)
    return CifarResNet(depth=depth, width=width, num_classes=num_classes, **kw)


def init(key: jax.Array, depth: int = 20, width: int = 16, num_classes: int = 10,
         image_shape: tuple[int, int, int] = (32, 32, 3)) -> dict[str, Any]:
    """Initialize a member of the family: `{"params": ..., "batch_stats": ...}` as plain dicts."""
    variables = _init_fn(depth, width, num_classes, tuple(image_shape))(key)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


@functools.lru_cache(maxsize=None)
def _init_fn(depth: int, width: int, num_classes: int, image_shape: tuple[int, int, int]):
    """One compiled initializer per architecture and image shape."""
    model = resnet(depth, width, num_classes)
    return jax.jit(lambda k: model.init(k, jnp.zeros((1, *image_shape)), train=False))


def apply(variables: dict[str, Any], images: jax.Array, *, depth: int = 20, width: int = 16,
          num_classes: int = 10, train: bool = False):
    """Forward pass. In eval mode returns logits; in train mode `(logits, new_batch_stats)`."""
    model = resnet(depth, width, num_classes)
    if not train:
        return model.apply(variables, images, train=False)
    logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
    return logits, updates["batch_stats"]
