"""A convolution that `vmap` leaves per member: the `hybrid` sibling strategy's building block.

Under `jax.vmap` over siblings, `lax.conv_general_dilated` with a batched kernel becomes one
grouped convolution (the kernels concatenated along the feature axis), whose backward pass cuDNN
runs slowly (BUILD_NOTES.md, "Measured on an H100") and XLA:CPU about 5x slower than k plain
convolutions. `conv_general_dilated` here computes the same value, but its batching rule
unrolls the member axis into k ordinary convolutions (forward, and both halves of the backward
pass), so a vmapped step keeps everything else batched (BatchNorm, ReLU, residuals, loss,
optimizer, masks, augmentation: few, large kernels) while each convolution stays the
single-network kernel. Outside `vmap` it is `lax.conv_general_dilated` itself.

Pass it to Flax as `nn.Conv(..., conv_general_dilated=conv_general_dilated)`; the model does so
when built with `conv="per_member"` (`jaxlottery.models`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap


def _unrolled(fn):
    """`fn` (arrays -> array or tuple of arrays), batched by a loop over the member axis."""
    batched_fn = custom_vmap(fn)

    @batched_fn.def_vmap
    def rule(axis_size, in_batched, *args):
        members = [fn(*(a[i] if b else a for a, b in zip(args, in_batched)))
                   for i in range(axis_size)]
        out = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
        return out, jax.tree.map(lambda _: True, out)
    return batched_fn


@functools.lru_cache(maxsize=None)
def _conv(settings: tuple):
    """The per-member convolution for one set of static settings (strides, padding, ...)."""
    plain = functools.partial(lax.conv_general_dilated, **dict(settings))
    forward = _unrolled(plain)
    backward = _unrolled(lambda x, w, g: jax.vjp(plain, x, w)[1](g))

    @jax.custom_vjp
    def conv(x, w):
        return forward(x, w)

    def conv_fwd(x, w):
        return forward(x, w), (x, w)

    def conv_bwd(residuals, g):
        return backward(*residuals, g)

    conv.defvjp(conv_fwd, conv_bwd)
    return conv


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, preferred_element_type=None):
    """`lax.conv_general_dilated`, with a batching rule that keeps one convolution per member."""
    settings = (("window_strides", _hashable(window_strides)), ("padding", _hashable(padding)),
                ("lhs_dilation", _hashable(lhs_dilation)),
                ("rhs_dilation", _hashable(rhs_dilation)),
                ("dimension_numbers", _hashable(dimension_numbers)),
                ("feature_group_count", feature_group_count), ("precision", precision),
                ("preferred_element_type", preferred_element_type))
    return _conv(settings)(lhs, rhs)
