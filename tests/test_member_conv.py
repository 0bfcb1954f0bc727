"""The per-member convolution of the `hybrid` strategy: the values and gradients of
`lax.conv_general_dilated` under vmap, computed by one ordinary convolution per member."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxlottery import member_conv, models

DN = ("NHWC", "HWIO", "NHWC")


def _loss(conv, x, w, stride):
    dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
    y = conv(x, w, (stride, stride), ((1, 1), (1, 1)), lhs_dilation=(1, 1), rhs_dilation=(1, 1),
             dimension_numbers=dn)
    return jnp.sum(jnp.sin(y))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shared_input", [False, True])
def test_values_and_gradients_equal_the_batched_lax_convolution(stride, shared_input):
    k = 3
    x = jax.random.normal(jax.random.key(0), (k, 2, 8, 8, 3))
    w = jax.random.normal(jax.random.key(1), (k, 3, 3, 3, 4))
    in_axes = (None if shared_input else 0, 0)
    x = x[0] if shared_input else x
    grads = [jax.jit(jax.vmap(jax.value_and_grad(
        lambda x, w, c=conv: _loss(c, x, w, stride), argnums=(0, 1)), in_axes=in_axes))(x, w)
        for conv in (lax.conv_general_dilated, member_conv.conv_general_dilated)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_no_grouped_convolution_in_a_vmapped_step():
    """vmap turns a batched kernel into one convolution of k feature groups; the per-member
    convolution leaves k plain ones (forward, input and kernel gradients: 3k)."""
    k = 4
    x = jnp.zeros((k, 2, 8, 8, 3))
    w = jnp.zeros((k, 3, 3, 3, 4))
    texts = [jax.jit(jax.vmap(jax.grad(lambda x, w, c=conv: _loss(c, x, w, 1), argnums=(0, 1))))
             .lower(x, w).as_text() for conv in (lax.conv_general_dilated,
                                                member_conv.conv_general_dilated)]
    assert f"feature_group_count = {k}" in texts[0]
    assert f"feature_group_count = {k}" not in texts[1]
    assert texts[1].count("stablehlo.convolution") == 3 * k


def test_the_model_computes_the_same_with_either_convolution():
    v = models.init(jax.random.key(0), "cifar_resnet_8_4", image_shape=(16, 16, 3))
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
    model = models.create("cifar_resnet_8_4")
    np.testing.assert_array_equal(model.apply(v, x), model.clone(conv="per_member").apply(v, x))
