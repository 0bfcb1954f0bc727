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


def test_nnx_masks_convert_both_ways():
    state = nnx.state(_Net(nnx.Rngs(0)), nnx.Param)
    nnx_mask = masks.magnitude_prune(state, 0.4)
    pure = masks.convert(nnx_mask)
    back = masks.to_nnx(pure, state)
    assert jax.tree.structure(back, is_leaf=masks.is_none) == jax.tree.structure(
        nnx_mask, is_leaf=masks.is_none)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(nnx_mask)):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), masks.convert(back), pure))
    # the NNX mask applies to the NNX state as it is
    pruned = masks.apply(state, back)
    assert float(masks.density(back)) == pytest.approx(0.4, abs=0.01)
    pruned_kernel = masks.convert(jax.tree.map(lambda x: x != 0, pruned))["dense"]["kernel"]
    assert not jnp.any(pruned_kernel & ~pure["dense"]["kernel"])
    with pytest.raises(ValueError, match="not a Flax NNX state"):
        masks.to_nnx(pure, pure)
    bad = jax.tree.map(lambda x: x, pure)
    bad["dense"]["kernel"] = bad["dense"]["kernel"][:1]
    with pytest.raises(ValueError, match="shape"):
        masks.to_nnx(bad, state)


def test_haiku_and_equinox_shaped_trees_prune_their_weights():
    """Haiku names weights `w` and biases `b`; Equinox modules have `weight` and `bias`
    attributes (a registered dataclass here: the same paths, no dependency)."""
    import dataclasses

    haiku = {"linear": {"w": jnp.arange(12.0).reshape(4, 3), "b": jnp.ones(3)},
             "conv2_d": {"w": jnp.arange(36.0).reshape(2, 2, 3, 3), "b": jnp.ones(3)}}
    m = masks.magnitude_prune(haiku, 0.5)
    assert m["linear"]["b"] is None and m["conv2_d"]["w"].shape == (2, 2, 3, 3)
    assert masks.count(m) == (24, 48)

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class Linear:  # what eqx.nn.Linear flattens to
        weight: jax.Array
        bias: jax.Array

    eqx = [Linear(jnp.arange(6.0).reshape(3, 2), jnp.ones(3)), Linear(-jnp.ones((1, 3)), jnp.ones(1))]
    m = masks.magnitude_prune(eqx, 0.5)
    assert m[0].bias is None and m[0].weight.dtype == jnp.bool_ and masks.count(m)[1] == 9
    with pytest.raises(ValueError, match="kernel, w, weight; pass rule="):
        masks.magnitude_prune({"scale": jnp.ones((3, 3))}, 0.5)


def test_keep_pruned_zero_in_a_training_loop_that_is_not_ours():
    """A plain-JAX regression MLP (Haiku-style names) trained with optax's AdamW, whose decoupled
    weight decay and moments would move pruned weights: chained with keep_pruned_zero they stay
    exactly 0, kept weights train, the loss falls."""
    import optax

    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"hidden": {"w": jax.random.normal(k1, (8, 16)), "b": jnp.zeros(16)},
              "out": {"w": jax.random.normal(k2, (16, 1)), "b": jnp.zeros(1)}}
    x = jax.random.normal(k3, (64, 8))
    y = jnp.sin(x @ jnp.arange(8.0))[:, None]
    mask = masks.magnitude_prune(params, 0.3)
    params = masks.apply(params, mask)

    def loss(p):
        h = jnp.tanh(x @ p["hidden"]["w"] + p["hidden"]["b"])
        return jnp.mean((h @ p["out"]["w"] + p["out"]["b"] - y) ** 2)

    opt = optax.chain(optax.adamw(1e-2, weight_decay=0.1), masks.keep_pruned_zero(mask))
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    start, first = loss(params), params
    for _ in range(50):
        params, state = step(params, state)
    assert float(loss(params)) < 0.8 * float(start)
    for name in ("hidden", "out"):
        w, m = params[name]["w"], mask[name]["w"]
        assert jnp.all(w[~m] == 0.0) and not jnp.allclose(w[m], first[name]["w"][m])
    sgd = optax.chain(optax.sgd(0.1), masks.keep_pruned_zero(mask))
    with pytest.raises(ValueError, match="needs the params"):
        sgd.update(jax.grad(loss)(params), sgd.init(params))


def test_erk_densities_against_a_hand_computation():
    # sum of dimensions over their product, times eps: the three layers keep
    # 25 eps, 38 eps and 74 eps weights, which must add up to 0.1 x 3,376.
    eps = 0.1 * 3376 / (25 + 38 + 74)
    got = masks.erk_densities([(3, 3, 3, 16), (3, 3, 16, 16), (64, 10)], 0.1)
    np.testing.assert_allclose(got, [25 * eps / 432, 38 * eps / 2304, 74 * eps / 640])
    # A small layer the formula would fill past 1 is kept dense, eps solved again for the rest.
    np.testing.assert_allclose(masks.erk_densities([(2, 2), (100, 100)], 0.5),
                               [1.0, (0.5 * 10_004 - 4) / 10_000])
    params = {"a": {"kernel": jnp.ones((3, 3, 3, 16))}, "b": {"kernel": jnp.ones((64, 10))},
              "b2": {"bias": jnp.ones(10)}}
    d = masks.layer_density_map(params, 0.2, "erk")
    assert set(d) == {"a/kernel", "b/kernel"} and d["a/kernel"] < d["b/kernel"]
    assert masks.layer_density_map(params, 0.2, "uniform") == {"a/kernel": 0.2, "b/kernel": 0.2}
    m = masks.magnitude_prune(jax.tree.map(lambda x: x * jnp.arange(x.size).reshape(x.shape),
                                           params), 0.2, scope="erk")
    kept = masks.layer_sizes(m)
    assert int(jnp.sum(m["a"]["kernel"])) == int(np.floor(d["a/kernel"] * 432 + 0.5))
    assert int(jnp.sum(m["b"]["kernel"])) == int(np.floor(d["b/kernel"] * 640 + 0.5))
    assert kept == {"a/kernel": 432, "b/kernel": 640}
    with pytest.raises(ValueError, match="distribution"):
        masks.layer_density_map(params, 0.2, "snip")


@pytest.mark.parametrize("bad", ["0.5", True, None, [0.5], 0.5j, b"1"],
                         ids=["str", "bool", "None", "list", "complex", "bytes"])
def test_every_density_argument_refuses_what_is_not_a_number(bad):
    """By class: each public function that takes a density names it and says what it wants."""
    p = {"a": {"kernel": jnp.arange(12.0).reshape(3, 4)}}
    m = masks.magnitude_prune(p, 0.5)
    for call in (lambda: masks.magnitude_prune(p, bad), lambda: masks.compose([p, p], bad),
                 lambda: masks.random_mask(jax.random.key(0), p, bad),
                 lambda: masks.mask_from_scores(p, bad), lambda: masks.chance_iou(bad, 0.5),
                 lambda: masks.erk_densities([(3, 4)], bad),
                 lambda: masks.layer_density_map(p, bad)):
        with pytest.raises(TypeError, match=r"density must be a number in .* sparsity is 1 - density"):
            call()
    for key in (0, "seed", None, np.zeros(3)):
        with pytest.raises(TypeError, match="PRNG key"):
            masks.random_mask_like(key, m)
    for how in (1.5, "2", None):
        with pytest.raises(ValueError, match="how|unknown composition"):
            masks.at_least(how, 3)
