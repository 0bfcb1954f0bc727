"""The CIFAR ResNet family of OpenLTH (`cifar_resnet_<depth>[_<width>]`) in Flax linen.

ResNet-20 is depth 20, width 16: a 3x3 stem, three stages of (depth - 2) / 6 basic blocks of
widths w, 2w, 4w (stride 2 entering stages 2 and 3, with a 1x1 projection shortcut + BN where
the shape changes), global average pooling and a dense head. Initialization follows OpenLTH:
kernels ~ N(0, 2 / fan_in) untruncated (PyTorch `kaiming_normal_`), BN scale ~ U[0, 1),
BN bias 0, dense bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default).

Parameters are plain nested dicts; conv and dense weights are named `kernel`, which is what
`jaxlottery.masks` prunes by default. Images are NHWC float32.

Two fields change how the network computes, never what it stores: `dtype`, the compute dtype of
convolutions, BatchNorm and the head (bfloat16 is opt-in, `--compute_dtype`; parameters, BN
statistics and their reductions stay float32, and the logits are returned as float32 so the
loss is float32), and `conv`, which convolution runs (`"lax"`, or `"per_member"`: the `hybrid`
sibling strategy's `jaxlottery.member_conv`, the same values with a per-member batching rule).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxlottery import member_conv
from jaxlottery.config import check_architecture  # noqa: F401 - the family's rule, models API too

CONVOLUTIONS = {"lax": lax.conv_general_dilated, "per_member": member_conv.conv_general_dilated}
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # validation.COMPUTE_DTYPES

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
    dtype: Any = jnp.float32
    conv: str = "lax"

    @nn.compact
    def __call__(self, x, train: bool):
        bn = lambda name: batch_norm(self, train, name)  # noqa: E731
        conv = lambda k, s, p, name: convolution(self, self.features, k, s, p, name)  # noqa: E731
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
    dtype: Any = jnp.float32
    conv: str = "lax"

    @nn.compact
    def __call__(self, x, train: bool = False):
        blocks_per_stage = (self.depth - 2) // 6
        x = convolution(self, self.width, 3, 1, ((1, 1), (1, 1)), "stem_conv")(x)
        x = nn.relu(batch_norm(self, train, "stem_bn")(x))
        for stage in range(3):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                x = Block(self.width * 2**stage, stride, self.bn_momentum, self.bn_epsilon,
                          self.dtype, self.conv, name=f"stage{stage + 1}_block{block}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        fan_in = x.shape[-1]
        logits = nn.Dense(self.num_classes, kernel_init=kaiming_normal, dtype=self.dtype,
                          bias_init=torch_linear_bias(fan_in), name="dense")(x)
        return logits.astype(jnp.float32)


def batch_norm(module: nn.Module, train: bool, name: str) -> nn.BatchNorm:
    """OpenLTH's BatchNorm (scale ~ U[0, 1)) computing in the module's dtype; its statistics
    and their reductions stay float32."""
    return nn.BatchNorm(use_running_average=not train, momentum=module.bn_momentum,
                        epsilon=module.bn_epsilon, scale_init=uniform_01, dtype=module.dtype,
                        name=name)


def convolution(module: nn.Module, features: int, size: int, stride: int, padding: Any,
                name: str) -> nn.Conv:
    """A bias-free k x k convolution with OpenLTH's init, in the module's dtype and kind."""
    return nn.Conv(features, (size, size), strides=(stride, stride), padding=padding,
                   use_bias=False, kernel_init=kaiming_normal, dtype=module.dtype,
                   conv_general_dilated=CONVOLUTIONS[module.conv], name=name)


def resnet(depth: int = 20, width: int = 16, num_classes: int = 10,
           compute_dtype: str = "float32", **kw: Any) -> CifarResNet:
    """The module for a member of the family (validated eagerly); `compute_dtype` by name."""
    check_architecture(depth, width, num_classes)
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got "
                         f"{compute_dtype!r}")
    return CifarResNet(depth=depth, width=width, num_classes=num_classes,
                       dtype=COMPUTE_DTYPES[compute_dtype], **kw)


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
