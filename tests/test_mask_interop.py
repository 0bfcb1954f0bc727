"""Masks people already have: jaxpruner's uint8 0/1 arrays and Flax NNX states."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlottery import masks


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.dense = nnx.Linear(4, 2, rngs=rngs)


def _nnx_params():
    return nnx.state(_Net(nnx.Rngs(0)), nnx.Param)


def test_nnx_states_are_masks_and_params_as_they_are():
    """The default rule finds kernels before NNX's `value`: pruning an NNX state equals pruning
    its plain dicts, and its mask applies to it and converts to plain dicts."""
    state = _nnx_params()
    plain = state.to_pure_dict()
    m = masks.magnitude_prune(state, 0.5)
    ref = masks.magnitude_prune(plain, 0.5)
    assert int(masks.count(m)[0]) == int(masks.count(ref)[0]) and masks.count(m)[1] == 116
    converted = masks.convert(m)
    assert jax.tree.structure(converted, is_leaf=masks.is_none) == \
        jax.tree.structure(ref, is_leaf=masks.is_none)
    assert float(masks.iou(converted, ref)) == 1.0
    pruned = masks.apply(state, m)
    kept = masks.count(m)[0]
    assert int(sum(jnp.count_nonzero(x) for x in (pruned["conv"]["kernel"].value,
                                                     pruned["dense"]["kernel"].value))) == kept


def test_integer_masks_convert_and_otherwise_fail_with_the_hint():
    ref = masks.magnitude_prune(_nnx_params().to_pure_dict(), 0.3)
    for dtype in (jnp.uint8, jnp.int32):
        as_int = jax.tree.map(lambda x: None if x is None else x.astype(dtype), ref,
                              is_leaf=masks.is_none)
        with pytest.raises(TypeError, match=r"masks\.convert\(mask\) turns 0/1 integer"):
            masks.count(as_int)
        back = masks.convert(as_int)
        assert float(masks.iou(back, ref)) == 1.0 and back["conv"]["kernel"].dtype == jnp.bool_
    # Under jit the values cannot be checked: nonzero is kept.
    jitted = jax.jit(masks.convert)(jax.tree.map(
        lambda x: None if x is None else x.astype(jnp.uint8), ref, is_leaf=masks.is_none))
    assert float(masks.iou(jitted, ref)) == 1.0


def test_convert_refuses_what_is_not_a_0_1_mask():
    scores = {"conv": {"kernel": jnp.ones((3, 3, 3, 4)) * 0.5}}
    with pytest.raises(ValueError, match="'conv/kernel' is float32, not a 0/1 mask"):
        masks.convert(scores)
    twos = {"conv": {"kernel": np.full((2, 2), 2, np.uint8)}}
    with pytest.raises(ValueError, match=r"'conv/kernel' holds \[2\]"):
        masks.convert(twos)
    same = {"a": jnp.array([True, False]), "b": None}
    assert masks.convert(same)["b"] is None and masks.convert(same)["a"].tolist() == [True, False]
