"""Linear mode connectivity: the path's end points are the networks themselves."""

import jax
import numpy as np
import pytest

from jaxlottery import connectivity, data, models, siblings, train
from jaxlottery.train import Recipe


@pytest.fixture(scope="module")
def two_siblings():
    d = data.to_device(data.synthetic(num_train=256, num_test=128, image_shape=(16, 16, 3), seed=2))
    v = models.init(jax.random.key(0), depth=8, width=4, image_shape=(16, 16, 3))
    r = Recipe(batch_size=64, epochs=2, lr_drop_epochs=(1,))
    model = models.resnet(8, 4)
    states, _ = siblings.train(siblings.spawn(v, 2, r), jax.random.split(jax.random.key(1), 2), d,
                               model, r, until=8, evaluate=False)
    a, b = (train.variables(siblings.index(states, i)) for i in range(2))
    return a, b, d, model


def test_interpolation_end_points_are_exact(two_siblings):
    a, b, *_ = two_siblings
    for got, want in ((connectivity.interpolate(a, b, 0.0), a), (connectivity.interpolate(a, b, 1.0), b)):
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
def test_barrier_end_points_reproduce_the_networks_accuracy(two_siblings, bn):
    a, b, d, model = two_siblings
    res = connectivity.error_barrier(a, b, d, model, points=5, bn=bn)
    assert len(res["errors"]) == 5 and res["alphas"][0] == 0.0 and res["alphas"][-1] == 1.0
    if bn == "interpolate":
        assert res["end_errors"][0] == 1 - train.evaluate(a, d, model)["accuracy"]
        assert res["end_errors"][1] == 1 - train.evaluate(b, d, model)["accuracy"]
    assert res["barrier"] >= 0.0 and res["barrier"] == max(res["errors"]) - np.mean(res["end_errors"])


def test_bad_arguments(two_siblings):
    a, b, d, model = two_siblings
    with pytest.raises(ValueError, match="bn"):
        connectivity.error_barrier(a, b, d, model, bn="average")
    with pytest.raises(ValueError, match="points"):
        connectivity.error_barrier(a, b, d, model, points=1)
