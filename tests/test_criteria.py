"""Pruning criteria (`jaxlottery.criteria`): each registered score is nonnegative, shaped like
the weights, deterministic, and makes masks with the exact kept count that compose like
magnitude masks; SNIP's gradients are the training step's own."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlottery import config, criteria, data, masks, models, stacks, train
from jaxlottery.config import ConfigError

SHAPES = {"conv": {"kernel": (3, 3, 2, 4)}, "dense": {"kernel": (8, 5), "bias": (5,)}}
N_PRUNABLE = 3 * 3 * 2 * 4 + 8 * 5
K = 3


def tree(seed, k=None):
    rng = np.random.default_rng(seed)
    lead = () if k is None else (k,)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=lead + s), jnp.float32), SHAPES,
                        is_leaf=lambda x: isinstance(x, tuple))


def evidence(k=K, seed=0):
    """A stack of k trained networks that started from one shared network."""
    return criteria.Evidence(params=tree(seed, k), start=tree(seed + 1),
                             keys=jax.random.split(jax.random.key(seed), k),
                             grads=tree(seed + 2, k))


@pytest.mark.parametrize("name", sorted(criteria.CRITERIA))
def test_every_criterion_scores_like_the_weights_nonnegative_and_deterministic(name):
    e = evidence()
    s = criteria.scores(name, e)
    assert jax.tree.structure(s) == jax.tree.structure(e.params)
    for x, w in zip(jax.tree.leaves(s), jax.tree.leaves(e.params)):
        assert x.shape == w.shape and bool(jnp.all(x >= 0)) and bool(jnp.all(jnp.isfinite(x)))
    for x, y in zip(jax.tree.leaves(s), jax.tree.leaves(criteria.scores(name, e))):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", sorted(criteria.CRITERIA))
@pytest.mark.parametrize("density", [0.05, 0.5])
def test_every_criterion_keeps_the_exact_count_and_composes_like_pruning(name, density):
    s = criteria.scores(name, evidence())
    m = masks.magnitude_prune(s, density, stacked=True)
    kept = np.asarray(masks.count(m, stacked=True)[0])
    assert (kept == round(density * N_PRUNABLE)).all()
    one = stacks.index(s, 0)  # identical members compose to plain pruning, for every rule
    for how in masks.COMPOSITIONS:
        composed, _ = masks.compose(stacks.stack([one] * K), density, how=how, exact=True)
        for a, b in zip(jax.tree.leaves(composed), jax.tree.leaves(masks.magnitude_prune(one, density))):
            np.testing.assert_array_equal(a, b)


def test_the_shipped_scores_by_hand():
    e = evidence()
    w, w0, g = e.params["dense"]["kernel"], e.start["dense"]["kernel"], e.grads["dense"]["kernel"]
    got = {n: criteria.scores(n, e)["dense"]["kernel"] for n in criteria.CRITERIA}
    np.testing.assert_array_equal(got["magnitude"], jnp.abs(w))
    np.testing.assert_array_equal(got["movement"], jnp.abs(w - w0[None]))  # shared start
    np.testing.assert_array_equal(got["snip"], jnp.abs(g * w0[None]))
    r = got["random"]
    assert bool(jnp.all(r < 1)) and not np.allclose(r[0], r[1])  # one draw per member
    one = criteria.scores("random", dataclasses.replace(e, params=stacks.index(e.params, 1),
                                                        keys=e.keys[1]))
    np.testing.assert_array_equal(one["dense"]["kernel"], r[1])  # member i == alone with key i
    # Magnitude masks of the scores are the masks of the weights, bit for bit.
    for a, b in zip(jax.tree.leaves(masks.magnitude_prune(criteria.scores("magnitude", e), 0.3,
                                                          stacked=True)),
                    jax.tree.leaves(masks.magnitude_prune(e.params, 0.3, stacked=True))):
        np.testing.assert_array_equal(a, b)


def test_missing_evidence_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="'movement' needs start"):
        criteria.scores("movement", criteria.Evidence(params=tree(0)))
    with pytest.raises(ValueError, match="unknown criterion 'sniip'; registered: magnitude"):
        criteria.scores("sniip", evidence())
    with pytest.raises(ValueError, match="needs unknown evidence"):
        criteria.Criterion("x", lambda e: e.params, "x", needs=("labels",))
    with pytest.raises(ConfigError, match="--criterion: must be one of magnitude"):
        dataclasses.replace(config.preset("smoke"), criterion="SNIP").validate()


def test_a_new_criterion_is_one_registration():
    try:
        criteria.register(criteria.Criterion("squared", lambda e: jax.tree.map(jnp.square,
                                                                               e.params), "w^2"))
        dataclasses.replace(config.preset("smoke"), criterion="squared").validate()
        m = masks.magnitude_prune(criteria.scores("squared", evidence()), 0.25, stacked=True)
        ref = masks.magnitude_prune(evidence().params, 0.25, stacked=True)  # same order as |w|
        for a, b in zip(jax.tree.leaves(m), jax.tree.leaves(ref)):
            np.testing.assert_array_equal(a, b)
    finally:
        criteria.CRITERIA.pop("squared")


@pytest.mark.slow
def test_snip_gradients_are_the_training_steps_own():
    """With plain SGD (lr 1, no momentum or decay), one training step moves the weights by
    exactly minus the gradient `batch_gradients` reports for the same member and iteration;
    several batches average."""
    ds = data.to_device(data.synthetic(num_train=40, num_test=8, image_shape=(8, 8, 3), seed=1))
    model = models.create("cifar_resnet_8_4")
    v = models.init(jax.random.key(0), "cifar_resnet_8_4", image_shape=(8, 8, 3))
    recipe = train.Recipe(batch_size=16, epochs=2, lr=1.0, momentum=0.0, weight_decay=0.0,
                          lr_drop_epochs=())
    key, step = jax.random.key(5), 2  # iteration 2: the epoch's last, partial batch
    grads = train.batch_gradients(v, key, ds, model=model, recipe=recipe, step=step, batches=1)
    state = train.init_state(v, recipe, step=step)
    perm = train.epoch_permutation(key, jnp.asarray(step // 3), 40)
    after, _ = train.train_step(state, None, key, perm, ds, model=model, recipe=recipe, batch=8)
    for w0, w1, g in zip(jax.tree.leaves(v["params"]), jax.tree.leaves(after.params),
                         jax.tree.leaves(grads)):
        np.testing.assert_allclose(w0 - w1, g, rtol=1e-4, atol=1e-6)
    two = train.batch_gradients(v, key, ds, model=model, recipe=recipe, step=1, batches=2)
    one = train.batch_gradients(v, key, ds, model=model, recipe=recipe, step=1, batches=1)
    for a, b, c in zip(jax.tree.leaves(two), jax.tree.leaves(one), jax.tree.leaves(grads)):
        np.testing.assert_allclose(a, (b + c) / 2, rtol=1e-5, atol=1e-7)
