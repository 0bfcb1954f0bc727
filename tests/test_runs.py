"""`jaxlottery.load_run`: a run directory back in Python, in today's layout and an older one."""

import json
import os

import jax
import numpy as np
import pytest

import jaxlottery
from jaxlottery import checkpoint, config, masks, models, paths, stacks

CFG = config.Config(model="cifar_resnet_8_4", k=2, spawn_epochs=(0,), densities=(0.5, 0.25),
                    k_values=(2,), retrain_spawn_epochs=(0,), retrain_densities=(0.25,),
                    baseline_siblings=1, epochs=2, lr_drop_epochs=(1,), independent_inits=0,
                    lmc_pairs=0)


def _variables(seed, classes=3, channels=1):
    return models.init(jax.random.key(seed), "cifar_resnet_8_4", classes,
                       image_shape=(8, 8, channels))


def _run_dir(tmp_path, old_layout: bool):
    """A run directory as the stages write it, up to the masks, in either weights layout."""
    rundir = tmp_path / CFG.run_id()
    os.makedirs(rundir / "shared")
    checkpoint.write_json(str(rundir / paths.CONFIG), {"config": CFG.to_dict(),
                                                       "run_id": CFG.run_id()})
    spawn = _variables(0)
    sibs = stacks.stack([_variables(1), _variables(2)])

    def save(relative, tree):
        path = str(rundir / relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if old_layout:  # what versions before load_run wrote: positional arrays
            np.savez(path, *[np.asarray(x) for x in jax.tree.leaves(tree)])
        else:
            checkpoint.save_arrays(path, tree)

    save(paths.spawn_weights(0), spawn)
    save(paths.final(paths.siblings(0)), sibs)
    ms = masks.magnitude_prune(sibs["params"], 0.25, stacked=True)
    os.makedirs(rundir / "masks")
    masks.save(str(rundir / paths.sibling_masks("siblings", 0, 1)), ms)
    return rundir, spawn, sibs, ms


@pytest.mark.parametrize("old_layout", [False, True], ids=["path keys", "older positional"])
def test_weights_and_masks_come_back_as_parameter_pytrees(tmp_path, old_layout):
    rundir, spawn, sibs, ms = _run_dir(tmp_path, old_layout)
    run = jaxlottery.load_run(rundir)
    assert run.config == CFG and not run.finished and run.results is None
    for got, want in ((run.spawn(0), spawn), (run.siblings(0), sibs)):
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    back = run.masks(0, 0.25)
    assert float(masks.iou(stacks.index(back, 1), stacks.index(ms, 1))) == 1.0
    # The model of the run (3 classes, read off the mask file: no results.json yet) applies.
    logits = run.model.apply(stacks.index(run.siblings(0), 0), np.zeros((2, 8, 8, 1), np.float32),
                             train=False)
    assert logits.shape == (2, 3)


def test_questions_the_run_cannot_answer_say_why(tmp_path):
    rundir, *_ = _run_dir(tmp_path, old_layout=False)
    run = jaxlottery.load_run(rundir / paths.CONFIG)  # a file of the run directory works too
    with pytest.raises(ValueError, match=r"spawned siblings at epochs \[0\], not 3"):
        run.siblings(3)
    with pytest.raises(ValueError, match="pruned at densities 0.5, 0.25, not 0.1"):
        run.masks(0, 0.1)
    with pytest.raises(FileNotFoundError, match="not written yet"):
        run.masks(0, 0.5)
    with pytest.raises(FileNotFoundError, match="not written yet"):
        run.independent()
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        jaxlottery.load_run(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / paths.CONFIG).write_text(json.dumps({"config": {"no_such_field": 1}}))
    with pytest.raises(ValueError, match="settings this version does not know"):
        jaxlottery.load_run(tmp_path / "x")


def test_arrays_files_are_keyed_by_leaf_path(tmp_path):
    tree = {"params": {"conv": {"kernel": np.ones((2, 2))}}, "batch_stats": {"bn": {"mean": np.zeros(3)}}}
    checkpoint.save_arrays(str(tmp_path / "w.npz"), tree)
    with np.load(tmp_path / "w.npz") as f:
        assert sorted(f.files) == ["batch_stats/bn/mean", "params/conv/kernel"]
    back = checkpoint.load_arrays(str(tmp_path / "w.npz"))
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    other = {"params": {"conv": {"weight": np.ones((2, 2))}}, "batch_stats": {"bn": {"mean": 0}}}
    with pytest.raises(ValueError, match="no array for 'params/conv/weight'"):
        checkpoint.load_arrays(str(tmp_path / "w.npz"), other)


@pytest.mark.slow
def test_load_run_reads_a_finished_smoke_run(smoke):
    _, rundir, results, _ = smoke
    run = jaxlottery.load_run(rundir)
    assert run.finished and run.results["run_id"] == results["run_id"] == run.config.run_id()
    t = run.config.spawn_epochs[-1]
    w = run.siblings(t)
    assert stacks.size(w) == run.config.k
    images = np.zeros((1, *results["dataset"]["image_shape"]), np.float32)
    assert run.model.apply(stacks.index(w, 0), images, train=False).shape == \
        (1, results["dataset"]["num_classes"])
    m = run.masks(t, run.config.densities[0])
    assert masks.stack_size(m) == run.config.k
    composed, meta = run.composed(run.config.retrain_spawn_epochs[0])
    assert masks.stack_size(composed) == len(meta) and {"method", "k"} <= set(meta[0])
