"""The layers every family is built from, initialized as OpenLTH (PyTorch) initializes them:
kernels ~ N(0, 2 / fan_in) untruncated (`kaiming_normal_`), BN scale ~ U[0, 1), BN bias 0,
biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default for Linear and Conv2d).

Two module fields change how a network computes, never what it stores: `dtype`, the compute
dtype of convolutions, BatchNorm and the head (bfloat16 is opt-in; parameters, BN statistics
and their reductions stay float32, and logits are returned as float32), and `conv`, which
convolution runs (`"lax"`, or `"per_member"`: the `hybrid` sibling strategy's
`jaxlottery.member_conv`, the same values with a per-member batching rule)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxlottery import member_conv

CONVOLUTIONS = {"lax": lax.conv_general_dilated, "per_member": member_conv.conv_general_dilated}

# PyTorch kaiming_normal_(mode="fan_in", nonlinearity="relu"): std = sqrt(2 / fan_in), untruncated.
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def uniform_01(key, shape, dtype=jnp.float32):
    """BatchNorm scale init of OpenLTH: U[0, 1)."""
    return jax.random.uniform(key, shape, dtype)


def torch_bias(fan_in: int):
    """PyTorch's default bias init of nn.Linear and nn.Conv2d: U(-1/sqrt(fan_in),
    1/sqrt(fan_in))."""
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def batch_norm(module: nn.Module, train: bool, name: str) -> nn.BatchNorm:
    """OpenLTH's BatchNorm (scale ~ U[0, 1), epsilon 1e-5) computing in the module's dtype;
    its statistics and their reductions stay float32. Every family's modules carry
    `bn_momentum` (0.9, PyTorch's 0.1; connectivity clones them with 0 to recompute statistics)."""
    return nn.BatchNorm(use_running_average=not train, momentum=module.bn_momentum, epsilon=1e-5,
                        scale_init=uniform_01, dtype=module.dtype, name=name)


def convolution(module: nn.Module, features: int, size: int, stride: int, padding: Any,
                name: str, in_features: int | None = None) -> nn.Conv:
    """A k x k convolution with OpenLTH's init, in the module's dtype and kind; bias-free
    unless `in_features` is given (then PyTorch's default bias for that fan-in)."""
    bias = in_features is not None
    return nn.Conv(features, (size, size), strides=(stride, stride), padding=padding,
                   use_bias=bias, kernel_init=kaiming_normal, dtype=module.dtype,
                   bias_init=torch_bias(size * size * in_features) if bias else
                   nn.initializers.zeros, conv_general_dilated=CONVOLUTIONS[module.conv],
                   name=name)


def head(module: nn.Module, x: jax.Array) -> jax.Array:
    """Global average pooling and the dense classifier, logits in float32."""
    x = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(module.num_classes, kernel_init=kaiming_normal, dtype=module.dtype,
                      bias_init=torch_bias(x.shape[-1]), name="dense")(x)
    return logits.astype(jnp.float32)


SAME = ((1, 1), (1, 1))  # the padding of every 3 x 3 convolution


class Network(nn.Module):
    """The fields every family's module has, which the registry and the engine set: the head's
    classes, the compute dtype, the convolution kind and the BatchNorm momentum (connectivity
    clones a network with 0 to recompute its statistics; a network without BN ignores it)."""

    num_classes: int = 10
    dtype: Any = jnp.float32
    conv: str = "lax"
    bn_momentum: float = 0.9
