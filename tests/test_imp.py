"""Iterative magnitude pruning on hand-built pytrees: exact level densities, nothing pruned
comes back, single and parallel (composed) levels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlottery import imp, masks

SHAPES = {"conv": {"kernel": (3, 3, 4, 8), "bias": (8,)}, "dense": {"kernel": (32, 10), "bias": (10,)}}
N = 3 * 3 * 4 * 8 + 32 * 10


def trained(seed, mask=None):
    """Stand-in for training under `mask`: fresh random weights, pruned ones exactly zero."""
    rng = np.random.default_rng(seed)
    p = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), SHAPES,
                     is_leaf=lambda x: isinstance(x, tuple))
    return p if mask is None else masks.apply(p, mask)


def kept(m):
    return int(masks.count(m)[0])


def inside(a, b):
    return all(np.all(np.asarray(x) <= np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_level_density_is_the_geometric_schedule():
    assert imp.level_density(0) == 1.0
    assert imp.level_density(10) == pytest.approx(0.107374, abs=1e-6)
    assert imp.level_density(2, rate=0.36) == pytest.approx(0.64**2)
    with pytest.raises(ValueError, match="rate"):
        imp.level_density(1, rate=1.0)


@pytest.mark.parametrize("rate", [0.2, 0.36])
def test_single_network_levels_keep_exactly_the_schedule_and_only_shrink(rate):
    mask = masks.ones_like(trained(0))
    for level in range(1, 9):
        d = imp.level_density(level, rate)
        new = imp.prune_further(trained(level, mask), mask, d)
        assert kept(new) == int(np.floor(d * N + 0.5))
        assert inside(new, mask)
        mask = new


@pytest.mark.parametrize("how", ["union", "intersection", 2])
def test_parallel_levels_keep_exactly_the_schedule_and_only_shrink(how):
    mask = masks.ones_like(trained(0))
    for level in range(1, 7):
        d = imp.level_density(level)
        sibs = masks.stack([trained(100 * level + i, mask) for i in range(3)])
        new = imp.compose_further(sibs, mask, d, how)
        assert kept(new) == int(np.floor(d * N + 0.5))
        assert inside(new, mask)
        mask = new


def test_parallel_level_of_identical_siblings_is_single_network_imp():
    mask = masks.magnitude_prune(trained(5), 0.8)
    p = trained(6, mask)
    for how in ("union", "intersection"):
        a = imp.compose_further(masks.stack([p, p, p]), mask, 0.64, how)
        b = imp.prune_further(p, mask, 0.64)
        assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_pruning_never_grows_a_mask():
    mask = masks.magnitude_prune(trained(1), 0.5)
    with pytest.raises(ValueError, match="only prunes further"):
        imp.prune_further(trained(2), mask, 0.6)
    with pytest.raises(ValueError, match="only prunes further"):
        imp.compose_further(masks.stack([trained(2), trained(3)]), mask, 0.6)
