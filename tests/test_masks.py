"""The mask algebra on hand-built pytrees: exact values, properties (hypothesis), errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxlottery import masks

SHAPES = {"conv": {"kernel": (3, 3, 2, 4), "bias": (4,)},
          "dense": {"kernel": (8, 5), "bias": (5,)},
          "bn": {"scale": (4,)}}
N_PRUNABLE = 3 * 3 * 2 * 4 + 8 * 5


def make_params(seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), shapes,
                        is_leaf=lambda x: isinstance(x, tuple))


def random_bool_mask(seed, density):
    rng = np.random.default_rng(seed)
    return {"conv": {"kernel": jnp.asarray(rng.random((3, 3, 2, 4)) < density), "bias": None},
            "dense": {"kernel": jnp.asarray(rng.random((8, 5)) < density), "bias": None},
            "bn": {"scale": None}}


def as_np(m):
    return [np.asarray(x) for x in jax.tree.leaves(m)]


def assert_masks_equal(a, b):
    assert jax.tree.structure(a, is_leaf=masks.is_none) == jax.tree.structure(b, is_leaf=masks.is_none)
    for x, y in zip(as_np(a), as_np(b)):
        np.testing.assert_array_equal(x, y)


mask_sets = st.tuples(st.integers(0, 2**31 - 1), st.integers(1, 5),
                      st.floats(0.05, 0.95)).map(
    lambda t: [random_bool_mask(t[0] + i, t[2]) for i in range(t[1])])


# --- making, applying, counting --------------------------------------------------------------

def test_prunable_and_ones_like_follow_the_default_rule():
    params = make_params()
    assert masks.prunable(params) == {"conv": {"kernel": True, "bias": False},
                                      "dense": {"kernel": True, "bias": False},
                                      "bn": {"scale": False}}
    dense = masks.ones_like(params)
    assert dense["conv"]["bias"] is None and dense["bn"]["scale"] is None
    kept, total = masks.count(dense)
    assert (int(kept), total) == (N_PRUNABLE, N_PRUNABLE)
    assert float(masks.density(dense)) == 1.0


def test_custom_rule_selects_other_leaves():
    params = make_params()
    m = masks.ones_like(params, rule=lambda path, x: path.startswith("dense/"))
    assert masks.count(m)[1] == 8 * 5 + 5


def test_apply_zeroes_exactly_the_pruned_weights_and_leaves_the_rest():
    params = make_params()
    m = masks.magnitude_prune(params, 0.3)
    out = masks.apply(params, m)
    for p, q, k in [(params["conv"]["kernel"], out["conv"]["kernel"], m["conv"]["kernel"]),
                    (params["dense"]["kernel"], out["dense"]["kernel"], m["dense"]["kernel"])]:
        np.testing.assert_array_equal(np.asarray(q), np.where(np.asarray(k), np.asarray(p), 0.0))
    np.testing.assert_array_equal(out["conv"]["bias"], params["conv"]["bias"])


def test_apply_single_mask_to_params_stack_broadcasts():
    params = masks.stack([make_params(0), make_params(1)])
    m = masks.magnitude_prune(make_params(0), 0.5)
    out = masks.apply(params, m)
    assert out["dense"]["kernel"].shape == (2, 8, 5)
    assert np.all(np.asarray(out["dense"]["kernel"])[:, ~np.asarray(m["dense"]["kernel"])] == 0)


def test_layer_densities_and_sizes_are_keyed_by_path():
    m = random_bool_mask(0, 0.5)
    d = masks.layer_densities(m)
    assert set(d) == {"conv/kernel", "dense/kernel"}
    assert masks.layer_sizes(m) == {"conv/kernel": 72, "dense/kernel": 40}
    np.testing.assert_allclose(float(d["dense/kernel"]), np.mean(np.asarray(m["dense"]["kernel"])))


def test_stacked_count_gives_one_value_per_member():
    ms = [random_bool_mask(i, 0.3 + 0.2 * i) for i in range(3)]
    kept, total = masks.count(masks.stack(ms), stacked=True)
    assert total == N_PRUNABLE
    np.testing.assert_array_equal(kept, [int(masks.count(m)[0]) for m in ms])
    np.testing.assert_allclose(masks.density(masks.stack(ms), stacked=True),
                               [float(masks.density(m)) for m in ms], rtol=1e-6)


def test_stack_unstack_round_trip():
    ms = [random_bool_mask(i, 0.5) for i in range(3)]
    for a, b in zip(masks.unstack(masks.stack(ms)), ms):
        assert_masks_equal(a, b)


# --- magnitude and random pruning ------------------------------------------------------------

def test_global_magnitude_prune_exact_hand_built():
    params = {"a": {"kernel": jnp.array([[0.1, -5.0], [3.0, 0.2]])},
              "b": {"kernel": jnp.array([[-0.3, 4.0, 0.0]]), "bias": jnp.array([9.0, 9.0, 9.0])}}
    m = masks.magnitude_prune(params, 3 / 7)  # keep 3 of 7: |-5|, |4|, |3|
    np.testing.assert_array_equal(m["a"]["kernel"], [[False, True], [True, False]])
    np.testing.assert_array_equal(m["b"]["kernel"], [[False, True, False]])
    assert m["b"]["bias"] is None


def test_layerwise_prune_keeps_fraction_per_layer():
    params = {"a": {"kernel": jnp.array([[0.1, -5.0], [3.0, 0.2]])},
              "b": {"kernel": jnp.array([[-0.3, 4.0, 0.0, 1.0]])}}
    m = masks.magnitude_prune(params, 0.5, scope="layerwise")
    np.testing.assert_array_equal(m["a"]["kernel"], [[False, True], [True, False]])
    np.testing.assert_array_equal(m["b"]["kernel"], [[False, True, False, True]])


def test_ties_are_broken_by_position_first_kept():
    params = {"a": {"kernel": jnp.ones((2, 3))}, "b": {"kernel": jnp.ones((1, 2))}}
    m = masks.magnitude_prune(params, 3 / 8)  # all equal: the first 3 in flattened order
    np.testing.assert_array_equal(m["a"]["kernel"], [[True, True, True], [False, False, False]])
    np.testing.assert_array_equal(m["b"]["kernel"], [[False, False]])


def test_kept_count_rounds_half_up():
    params = make_params()
    for d in (0.1, 0.25, 0.5, 0.8**5, 1.0):
        assert int(masks.count(masks.magnitude_prune(params, d))[0]) == int(np.floor(d * N_PRUNABLE + 0.5))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), density=st.floats(0.01, 1.0),
       scope=st.sampled_from(["global", "layerwise"]))
def test_magnitude_prune_keeps_count_and_only_largest(seed, density, scope):
    params = make_params(seed)
    m = masks.magnitude_prune(params, density, scope=scope)
    groups = ([("conv", "kernel"), ("dense", "kernel")] if scope == "global"
              else [[("conv", "kernel")], [("dense", "kernel")]])
    groups = [groups] if scope == "global" else groups
    for group in groups:
        w = np.concatenate([np.abs(np.asarray(params[a][b])).ravel() for a, b in group])
        k = np.concatenate([np.asarray(m[a][b]).ravel() for a, b in group])
        assert k.sum() == int(np.floor(density * w.size + 0.5))
        if 0 < k.sum() < k.size:
            assert w[k].min() >= w[~k].max()


def test_magnitude_prune_under_jit_with_traced_density_matches_eager():
    params = make_params(3)
    jitted = jax.jit(masks.magnitude_prune)(params, 0.37)
    assert_masks_equal(jitted, masks.magnitude_prune(params, 0.37))


def test_stacked_magnitude_prune_matches_per_member():
    ps = [make_params(i) for i in range(3)]
    stacked = masks.magnitude_prune(masks.stack(ps), 0.4, stacked=True)
    for got, p in zip(masks.unstack(stacked), ps):
        assert_masks_equal(got, masks.magnitude_prune(p, 0.4))


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_random_mask_keeps_exact_count_and_depends_on_key(scope):
    params = make_params()
    a = masks.random_mask(jax.random.key(0), params, 0.3, scope=scope)
    b = masks.random_mask(jax.random.key(1), params, 0.3, scope=scope)
    assert int(masks.count(a)[0]) == int(masks.count(masks.magnitude_prune(params, 0.3, scope=scope))[0])
    assert float(masks.iou(a, b)) < 1.0
    if scope == "layerwise":
        assert {p: float(v) for p, v in masks.layer_densities(a).items()} == pytest.approx(
            {"conv/kernel": 22 / 72, "dense/kernel": 12 / 40})


# --- composition ------------------------------------------------------------------------------

def test_union_intersection_vote_exact():
    x = lambda *v: {"w": {"kernel": jnp.array(v, bool).reshape(1, 4)}}  # noqa: E731
    ms = [x(1, 1, 0, 0), x(1, 0, 1, 0), x(1, 0, 0, 0)]
    np.testing.assert_array_equal(masks.union(ms)["w"]["kernel"], [[1, 1, 1, 0]])
    np.testing.assert_array_equal(masks.intersection(ms)["w"]["kernel"], [[1, 0, 0, 0]])
    np.testing.assert_array_equal(masks.vote(ms, at_least=2)["w"]["kernel"], [[1, 0, 0, 0]])


@settings(max_examples=30, deadline=None)
@given(ms=mask_sets)
def test_union_and_intersection_properties(ms):
    u, i = as_np(masks.union(ms)), as_np(masks.intersection(ms))
    for m in ms:
        for ul, il, ml in zip(u, i, as_np(m)):
            assert np.all(ul >= ml) and np.all(il <= ml)
    for ul, il in zip(u, i):
        assert np.all(ul >= il)


@settings(max_examples=30, deadline=None)
@given(ms=mask_sets)
def test_vote_extremes_are_union_and_intersection(ms):
    assert_masks_equal(masks.vote(ms, at_least=1), masks.union(ms))
    assert_masks_equal(masks.vote(ms, at_least=len(ms)), masks.intersection(ms))


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(ms=mask_sets)
def test_stacked_and_list_inputs_agree(ms):
    s = masks.stack(ms)
    assert_masks_equal(masks.union(s), masks.union(ms))
    assert_masks_equal(masks.intersection(s), masks.intersection(ms))
    np.testing.assert_allclose(masks.pairwise_iou(s), masks.pairwise_iou(ms))


# --- overlap and chance -----------------------------------------------------------------------

def test_iou_and_overlap_exact():
    a = {"w": {"kernel": jnp.array([[1, 1, 0, 0]], bool)}}
    b = {"w": {"kernel": jnp.array([[1, 0, 1, 1]], bool)}}
    assert float(masks.iou(a, b)) == pytest.approx(1 / 4)
    assert float(masks.overlap(a, b)) == pytest.approx(1 / 2)
    assert float(masks.overlap(b, a)) == pytest.approx(1 / 3)
    assert {k: float(v) for k, v in masks.iou_by_layer(a, b).items()} == {"w/kernel": 0.25}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), d1=st.floats(0.0, 1.0), d2=st.floats(0.0, 1.0))
def test_iou_symmetric_bounded_and_one_on_identical(seed, d1, d2):
    a, b = random_bool_mask(seed, d1), random_bool_mask(seed + 1, d2)
    v = float(masks.iou(a, b))
    if int(masks.count(a)[0]) + int(masks.count(b)[0]) == 0:
        assert np.isnan(v)  # two empty masks: IoU not defined
        return
    assert 0.0 <= v <= 1.0
    assert v == float(masks.iou(b, a))
    if int(masks.count(a)[0]):
        assert float(masks.iou(a, a)) == 1.0


def test_overlap_of_empty_masks_is_not_a_number():
    empty = {"w": {"kernel": jnp.zeros((3, 4), bool)}}
    full = {"w": {"kernel": jnp.ones((3, 4), bool)}}
    assert np.isnan(float(masks.iou(empty, empty)))
    assert float(masks.iou(empty, full)) == 0.0
    assert np.isnan(float(masks.overlap(empty, full)))
    assert np.isnan(float(masks.chance_iou(0.0, 0.0)))
    assert np.isnan(float(masks.pairwise_iou([empty, full])[0, 0]))


def test_pairwise_iou_matrix_matches_pairs():
    ms = [random_bool_mask(i, 0.4) for i in range(4)]
    mat = np.asarray(masks.pairwise_iou(ms))
    assert mat.shape == (4, 4)
    np.testing.assert_allclose(np.diag(mat), 1.0)
    np.testing.assert_allclose(mat, mat.T)
    for i in range(4):
        for j in range(4):
            assert mat[i, j] == pytest.approx(float(masks.iou(ms[i], ms[j])), abs=1e-6)
    ov = np.asarray(masks.pairwise_overlap(ms))
    assert ov[1, 2] == pytest.approx(float(masks.overlap(ms[1], ms[2])), abs=1e-6)
    by_layer = masks.pairwise_iou_by_layer(ms)
    assert float(by_layer["dense/kernel"][0, 1]) == pytest.approx(
        float(masks.iou_by_layer(ms[0], ms[1])["dense/kernel"]), abs=1e-6)


def test_chance_iou_formula():
    assert float(masks.chance_iou(0.2, 0.2)) == pytest.approx(0.2 / 1.8)
    assert float(masks.chance_iou(0.5, 0.1)) == pytest.approx(0.05 / 0.55)
    assert float(masks.chance_iou(1.0, 1.0)) == 1.0


# --- chance-corrected agreement: Cohen's kappa, layer-stratified ---------------------------------

def test_kappa_exact_on_a_hand_built_pair():
    # Layer w (8 weights): a keeps 0-3, b keeps 0-1 and 4-5: both kept 2, both pruned 2, so
    # p_o = 4/8, p_e = 0.5*0.5 + 0.5*0.5 = 1/2: kappa 0. Layer v (4 weights): identical masks
    # keeping 1 of 4: p_o = 1, p_e = 1/16 + 9/16 = 10/16. Stratified:
    # (8 (1/2 - 1/2) + 4 (1 - 10/16)) / (8 (1 - 1/2) + 4 (1 - 10/16)) = 1.5 / 5.5.
    a = {"w": {"kernel": jnp.arange(8).reshape(2, 4) < 4}, "v": {"kernel": jnp.arange(4).reshape(2, 2) < 1}}
    b = {"w": {"kernel": jnp.asarray(np.isin(np.arange(8), [0, 1, 4, 5]).reshape(2, 4))},
         "v": {"kernel": jnp.arange(4).reshape(2, 2) < 1}}
    assert float(masks.kappa(a, b)) == pytest.approx(1.5 / 5.5, rel=1e-6)
    by_layer = {k: float(v) for k, v in masks.kappa_by_layer(a, b).items()}
    assert by_layer == pytest.approx({"w/kernel": 0.0, "v/kernel": 1.0})
    # Pruned sets of w: a prunes 4-7, b prunes 2, 3, 6, 7: 2 shared of 6; v: 3 of 3.
    assert float(masks.pruned_iou(a, b)) == pytest.approx(5 / 9)
    inverse = jax.tree.map(lambda x: ~x, (a, b))
    assert float(masks.pruned_iou(a, b)) == pytest.approx(float(masks.iou(*inverse)))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), d1=st.floats(0.02, 0.98), d2=st.floats(0.02, 0.98))
def test_kappa_is_one_on_identical_masks_and_symmetric(seed, d1, d2):
    a, b = random_bool_mask(seed, d1), random_bool_mask(seed + 1, d2)
    if all(0 < float(v) < 1 for v in masks.layer_densities(a).values()):
        assert float(masks.kappa(a, a)) == 1.0
    assert float(masks.kappa(a, b)) == pytest.approx(float(masks.kappa(b, a)), abs=1e-6)
    assert -1.0 - 1e-6 <= float(masks.kappa(a, b)) <= 1.0 + 1e-6


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), d=st.floats(0.05, 0.95))
def test_kappa_does_not_depend_on_the_order_of_the_layers(seed, d):
    """The same leaves under names that sort in the opposite order (jax.tree order changes)."""
    a, b = random_bool_mask(seed, d), random_bool_mask(seed + 7, d)
    rename = lambda m: {"z_conv": m["conv"], "a_dense": m["dense"], "bn": m["bn"]}  # noqa: E731
    assert float(masks.kappa(rename(a), rename(b))) == pytest.approx(float(masks.kappa(a, b)),
                                                                       abs=1e-6)


def test_kappa_of_independent_random_masks_is_near_zero_at_any_per_layer_densities():
    """Random masks that keep the same count per layer as a very uneven magnitude mask agree
    like chance: kappa ~ 0 while their IoU sits far above the naive chance."""
    m = {"a": {"kernel": jnp.arange(5000).reshape(100, 50) < 3500},  # 70% kept
         "b": {"kernel": jnp.arange(30000).reshape(300, 100) < 1500}}  # 5% kept
    kappas, ious = [], []
    for s in range(6):
        x = masks.random_mask_like(jax.random.key(2 * s), m)
        y = masks.random_mask_like(jax.random.key(2 * s + 1), m)
        kappas.append(float(masks.kappa(x, y)))
        ious.append(float(masks.iou(x, y)))
    # std of one kappa here is about 0.007; the mean of 6 within 0.01 of 0
    assert abs(np.mean(kappas)) < 0.01, kappas
    assert np.mean(ious) == pytest.approx(float(masks.chance_iou_matched(m)), abs=0.01)
    assert np.mean(ious) > float(masks.chance_iou(*(2 * [float(masks.density(m))]))) + 0.05


def test_pairwise_kappa_pruned_iou_and_matched_chance_match_pairs():
    ms = [random_bool_mask(i, 0.3 + 0.1 * i) for i in range(4)]
    kap, piou = np.asarray(masks.pairwise_kappa(ms)), np.asarray(masks.pairwise_pruned_iou(ms))
    chance = np.asarray(masks.pairwise_chance_iou_matched(ms))
    np.testing.assert_allclose(np.diag(kap), 1.0)
    for i in range(4):
        for j in range(4):
            assert kap[i, j] == pytest.approx(float(masks.kappa(ms[i], ms[j])), abs=1e-6)
            assert piou[i, j] == pytest.approx(float(masks.pruned_iou(ms[i], ms[j])), abs=1e-6)
            assert chance[i, j] == pytest.approx(float(masks.chance_iou_matched(ms[i], ms[j])),
                                                 abs=1e-6)
    by_layer = masks.pairwise_kappa_by_layer(ms)
    assert float(by_layer["conv/kernel"][1, 3]) == pytest.approx(
        float(masks.kappa_by_layer(ms[1], ms[3])["conv/kernel"]), abs=1e-6)
    stacked = masks.stack(ms[:2])
    np.testing.assert_allclose(np.asarray(masks.kappa(stacked, masks.stack(ms[2:]), stacked=True)),
                               [kap[0, 2], kap[1, 3]], atol=1e-6)


def test_kappa_of_masks_that_agree_on_nothing_informative_is_not_a_number():
    full = {"w": {"kernel": jnp.ones((3, 4), bool)}}
    assert np.isnan(float(masks.kappa(full, full)))  # every layer entirely kept: no information


@pytest.mark.slow
def test_empirical_random_iou_matches_chance_within_sampling_error():
    params = {"w": {"kernel": jnp.zeros((200, 250))}}  # 50,000 weights
    for d1, d2 in [(0.1, 0.1), (0.3, 0.05), (0.5, 0.5)]:
        ious = [float(masks.iou(masks.random_mask(jax.random.key(2 * s), params, d1),
                                masks.random_mask(jax.random.key(2 * s + 1), params, d2)))
                for s in range(8)]
        expected = float(masks.chance_iou(d1, d2))
        # Std of one IoU at n = 50,000 is below 0.003 here; 8 samples: below 0.0011.
        assert abs(np.mean(ious) - expected) < 0.004, (d1, d2, np.mean(ious), expected)


def test_layer_matched_chance():
    # One dense layer and one sparse one: matched chance is above the naive value.
    a = {"x": {"kernel": jnp.ones((1, 100), bool)},
         "y": {"kernel": jnp.arange(900).reshape(1, 900) < 90}}
    d = float(masks.density(a))
    expected = (100 * 1.0 + 900 * 0.01) / (100 * 1.0 + 900 * (0.2 - 0.01))
    assert float(masks.chance_iou_matched(a)) == pytest.approx(expected, rel=1e-5)
    assert float(masks.chance_iou_matched(a)) > float(masks.chance_iou(d, d))
    # Empirically: random masks with the same per-layer counts.
    rng = np.random.default_rng(0)
    rand = lambda: {"x": {"kernel": jnp.ones((1, 100), bool)},  # noqa: E731
                    "y": {"kernel": jnp.asarray(rng.permutation(900).reshape(1, 900) < 90)}}
    emp = [float(masks.iou(rand(), rand())) for _ in range(50)]
    assert np.mean(emp) == pytest.approx(expected, abs=0.01)


# --- matched-density composition ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("how", ["union", "intersection", 2])
@pytest.mark.parametrize("density", [0.05, 0.21, 0.5])
def test_compose_lands_on_target_density(how, density):
    shapes = {"a": {"kernel": (40, 50)}, "b": {"kernel": (30, 100), "bias": (100,)}}
    ps = [make_params(i, shapes) for i in range(4)]
    mask, d = masks.compose(ps, density, how=how)
    assert abs(float(masks.density(mask)) - density) <= 0.001
    # The per-sibling density is the one that, pruned one-shot and composed, gives the mask.
    singles = [masks.magnitude_prune(p, float(d)) for p in ps]
    m = {"union": 1, "intersection": 4}.get(how, how)
    assert_masks_equal(mask, masks.vote(singles, at_least=m))
    if how == "union":
        assert float(d) <= density
    if how == "intersection":
        assert float(d) >= density


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(2, 4), how_index=st.integers(0, 2),
       density=st.floats(0.02, 0.9))
@pytest.mark.slow
def test_exact_compose_keeps_the_target_count_inside_the_plain_vote(seed, k, how_index, density):
    ps = [make_params(seed + i) for i in range(k)]
    how = ["union", "intersection", max(1, k // 2)][how_index]
    mask, d = masks.compose(ps, density, how=how, exact=True)
    assert int(masks.count(mask)[0]) == int(np.floor(density * N_PRUNABLE + 0.5))
    # Every kept weight is kept by the vote at the returned per-sibling density ...
    m = {"union": 1, "intersection": k}.get(how, how)
    voted = masks.vote([masks.magnitude_prune(p, float(d)) for p in ps], at_least=m)
    assert all(np.all(x <= y) for x, y in zip(as_np(mask), as_np(voted)))
    # ... which exceeds the target by fewer than k weights.
    assert int(masks.count(voted)[0]) - int(masks.count(mask)[0]) < k


def test_exact_compose_of_pruned_siblings_stays_inside_their_support():
    """Parallel IMP composes siblings trained under one mask: nothing pruned may come back."""
    support = masks.magnitude_prune(make_params(99), 0.5)
    ps = [masks.apply(make_params(i), support) for i in range(3)]
    for how in ("union", "intersection", 2):
        mask, _ = masks.compose(ps, 0.4, how=how, exact=True)
        assert all(np.all(x <= y) for x, y in zip(as_np(mask), as_np(support)))


def test_random_mask_like_matches_every_layer_count():
    like = masks.magnitude_prune(make_params(0), 0.3)
    a = masks.random_mask_like(jax.random.key(0), like)
    b = masks.random_mask_like(jax.random.key(1), like)
    for x, y, z in zip(as_np(like), as_np(a), as_np(b)):
        assert x.sum() == y.sum() == z.sum() and x.shape == y.shape
    assert masks.layer_densities(a) == masks.layer_densities(like)
    assert any(np.any(y != z) for y, z in zip(as_np(a), as_np(b)))  # random, not a copy
    assert_masks_equal(a, masks.random_mask_like(jax.random.key(0), like))  # seeded


def test_compose_of_identical_siblings_is_plain_pruning():
    p = make_params(0)
    mask, d = masks.compose([p, p, p], 0.3, how="intersection")
    assert_masks_equal(mask, masks.magnitude_prune(p, 0.3))


def test_compose_jits():
    ps = masks.stack([make_params(i) for i in range(3)])
    f = jax.jit(masks.compose, static_argnames="how")
    mask, d = f(ps, 0.4, how="union")
    mask2, d2 = masks.compose(ps, 0.4, how="union")
    assert_masks_equal(mask, mask2)
    assert float(d) == pytest.approx(float(d2))


# --- save / load --------------------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10**6), density=st.floats(0.0, 1.0))
def test_save_load_round_trip(tmp_path_factory, seed, density):
    m = random_bool_mask(seed, density)
    path = tmp_path_factory.mktemp("m") / "mask.npz"
    masks.save(path, m)
    assert_masks_equal(masks.load(path), m)
    assert_masks_equal(masks.load(path, like=make_params()), m)


def test_save_load_stack(tmp_path):
    s = masks.stack([random_bool_mask(i, 0.5) for i in range(3)])
    masks.save(tmp_path / "s.npz", s)
    assert_masks_equal(masks.load(tmp_path / "s.npz", like=make_params()), s)


def test_load_names_first_mismatching_path(tmp_path):
    masks.save(tmp_path / "m.npz", random_bool_mask(0, 0.5))
    other = make_params(shapes={"conv": {"kernel": (3, 3, 2, 8), "bias": (4,)},
                                "dense": {"kernel": (8, 5), "bias": (5,)}, "bn": {"scale": (4,)}})
    with pytest.raises(ValueError, match="conv/kernel"):
        masks.load(tmp_path / "m.npz", like=other)
    renamed = make_params(shapes={"conv": {"kernel": (3, 3, 2, 4), "bias": (4,)},
                                  "fc": {"kernel": (8, 5), "bias": (5,)}, "bn": {"scale": (4,)}})
    with pytest.raises(ValueError, match="dense/bias|fc/bias"):
        masks.load(tmp_path / "m.npz", like=renamed)


def test_load_rejects_non_mask_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        masks.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "arrays.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="arrays.npz"):
        masks.load(tmp_path / "arrays.npz")


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_bad_density_is_rejected(density):
    with pytest.raises(ValueError, match="density"):
        masks.magnitude_prune(make_params(), density)
    with pytest.raises(ValueError, match="density"):
        masks.compose([make_params(0), make_params(1)], density)


def test_bad_inputs_raise_clear_errors():
    ms = [random_bool_mask(i, 0.5) for i in range(3)]
    with pytest.raises(ValueError, match="at_least"):
        masks.vote(ms, at_least=0)
    with pytest.raises(ValueError, match="at_least"):
        masks.vote(ms, at_least=4)
    with pytest.raises(ValueError, match="empty"):
        masks.union([])
    with pytest.raises(ValueError, match="how"):
        masks.compose([make_params(0), make_params(1)], 0.5, how="xor")
    with pytest.raises(ValueError, match="how"):
        masks.compose([make_params(0), make_params(1)], 0.5, how=3)
    with pytest.raises(ValueError, match="scope"):
        masks.magnitude_prune(make_params(), 0.5, scope="per-channel")
    bad_shape = random_bool_mask(0, 0.5)
    bad_shape["dense"]["kernel"] = jnp.ones((8, 6), bool)
    with pytest.raises(ValueError, match="dense/kernel"):
        masks.union([ms[0], bad_shape])
    with pytest.raises(ValueError, match="dense/kernel"):
        masks.iou(ms[0], bad_shape)
    float_leaf = random_bool_mask(0, 0.5)
    float_leaf["conv"]["kernel"] = jnp.ones((3, 3, 2, 4))
    with pytest.raises(TypeError, match="conv/kernel"):
        masks.count(float_leaf)
    with pytest.raises(ValueError, match="dense/kernel"):
        masks.apply(make_params(), bad_shape)
    nan_params = make_params()
    nan_params["dense"]["kernel"] = nan_params["dense"]["kernel"].at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="dense/kernel"):
        masks.magnitude_prune(nan_params, 0.5)


def test_the_composition_registry_names_thresholds_and_takes_new_methods(monkeypatch):
    assert [masks.at_least("vote", k) for k in (2, 3, 4, 5, 10)] == [2, 2, 3, 3, 6]
    assert masks.at_least("union", 5) == 1 and masks.at_least("intersection", 5) == 5
    assert masks.at_least(2, 5) == 2 and masks.COMPOSITIONS["vote"].min_k == 3
    with pytest.raises(ValueError, match="how='xor'"):
        masks.at_least("xor", 3)
    with pytest.raises(ValueError, match="identifier"):
        masks.Composition("two of k", lambda k: 2)
    monkeypatch.setitem(masks.COMPOSITIONS, "two", masks.Composition("two", lambda k: 2, min_k=2))
    params = [make_params(i) for i in range(3)]
    by_name, d = masks.compose(params, 0.5, how="two")
    by_number, d2 = masks.compose(params, 0.5, how=2)
    assert float(d) == float(d2)
    for a, b in zip(jax.tree.leaves(by_name), jax.tree.leaves(by_number)):
        np.testing.assert_array_equal(a, b)


# --- composition rules on ranks ------------------------------------------------------------------

@pytest.mark.parametrize("how", sorted(masks.COMPOSITIONS))
def test_every_rule_lands_on_its_density_and_agrees_with_its_mask_form(how):
    """Any registered rule: compose reaches the target within k / n, exactly with exact=True,
    and equals `combine` of the members' own one-shot masks at the per-sibling density."""
    k, weights = 4, [0.9, 0.5, 0.7, 0.8]
    ps = [make_params(10 + i) for i in range(k)]
    for density in (0.1, 0.4):
        mask, d = masks.compose(ps, density, how=how, weights=weights)
        assert abs(int(masks.count(mask)[0]) - density * N_PRUNABLE) <= k
        singles = [masks.magnitude_prune(p, float(d)) for p in ps]
        assert_masks_equal(mask, masks.combine(singles, how, weights))
        exact, _ = masks.compose(ps, density, how=how, weights=weights, exact=True)
        assert int(masks.count(exact)[0]) == int(np.floor(density * N_PRUNABLE + 0.5))


