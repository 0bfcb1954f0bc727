"""The recipe and the masked step: schedule, torch SGD semantics, pruned weights stay zero,
determinism, learning, and one full-size ResNet-20 step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlottery import data, masks, models, siblings, stacks, train
from jaxlottery.train import Recipe

TINY = "cifar_resnet_8_4"


@pytest.fixture(scope="module")
def tiny_data():
    return data.to_device(data.synthetic(num_train=160, num_test=64, image_shape=(16, 16, 3),
                                         num_classes=10, seed=0))


@pytest.fixture(scope="module")
def tiny_vars():
    return models.init(jax.random.key(0), TINY, image_shape=(16, 16, 3))


def tiny_recipe(**kw):
    return Recipe(batch_size=32, epochs=2, lr_drop_epochs=(1,), **kw)


def test_paper_schedule_drops_at_the_right_iterations():
    r = Recipe()
    assert r.steps_per_epoch(50_000) == 391 and r.total_steps(50_000) == 62_560
    assert r.lr_boundaries(50_000) == (31_280, 46_920)
    lrs = {s: float(train.schedule(r, 50_000)(jnp.asarray(s)))
           for s in (0, 31_279, 31_280, 46_919, 46_920, 62_559)}
    assert lrs == pytest.approx({0: 0.1, 31_279: 0.1, 31_280: 0.01, 46_919: 0.01,
                                 46_920: 0.001, 62_559: 0.001})


def test_optimizer_is_torch_sgd_with_decay_before_momentum():
    r = Recipe()
    tx = train.optimizer(r)
    p = {"w": jnp.array([1.0, -2.0])}
    g0, g1 = {"w": jnp.array([0.5, 0.25])}, {"w": jnp.array([-1.0, 3.0])}
    state = tx.init(p)
    u0, state = tx.update(g0, state, p)
    p1 = {"w": p["w"] - 0.1 * u0["w"]}
    u1, _ = tx.update(g1, state, p1)
    buf0 = g0["w"] + 1e-4 * p["w"]
    buf1 = 0.9 * buf0 + g1["w"] + 1e-4 * p1["w"]
    np.testing.assert_allclose(u0["w"], buf0, rtol=1e-6)
    np.testing.assert_allclose(u1["w"], buf1, rtol=1e-6)


def test_bad_recipe_is_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        Recipe(batch_size=0)
    with pytest.raises(ValueError, match="momentum"):
        Recipe(momentum=1.5)


def run(vars_, keys, d, r, until, ms=None, strategy="loop", **kw):
    states = siblings.spawn(vars_, len(keys), r)
    return siblings.train(states, keys, d, models.create(TINY), r, until=until, ms=ms,
                          strategy=strategy, **kw)


@pytest.mark.slow
def test_pruned_weights_stay_exactly_zero(tiny_data, tiny_vars):
    r = tiny_recipe()
    mask = masks.magnitude_prune(tiny_vars["params"], 0.2)
    states, _ = run(tiny_vars, jax.random.split(jax.random.key(1), 2), tiny_data, r, 10,
                    ms=masks.stack([mask, mask]), evaluate=False)
    for i in range(2):
        p = stacks.index(states.params, i)
        pruned = masks.apply(p, mask)
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(pruned)):
            np.testing.assert_array_equal(a, b)  # nothing pruned came back
        k = np.asarray(p["stage3_block0"]["conv2"]["kernel"])
        keep = np.asarray(mask["stage3_block0"]["conv2"]["kernel"])
        assert np.all(k[~keep] == 0.0) and np.all(k[keep] != 0.0)
        k0 = np.asarray(tiny_vars["params"]["stage3_block0"]["conv2"]["kernel"])
        assert not np.allclose(k[keep], k0[keep])  # kept weights trained


@pytest.mark.slow
def test_partial_last_batch_sees_every_example_once(tiny_data, tiny_vars):
    r = Recipe(batch_size=64, epochs=1, lr_drop_epochs=())  # 160 = 64 + 64 + 32
    assert r.steps_per_epoch(160) == 3
    _, hist = run(tiny_vars, jax.random.split(jax.random.key(1), 1), tiny_data, r, 3,
                  evaluate=False)
    assert len(hist) == 1 and hist[0]["complete_epoch"]
    perm = np.asarray(train.epoch_permutation(jax.random.split(jax.random.key(1), 1)[0], 0, 160))
    assert sorted(perm.tolist()) == list(range(160))


@pytest.mark.slow
def test_same_seed_is_bit_identical_after_an_epoch(tiny_data, tiny_vars):
    r = tiny_recipe()
    keys = jax.random.split(jax.random.key(7), 2)
    a, ha = run(tiny_vars, keys, tiny_data, r, 5, evaluate=False)
    b, hb = run(tiny_vars, keys, tiny_data, r, 5, evaluate=False)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert ha[0]["train_loss"] == hb[0]["train_loss"]
    c, _ = run(tiny_vars, jax.random.split(jax.random.key(8), 2), tiny_data, r, 5, evaluate=False)
    assert not np.array_equal(a.params["dense"]["kernel"], c.params["dense"]["kernel"])


def test_spawn_at_step_continues_schedule_with_fresh_momentum(tiny_vars):
    r = tiny_recipe()
    s = siblings.spawn(tiny_vars, 3, r, step=7)
    assert s.step.tolist() == [7, 7, 7]
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(s.opt_state))
    np.testing.assert_array_equal(s.params["dense"]["kernel"][2], tiny_vars["params"]["dense"]["kernel"])


@pytest.mark.slow
def test_small_resnet_learns_synthetic_data():
    d = data.to_device(data.synthetic(num_train=2048, num_test=256, image_shape=(16, 16, 3),
                                      seed=1))
    v = models.init(jax.random.key(0), "cifar_resnet_8_8", image_shape=(16, 16, 3))
    r = Recipe(batch_size=64, epochs=10, lr_drop_epochs=(8,))
    states = siblings.spawn(v, 1, r)
    states, hist = siblings.train(states, jax.random.split(jax.random.key(2), 1), d,
                                  models.create("cifar_resnet_8_8"), r, until=r.total_steps(2048))
    acc = hist[-1]["test_accuracy"][0]
    assert acc > 0.5, [h["test_accuracy"] for h in hist]  # chance is 0.1
    assert hist[-1]["train_loss"][0] < hist[0]["train_loss"][0]


@pytest.mark.slow
def test_evaluate_matches_direct_computation(tiny_data, tiny_vars):
    model = models.create(TINY)
    res = train.evaluate(tiny_vars, tiny_data, model, batch=48)  # 64 = 48 + 16 (padded)
    logits = model.apply(tiny_vars, data.normalize(tiny_data.x_test, tiny_data.mean, tiny_data.std))
    acc = float(jnp.mean(jnp.argmax(logits, -1) == tiny_data.y_test))
    loss = float(jnp.mean(train.cross_entropy(logits, tiny_data.y_test)))
    assert res["accuracy"] == pytest.approx(acc)
    assert res["loss"] == pytest.approx(loss, rel=1e-5)


@pytest.mark.slow
def test_full_size_resnet20_step_lowers_the_loss():
    v = models.init(jax.random.key(0))
    d = data.to_device(data.synthetic(num_train=128, num_test=16, seed=0))
    r = Recipe(augment=False)
    model = models.create("cifar_resnet_20")
    state = train.init_state(v, r)
    perm = jnp.arange(128, dtype=jnp.int32)
    step = jax.jit(lambda s: train.train_step(s, None, jax.random.key(0), perm, d, model=model,
                                              recipe=r, batch=128))
    losses = []
    for _ in range(3):
        state, m = step(state)
        losses.append(float(m["loss"]) / 128)
    assert losses[2] < losses[0], losses
    assert int(state.step) == 3


def test_examples_count_the_partial_last_batch_as_what_it_holds():
    r = Recipe(batch_size=128)
    assert r.examples(0, 391, 50_000) == 50_000  # one CIFAR-10 epoch: 390 x 128 + 80
    assert r.examples(0, 391 * 3, 50_000) == 150_000
    assert r.examples(390, 392, 50_000) == 80 + 128  # the partial batch, then a full one
    assert Recipe(batch_size=50).examples(3, 7, 200) == 4 * 50  # no partial batch
