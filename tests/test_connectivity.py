"""Linear mode connectivity: the path's end points are the networks themselves."""

import jax
import numpy as np
import pytest

from jaxlottery import connectivity, data, models, siblings, stacks, train
from jaxlottery.train import Recipe


@pytest.fixture(scope="module")
def two_siblings():
    d = data.to_device(data.synthetic(num_train=256, num_test=128, image_shape=(16, 16, 3), seed=2))
    v = models.init(jax.random.key(0), "cifar_resnet_8_4", image_shape=(16, 16, 3))
    r = Recipe(batch_size=64, epochs=2, lr_drop_epochs=(1,))
    model = models.create("cifar_resnet_8_4")
    states, _ = siblings.train(siblings.spawn(v, 2, r), jax.random.split(jax.random.key(1), 2), d,
                               model, r, until=8, evaluate=False)
    a, b = (train.variables(stacks.index(states, i)) for i in range(2))
    return a, b, d, model


@pytest.mark.slow
def test_interpolation_end_points_are_exact(two_siblings):
    a, b, *_ = two_siblings
    for got, want in ((connectivity.interpolate(a, b, 0.0), a), (connectivity.interpolate(a, b, 1.0), b)):
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(x, y)


@pytest.mark.slow
@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
def test_barrier_end_points_reproduce_the_networks_accuracy(two_siblings, bn):
    a, b, d, model = two_siblings
    res = connectivity.error_barrier(a, b, d, model, points=5, bn=bn)
    assert len(res["errors"]) == 5 and res["alphas"][0] == 0.0 and res["alphas"][-1] == 1.0
    if bn == "interpolate":
        assert res["end_errors"][0] == 1 - train.evaluate(a, d, model)["accuracy"]
        assert res["end_errors"][1] == 1 - train.evaluate(b, d, model)["accuracy"]
    assert res["barrier"] >= 0.0 and res["barrier"] == max(res["errors"]) - np.mean(res["end_errors"])


@pytest.mark.slow
def test_points_evaluated_as_stacks_equal_one_network_at_a_time(two_siblings):
    """The path as a stack, its BN statistics re-estimated and its points evaluated in one
    program (or chunks of 2, the last padded), against one point at a time by hand."""
    a, b, d, model = two_siblings
    alphas = np.linspace(0, 1, 3)
    stack = connectivity.path(a, b, alphas)
    for i, alpha in enumerate(alphas):
        for x, y in zip(jax.tree.leaves(stacks.index(stack, i)),
                        jax.tree.leaves(connectivity.interpolate(a, b, float(alpha)))):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    stats = connectivity.recompute_batch_stats(stack, d, model, batches=3, batch_size=100)
    probe = model.clone(bn_momentum=0.0)
    for i in range(3):
        v = stacks.index(stack, i)
        per_batch = [probe.apply(v, data.normalize(d.x_train[s:s + 100], d.mean, d.std),
                                 train=True, mutable=["batch_stats"])[1]["batch_stats"]
                     for s in (0, 100, 156)]  # the last batch ends at the last example
        want = jax.tree.map(lambda *xs: sum(xs) / 3, *per_batch)
        for x, y in zip(jax.tree.leaves(stacks.index(stats["batch_stats"], i)), jax.tree.leaves(want)):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    for bn in ("interpolate", "recompute"):
        whole = connectivity.error_barrier(a, b, d, model, points=3, bn=bn)
        chunked = connectivity.error_barrier(a, b, d, model, points=3, bn=bn, chunk=2,
                                             steps_per_call=100)  # batches looped on device
        assert whole == chunked
    by_hand = [1 - train.evaluate(connectivity.interpolate(a, b, float(al)), d, model)["accuracy"]
               for al in alphas]
    assert whole["errors"] == pytest.approx(by_hand, abs=1 / 128)  # at most one image apart


@pytest.mark.slow
def test_bad_arguments(two_siblings):
    a, b, d, model = two_siblings
    with pytest.raises(ValueError, match="bn"):
        connectivity.error_barrier(a, b, d, model, bn="average")
    with pytest.raises(ValueError, match="points"):
        connectivity.error_barrier(a, b, d, model, points=1)


def test_the_path_is_exact_at_its_ends_and_linear_between():
    a = {"w": np.array([1.0, -2.0, 3.0], np.float32), "b": {"c": np.float32(0.5)}}
    b = {"w": np.array([3.0, 2.0, -1.0], np.float32), "b": {"c": np.float32(-0.5)}}
    stack = connectivity.path(a, b, np.array([0.0, 0.25, 1.0], np.float32))
    np.testing.assert_array_equal(stack["w"][0], a["w"])
    np.testing.assert_array_equal(stack["w"][2], b["w"])
    np.testing.assert_allclose(stack["w"][1], [1.5, -1.0, 2.0])
    np.testing.assert_allclose(stack["b"]["c"], [0.5, 0.25, -0.5])
