"""Compiled programs over the stack: several iterations per call (the epoch program) compute
what the per-step path computes, evaluation of a stack in one program equals evaluating each
member alone, and nothing recompiles between epochs or stages of the same shapes.

Why the equivalence is checked at a small learning rate: XLA compiles a loop body (and a
`lax.map`/`vmap` over members) as a computation of its own, so one step agrees with the per-step
path only to ~1e-6. Where a ReLU input lies that close to zero, its derivative flips; the
zero-padded crops of the augmentation make constant image regions that repeat one flip over
many positions, so now and then one member's gradient differs by up to ~1% in one step, and
SGD at lr 0.1 amplifies that within a few steps (the per-step vmap and loop paths differ in the
same way). At lr 1e-3 nothing is amplified: the updates (weights minus their start) must agree
to 2%, while a wrong batch, augmentation draw, step count or mask changes them completely.
"""

import jax
import numpy as np
import pytest
from hypothesis import given, strategies as st

from jaxlottery import data, masks, models, siblings, stacks, train
from jaxlottery.train import Recipe

ARCH = "cifar_resnet_8_4"
N_TRAIN = 100  # batch 32: iterations of 32, 32, 32 and a partial one of 4 per epoch
RECIPE = Recipe(lr=1e-3, batch_size=32, epochs=3, lr_drop_epochs=(1,))


@pytest.fixture(scope="module")
def setup():
    d = data.to_device(data.synthetic(num_train=N_TRAIN, num_test=40, image_shape=(16, 16, 3),
                                      seed=3))
    v = models.init(jax.random.key(0), ARCH, image_shape=(16, 16, 3))
    keys = jax.random.split(jax.random.key(11), 2)
    ms = masks.stack([masks.magnitude_prune(v["params"], f) for f in (0.3, 0.8)])
    return d, v, keys, ms


def _train(setup, strategy, per_call, masked, until, start=None):
    d, v, keys, ms = setup
    states = siblings.spawn(v, 2, RECIPE)
    kw = dict(ms=ms if masked else None, strategy=strategy, steps_per_call=per_call,
              evaluate=False)
    history = []
    if start is not None:  # stop mid-epoch, then resume from there
        states, history = siblings.train(states, keys, d, models.create(ARCH), RECIPE,
                                         until=start, **kw)
    states, more = siblings.train(states, keys, d, models.create(ARCH), RECIPE, until=until, **kw)
    return states, history + more


@pytest.fixture(scope="module")
def per_step(setup):
    """The reference: the per-step path, a loop over members, after one epoch."""
    return {masked: _train(setup, "loop", 1, masked, until=4) for masked in (False, True)}


