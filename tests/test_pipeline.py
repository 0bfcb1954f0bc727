"""The study's skeleton without training: stage order and labels, run-directory names, the seed
tree, result grouping and the estimate's arithmetic (the stages themselves: test_experiment)."""

import os

import jax
import numpy as np
import pytest

from jaxlottery import estimate, paths, pipeline, results, stages


def test_stages_run_in_the_protocols_order_with_unique_names():
    names = [s.name for s in stages.STAGES]
    assert names == ["shared", "siblings", "masks", "consistency", "replicates", "connectivity",
                     "composition", "retrain", "imp", "results"]
    assert all(callable(s.run) and s.label for s in stages.STAGES)


def test_every_run_file_has_one_relative_name():
    names = [paths.CONFIG, paths.RESULTS, paths.REPORT, paths.LOCK, paths.FAILED,
             paths.CONSISTENCY, paths.spawn_weights(0), paths.final(paths.siblings(1)),
             paths.history(paths.INDEPENDENT), paths.checkpoints(paths.retraining(0)),
             paths.sibling_masks("siblings", 1, 2), paths.sibling_masks("spawn", 1, 2),
             paths.independent_masks(0), paths.connectivity(1), paths.composition(1, "masks"),
             paths.composition(1, "meta"), paths.imp_masks(2), paths.imp_members(2),
             paths.spawn_weights("500it"), paths.final(paths.siblings("500it")),
             paths.sibling_masks("siblings", "500it", 2), paths.connectivity("500it"),
             os.path.join(paths.replicate(1), paths.spawn_weights(0)),
             paths.chunk(paths.retraining(1), 3, ".json"), paths.plan(paths.imp_level(1)),
             *paths.FIGURES.values(), *paths.EXTRA_FIGURES.values(),
             *map(paths.csv, paths.TABLES)]
    assert len(set(names)) == len(names)
    assert not any(os.path.isabs(n) for n in names)


def test_the_seed_tree_folds_names_in_order():
    ctx = pipeline.Context(None, "run", *[None] * 4, jax.random.key(3), False, print)
    want = jax.random.fold_in(jax.random.fold_in(jax.random.key(3), pipeline.SIBLING_DATA), 5)
    np.testing.assert_array_equal(jax.random.key_data(ctx.key(pipeline.SIBLING_DATA, 5)),
                                  jax.random.key_data(want))
    assert len({pipeline.INIT, pipeline.SHARED_DATA, pipeline.SIBLING_DATA, pipeline.INDEPENDENT,
                pipeline.RETRAIN_DATA, pipeline.RANDOM_MASKS, pipeline.SUBSET, pipeline.REINIT,
                pipeline.IMP_DATA, pipeline.SIBLING_DATA_AT_ITERATION, pipeline.REPLICATE}) == 11
    fold = lambda k, *names: k if not names else fold(jax.random.fold_in(k, names[0]), *names[1:])  # noqa: E731
    same = lambda a, b: np.array_equal(jax.random.key_data(a), jax.random.key_data(b))  # noqa: E731
    # a spawn point in iterations has its own branch; initialization j its own root
    assert same(ctx.sibling_key("500it", 2),
                fold(jax.random.key(3), pipeline.SIBLING_DATA_AT_ITERATION, 500, 2))
    assert ctx.replicate(0) is ctx
    second = ctx.replicate(1)
    assert second.init == 1 and second.rundir == os.path.join("run", "inits", "1")
    assert same(second.key(pipeline.INIT), fold(jax.random.key(3), pipeline.REPLICATE, 1,
                                                pipeline.INIT))


def test_results_group_runs_with_mean_spread_and_count():
    entries = [{"method": "union", "k": 2, "test_accuracy": a, "achieved_density": d,
                "spawn_epoch": 1} for a, d in ((0.8, 0.2), (0.9, 0.22))]
    entries.append({"method": "union", "k": 3, "test_accuracy": 0.5, "achieved_density": 0.2,
                    "spawn_epoch": 1})
    rows = results._grouped(entries, ("method", "k"))
    two = next(r for r in rows if r["k"] == 2)
    assert two["runs"] == 2 and two["test_accuracy_mean"] == pytest.approx(0.85)
    assert two["test_accuracy_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert two["test_accuracy_stderr"] == pytest.approx(two["test_accuracy_std"] / np.sqrt(2))
    assert two["achieved_density"] == pytest.approx(0.21) and two["spawn_epoch"] == 1
    one = next(r for r in rows if r["k"] == 3)
    assert [r["runs"] for r in rows] == [2, 1]
    assert one["test_accuracy_std"] is None and one["test_accuracy_stderr"] is None


@pytest.mark.parametrize("seconds,text", [(40, "40 s"), (720, "12 min"), (3.5 * 3600, "3.5 h"),
                                          (9 * 86400, "9 days")])
def test_durations_read_naturally(seconds, text):
    assert estimate.duration(seconds) == text
