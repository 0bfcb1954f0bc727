"""k siblings in one program == k separate runs, for every strategy."""

import jax
import numpy as np
import pytest

from jaxlottery import data, masks, models, siblings, stacks
from jaxlottery.train import Recipe

ARCH = "cifar_resnet_8_4"


@pytest.fixture(scope="module", autouse=True)
def optimized():
    """XLA optimizations on in this module: with `jax_disable_most_optimizations` (conftest),
    XLA:CPU computes the vmapped *masked* step differently (BN-bias updates 3% apart after one
    step, while unmasked steps and forward passes agree); production never runs that mode."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="module")
def setup():
    d = data.to_device(data.synthetic(num_train=96, num_test=32, image_shape=(16, 16, 3), seed=3))
    v = models.init(jax.random.key(0), ARCH, image_shape=(16, 16, 3))
    r = Recipe(batch_size=32, epochs=2, lr_drop_epochs=(1,))
    keys = jax.random.split(jax.random.key(11), 3)
    ms = masks.stack([masks.magnitude_prune(v["params"], d_) for d_ in (0.3, 0.5, 0.8)])
    return d, v, r, keys, ms


@pytest.fixture(scope="module")
def separate_runs(setup):
    """Each member trained alone, as a 1-member stack with its own key and mask."""
    d, v, r, keys, ms = setup
    outs = []
    for i in range(3):
        s, h = siblings.train(siblings.spawn(v, 1, r), keys[i:i + 1], d, models.create(ARCH), r,
                              until=4, ms=masks.stack([stacks.index(ms, i)]), strategy="separate",
                              evaluate=False)
        outs.append((stacks.index(s, 0), h))
    return outs


@pytest.mark.slow
@pytest.mark.parametrize("strategy", siblings.STRATEGIES)
def test_sibling_i_equals_a_single_run_with_key_i(setup, separate_runs, strategy):
    d, v, r, keys, ms = setup
    states, hist = siblings.train(siblings.spawn(v, 3, r), keys, d, models.create(ARCH), r,
                                  until=4, ms=ms, strategy=strategy, evaluate=False)
    # vmap and lax.map compile the step as a batched or loop-body computation of its own,
    # which rounds differently from the single-network program.
    tol = (dict(rtol=2e-4, atol=2e-5) if strategy in ("vmap", "map", "streams")
           else dict(rtol=1e-5, atol=1e-6))
    for i, (single, h) in enumerate(separate_runs):
        member = stacks.index(states, i)
        for a, b in zip(jax.tree.leaves(member), jax.tree.leaves(single)):  # BN stats included
            np.testing.assert_allclose(a, b, **tol)
        np.testing.assert_allclose(hist[-1]["train_loss"][i], h[-1]["train_loss"][0], **tol)
    # Siblings with different keys really differ.
    assert not np.allclose(states.params["dense"]["kernel"][0], states.params["dense"]["kernel"][1])


def test_default_accessors_read_the_backend_table():
    """The values are pinned in test_programs.py; here the accessors agree with the table."""
    for backend in ("cpu", "gpu", "tpu"):
        d = siblings.BACKEND_DEFAULTS[backend]
        assert siblings.default_strategy(backend) == d.strategy
        assert siblings.default_steps_per_call(backend) == d.steps_per_call
