"""The sibling axis: stack, unstack, size, index, take, first, pad, unpad, with `None` leaves,
on device arrays and host numpy arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxlottery import stacks


def member(i, xp=jnp):
    """A hand-built tree with a None leaf (an unprunable mask entry) and a nested dict."""
    return {"a": xp.full((2, 3), float(i)), "b": None, "c": {"d": xp.arange(4) + 10 * i}}


@pytest.mark.parametrize("xp", [jnp, np], ids=["device", "host"])
def test_stack_round_trips_and_keeps_none_leaves(xp):
    trees = [member(i, xp) for i in range(3)]
    s = stacks.stack(trees)
    assert s["b"] is None and stacks.size(s) == 3 and s["a"].shape == (3, 2, 3)
    for i, got in enumerate(stacks.unstack(s)):
        assert got["b"] is None
        np.testing.assert_array_equal(got["c"]["d"], trees[i]["c"]["d"])
    np.testing.assert_array_equal(stacks.index(s, 2)["a"], trees[2]["a"])
    host = jax.tree.map(np.asarray, s)  # host arrays stay host arrays
    assert isinstance(stacks.take(host, [1])["a"], np.ndarray)


@settings(deadline=None, max_examples=40)  # padding compiles a small program per new shape
@given(k=st.integers(1, 6), n=st.integers(1, 9), ids=st.lists(st.integers(0, 5), min_size=1, max_size=8))
def test_take_first_pad_unpad(k, n, ids):
    s = {"x": np.arange(k * 2).reshape(k, 2), "none": None}
    ids = [i % k for i in ids]
    np.testing.assert_array_equal(stacks.take(s, ids)["x"], s["x"][ids])
    assert stacks.take(s, ids)["none"] is None
    np.testing.assert_array_equal(stacks.first(s, n)["x"], s["x"][:n])
    padded = stacks.pad(s, n)
    assert stacks.size(padded) == max(k, n)
    np.testing.assert_array_equal(padded["x"][k:], np.repeat(s["x"][-1:], max(0, n - k), axis=0))
    np.testing.assert_array_equal(stacks.unpad(padded, k)["x"], s["x"])


def test_bad_stacks_are_named():
    with pytest.raises(ValueError, match="not a stack"):
        stacks.size({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="at least one array leaf"):
        stacks.size({"a": None})
    with pytest.raises(ValueError, match="at least one"):
        stacks.stack([])