def _assert_same_training(got, want, start):
    """The same iterations, masks, updates (to 2%, see the docstring) and BN statistics."""
    (a, ha), (b, hb) = got, want
    assert a.step.tolist() == b.step.tolist()
    for x, y, x0 in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), jax.tree.leaves(start)):
        dx, dy = np.asarray(x) - x0, np.asarray(y) - x0
        np.testing.assert_array_equal(x == 0, y == 0)  # the same weights pruned, exactly
        scale = np.max(np.abs(dy)) + 1e-12
        assert np.max(np.abs(dx - dy)) <= 2e-2 * scale, np.max(np.abs(dx - dy)) / scale
    for x, y in zip(jax.tree.leaves(a.opt_state), jax.tree.leaves(b.opt_state)):
        np.testing.assert_allclose(x, y, atol=2e-2 * (np.max(np.abs(y)) + 1e-12))
    for x, y in zip(jax.tree.leaves(a.batch_stats), jax.tree.leaves(b.batch_stats)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    if [h["step"] for h in ha] == [h["step"] for h in hb]:  # records of the same iterations
        np.testing.assert_allclose(ha[-1]["train_loss"], hb[-1]["train_loss"], rtol=1e-4)


# Every strategy masked (with a resume mid-epoch); dense for those the masked case does not
# already pin down cheaply (streams and hybrid are vmap and map inside: masked suffices).
CASES = [(s, m) for s in siblings.STRATEGIES for m in (False, True)
         if m or s not in ("hybrid", "streams")]


@pytest.mark.slow
@pytest.mark.parametrize("strategy,masked", CASES,
                         ids=[f"{s}-{'masked' if m else 'dense'}" for s, m in CASES])
def test_epoch_program_equals_the_per_step_path(setup, per_step, strategy, masked):
    """An epoch with its partial last batch as one program, against the per-step path; and
    (masked) the same epoch stopped after two iterations and resumed."""
    d, v, keys, ms = setup
    whole = _train(setup, strategy, 1000, masked, until=4)
    assert [h["step"] for h in whole[1]] == [4]
    _assert_same_training(whole, per_step[masked], v["params"])
    if masked:
        resumed = _train(setup, strategy, 1000, masked, until=4, start=2)
        assert [h["step"] for h in resumed[1]] == [2, 4]
        _assert_same_training(resumed, whole, v["params"])


@given(step=st.integers(0, 30), length=st.integers(1, 30), per_call=st.integers(1, 12),
       n=st.integers(1, 200), batch=st.integers(1, 64))
def test_calls_cover_the_epoch_and_end_on_aligned_boundaries(step, length, per_call, n, batch):
    spe = -(-n // batch)
    base = (step // spe) * spe
    end = min(step + length, base + spe)
    cut = siblings.calls(step, end, spe, n, batch, per_call)
    assert sum(c[0] for c in cut) == end - step
    position = step
    for i, (iterations, count, tail) in enumerate(cut):
        assert 1 <= iterations <= per_call and count + tail == iterations
        position += iterations
        if tail:  # the partial batch is the epoch's last iteration, the last of its call
            assert n % batch and position == base + spe and i == len(cut) - 1
        if position < end:
            assert (position - base) % per_call == 0  # a resumed run is cut the same way
    if n % batch == 0:
        assert not any(c[2] for c in cut)


@pytest.mark.slow
def test_train_leaves_the_callers_states_intact(setup):
    d, v, keys, ms = setup
    states = siblings.spawn(v, 2, RECIPE)
    before = jax.tree.map(np.asarray, states)
    siblings.train(states, keys, d, models.create(ARCH), RECIPE, until=2, ms=ms,
                   evaluate=False)  # states are donated inside, never the caller's
    for x, y in zip(jax.tree.leaves(states), jax.tree.leaves(before)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
@pytest.mark.parametrize("per_call", [1, 1000], ids=["host-loop", "on-device"])
def test_stack_evaluation_equals_evaluating_each_member(setup, per_call):
    d, v, keys, ms = setup
    states, _ = _train(setup, "loop", 1, True, until=2)
    model = models.create(ARCH)
    states = stacks.stack([stacks.index(states, i) for i in (0, 1, 0)])
    alone = [train.evaluate(train.variables(stacks.index(states, i)), d, model, batch=16)
             for i in range(3)]
    for chunk in (None, 2):  # all members in one program; chunks of 2 (the last padded)
        got = siblings.evaluate_stack(states, d, model, 16, steps_per_call=per_call, chunk=chunk)
        assert [g["accuracy"] for g in got] == [a["accuracy"] for a in alone]
        np.testing.assert_allclose([g["loss"] for g in got], [a["loss"] for a in alone],
                                   rtol=1e-5)


class CompileCounter:
    """Counts XLA compilations while `active`."""

    def __init__(self):
        self.active, self.count = False, 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **kwargs):
        if self.active and event == "/jax/core/compile/backend_compile_duration":
            self.count += 1

    def __enter__(self):
        self.active, self.count = True, 0
        return self

    def __exit__(self, *exc):
        self.active = False


@pytest.mark.slow
@pytest.mark.parametrize("per_call", [1, 1000], ids=["per-step", "epoch-program"])
def test_nothing_recompiles_after_the_first_epoch(setup, per_call):
    d, v, keys, ms = setup
    model = models.create(ARCH)
    counter = CompileCounter()
    kw = dict(ms=ms, steps_per_call=per_call, evaluate=True, eval_batch=16)
    states, _ = siblings.train(siblings.spawn(v, 2, RECIPE), keys, d, model, RECIPE,
                               until=RECIPE.steps_per_epoch(N_TRAIN), **kw)
    with counter:  # two more epochs of the same stack
        states, hist = siblings.train(states, keys, d, model, RECIPE, until=3 * 4, **kw)
    assert len(hist) == 2 and counter.count == 0
    with counter:  # another stage of the same shapes: new weights, new keys, from iteration 4
        other = siblings.spawn(jax.tree.map(lambda x: x[1], train.variables(states)), 2, RECIPE, 4)
        siblings.train(other, jax.random.split(jax.random.key(5), 2), d, model, RECIPE,
                       until=8, **kw)
    assert counter.count == 0


def test_chunks_fill_the_device_in_balanced_stacks():
    assert siblings.chunk_size(56, 10, None) == 10  # no memory figure (CPU): k at a time
    assert siblings.chunk_size(56, 10, 40) == 28  # two chunks of 28, not 40 + 16 padded to 40
    assert siblings.chunk_size(56, 10, 4) == 10  # never below k: the sibling stage fits k
    assert siblings.chunk_size(56, 10, 1000) == 56
    assert siblings.chunk_size(3, 10, None) == 3


@pytest.mark.slow
def test_stack_capacity_from_the_devices_memory(monkeypatch):
    model, recipe = models.create(ARCH), RECIPE
    assert siblings.stack_capacity(model, recipe, N_TRAIN, (16, 16, 3), "vmap") is None  # CPU
    per_member = siblings.member_bytes(model, recipe, N_TRAIN, (16, 16, 3))
    state = siblings.spawn(models.init(jax.random.key(0), ARCH, image_shape=(16, 16, 3)), 1, recipe)
    assert per_member > 2 * sum(x.nbytes for x in jax.tree.leaves(state))  # plus activations

    class Device:
        def memory_stats(self):
            return {"bytes_limit": 1000 * per_member, "bytes_in_use": 200 * per_member}

    monkeypatch.setattr(jax, "devices", lambda *a: [Device()])
    siblings.stack_capacity.cache_clear()
    assert siblings.stack_capacity(model, recipe, N_TRAIN, (16, 16, 3), "vmap") == 400
    assert siblings.stack_capacity(model, recipe, N_TRAIN, (16, 16, 3), "loop") is None
    siblings.stack_capacity.cache_clear()


def test_defaults_per_backend_are_pinned():
    """Changed only with measurements (BUILD_NOTES.md): CPU measured on the 2-core VM, GPU on
    an H100 (programs of 50 iterations with lax.map); TPU not yet. Issue 24's candidates (XLA
    option sets, flat updates) are no default anywhere until a device measures them faster."""
    pick = lambda d: (d.strategy, d.steps_per_call, d.xla_options, d.flat_update)  # noqa: E731
    assert pick(siblings.backend_defaults("cpu")) == ("loop", 1, "none", False)
    assert pick(siblings.backend_defaults("gpu")) == ("map", 50, "none", False)
    assert pick(siblings.backend_defaults("tpu")) == ("vmap", 1, "none", False)


def test_xla_option_sets_are_options_this_jaxlib_knows():
    """Every named set compiles on jaxlib 0.10 and later (XLA rejects an unknown option name or
    a badly typed value at compile time), on the CPU too, where GPU options are stored and
    ignored; an older jaxlib gets a ValueError naming the set and XLA's reason. A set applies
    only on the backend it is written for."""
    import jaxlib

    from jaxlottery import validation

    assert set(siblings.XLA_OPTIONS) == set(validation.XLA_OPTION_SETS)
    current = tuple(int(x) for x in jaxlib.__version__.split(".")[:2]) >= (0, 10)
    for name, per_backend in siblings.XLA_OPTIONS.items():
        for backend, options in per_backend.items():
            if current:
                assert siblings.compiler_options(name, backend) == options
            else:
                with pytest.raises(ValueError, match=f"xla_options={name}: this jaxlib"):
                    siblings.compiler_options(name, backend)
        assert siblings.compiler_options(name, "cpu") == {}
    assert siblings.unknown_options((("xla_no_such_option", "1"),)) is not None
    with pytest.raises(ValueError, match="xla_options"):
        siblings.compiler_options("fast")


def test_flat_update_is_the_leafwise_update(setup):
    """One masked step with the update on flat vectors: the same states to the last bit on jax
    0.10 (XLA may fuse the two differently: within float rounding on jax 0.6), the same pruned
    zeros exactly, the optimizer state in its per-leaf layout (checkpoints do not depend on the
    choice)."""
    d, v, keys, ms = setup
    model, mask = models.create(ARCH), stacks.index(ms, 1)
    state = train.init_state(v, RECIPE)
    perm = np.arange(N_TRAIN, dtype=np.int32)
    out = [jax.jit(lambda s, flat=flat: train.train_step(
        s, mask, keys[0], perm, d, model=model, recipe=RECIPE, batch=32, flat=flat))(state)
        for flat in (False, True)]
    assert jax.tree.structure(out[0]) == jax.tree.structure(out[1])
    for x, y in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
        np.testing.assert_array_equal(x == 0, y == 0)
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)


def test_bad_arguments_fail_before_any_compilation(setup):
    d, v, keys, ms = setup
    model = models.create(ARCH)
    with pytest.raises(ValueError, match="k must be"):
        siblings.spawn(v, 0, RECIPE)
    with pytest.raises(ValueError, match="one data key per member"):
        siblings.train(siblings.spawn(v, 3, RECIPE), keys, d, model, RECIPE, until=1)
    with pytest.raises(ValueError, match="one mask per member"):
        siblings.train(siblings.spawn(v, 2, RECIPE), keys, d, model, RECIPE, until=1,
                       ms=masks.stack([stacks.index(ms, 0)]))
    with pytest.raises(ValueError, match="strategy"):
        siblings.train(siblings.spawn(v, 2, RECIPE), keys, d, model, RECIPE, until=1,
                       strategy="pmap")
    with pytest.raises(ValueError, match="steps_per_call"):
        siblings.train(siblings.spawn(v, 2, RECIPE), keys, d, model, RECIPE, until=1,
                       steps_per_call=0)
    with pytest.raises(ValueError, match="xla_options"):
        siblings.train(siblings.spawn(v, 2, RECIPE), keys, d, model, RECIPE, until=1,
                       xla_options="fastest")
    with pytest.raises(ValueError, match="flat_update"):
        siblings.train(siblings.spawn(v, 2, RECIPE), keys, d, model, RECIPE, until=1,
                       flat_update="yes")


def test_stream_groups_cover_the_members_in_balanced_ranges():
    for k in range(1, 23):
        groups = siblings.stream_groups(k)
        assert len(groups) == min(k, siblings.STREAM_GROUPS)
        assert groups[0][0] == 0 and groups[-1][1] == k
        assert all(a[1] == b[0] for a, b in zip(groups, groups[1:]))
        sizes = [hi - lo for lo, hi in groups]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