def test_the_weighted_vote_is_the_vote_with_equal_weights_and_follows_a_dominant_member():
    ps = [make_params(20 + i) for i in range(5)]
    vote, _ = masks.compose(ps, 0.3, how="vote")
    assert_masks_equal(vote, masks.compose(ps, 0.3, how="weighted_vote")[0])
    assert_masks_equal(vote, masks.compose(ps, 0.3, how="weighted_vote", weights=[2.0] * 5)[0])
    traced = jax.jit(lambda w: masks.compose(ps, 0.3, how="weighted_vote", weights=w)[0])
    assert_masks_equal(vote, traced(jnp.full((5,), 0.7)))  # weights may be traced, like densities
    # One member with more than half the total weight decides alone: its own one-shot mask.
    dominant, _ = masks.compose(ps, 0.3, how="weighted_vote", weights=[0.1, 0.1, 5.0, 0.1, 0.1])
    assert_masks_equal(dominant, masks.magnitude_prune(ps[2], 0.3))
    # By hand on one weight: members keep it at ranks 0 and 1 (weights 0.2 and 0.2) and lose it
    # at ranks 5, 6, 9 (weights 0.1, 0.3, 0.2): half the total (0.5) is first exceeded at rank 6.
    ranks = jnp.array([[0], [1], [5], [6], [9]])
    w = jnp.array([0.2, 0.2, 0.1, 0.3, 0.2])
    assert int(masks.weighted_majority(ranks, w)[0]) == 6
    with pytest.raises(ValueError, match="weights must be 5 finite nonnegative"):
        masks.compose(ps, 0.3, how="weighted_vote", weights=[1.0, -1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="exactly one of at_least and rank"):
        masks.Composition("both", lambda k: 1, rank=masks.weighted_majority)
    assert masks.at_least("weighted_vote", 5) is None  # not a threshold rule
