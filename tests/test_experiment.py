"""The study end to end on the smoke preset: every stage's outputs and caching (kill and
resume: tests/test_reliability.py)."""

import dataclasses
import os

import jax
import numpy as np
import pytest

import jaxlottery

from jaxlottery import (checkpoint, composability, config, experiment, masks, models, paths,
                        reading, siblings, train)

from conftest import SMOKE, comparable


@pytest.mark.slow
def test_smoke_run_writes_every_stage(smoke):
    workdir, rundir, results, out = smoke
    for key in ("config", "dense", "consistency", "composition", "timing", "environment"):
        assert key in results
    assert results["dataset"]["synthetic"] and results["config"]["k"] == 3
    files = set(os.listdir(rundir))
    assert {"config.json", "results.json", "report.md", "dense.csv", "consistency.csv",
            "composition.csv", "consistency_layers.csv", "overlap_vs_spawn.png",
            "accuracy_vs_density.png", "layer_overlap.png"} <= files
    for png in ("overlap_vs_spawn.png", "accuracy_vs_density.png", "layer_overlap.png"):
        with open(os.path.join(rundir, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.exists(os.path.join(rundir, "shared", "spawn_e0.npz"))
    assert os.path.exists(os.path.join(rundir, "shared", "spawn_e1.npz"))
    for t in (0, 1):
        assert os.path.exists(os.path.join(rundir, "siblings", f"e{t}", "final.npz"))
    # 2 spawn points x 2 densities, every pair of 3 siblings.
    rows = results["consistency"]
    assert len(rows) == 4 and all(r["pairs"] == 3 for r in rows)
    for r in rows:
        assert 0 <= r["iou_mean"] <= 1 and r["chance_iou"] < r["layer_matched_chance_iou"] + 1e-6
        assert r["iou_independent_inits"] is not None
    methods = {(r["method"], r["k"]) for r in results["composition"]}
    assert methods == {("union", 2), ("intersection", 2), ("union", 3), ("intersection", 3),
                       ("vote", 3), ("baseline", 1), ("dense", 1)}
    # retrain_seeds=2: every mask on 2 orders; 2 one-shot masks and 2 positive controls (k = 3
    # has room for one group of k' = 2 or 3 siblings per method)
    for r in results["composition"] + results["random_baselines"]:
        masks_ = 2 if r["method"] in ("baseline", "random_matched") else 1
        assert r["runs"] == 2 * masks_ and r["test_accuracy_stderr"] is not None, r
    assert {e["seed"] for e in results["retrained_masks"]} == {0, 1}
    for d in composability.composition_deltas(results):
        assert d["orders"] == 2 and d["ci_low"] <= d["delta_points"] <= d["ci_high"]
        # replicate masks give the noise; on smoke data they may all score alike (then the
        # dense siblings stand in, and the reading says it is a lower bound)
        assert d["noise"].startswith(("spread of mask means", "replicate masks all scored alike"))
        assert d["iou"] is not None
        assert d["control"] in ("detected", "not detected")
    # results.json records every verdict with its difference, interval and noise source
    assert results["differences"] == reading.differences(results)
    assert {d["reference"] for d in results["differences"]} == {"baseline", "intersection",
                                                                 "dense", "imp"}
    assert all({"delta_points", "ci_low", "ci_high", "verdict", "noise"} <= set(d)
               for d in results["differences"])
    assert (results["readings"]["Claim 2 (composability)"]
            == reading.composition.composition_verdict(results))
    for r in results["composition"]:
        assert abs(r["achieved_density"] - r["target_density"]) <= 0.001
        assert 0 <= r["test_accuracy_mean"] <= 1
    dense = [r for r in results["dense"] if r["spawn_epoch"] is not None]
    assert len(dense) == 2 and all(len(r["test_accuracy"]) == 3 for r in dense)
    report = open(os.path.join(rundir, "report.md")).read()
    assert report.count("**Verdict:**") == 2 and "synthetic" in report
    for section in ("## Linear mode connectivity", "## Random and re-initialized baselines",
                    "## Iterative magnitude pruning"):
        assert section in report
    for png in ("connectivity.png", "baselines.png", "imp.png"):
        assert png in files and f"]({png})" in report
    assert "Claim 1 (consistency)" in out and "report.md" in out
    # kappa beside IoU; the imprint of this 3-epoch schedule says it cannot test claim 1
    for r in rows:
        assert -1 <= r["kappa_mean"] <= 1 and r["kappa_independent_inits"] is not None
        assert 0 <= r["pruned_iou_mean"] <= 1 and -1 <= r["kappa_with_spawn_mask"] <= 1
    assert results["imprint"]["retained"] > 0.99 and not results["imprint"]["can_test_claim_1"]
    assert "cannot test claim 1" in results["readings"]["Claim 1 (consistency)"]
    assert "imprint: the final weights keep 1.00" in out
    # the trajectory: snapshots at epochs 1..3 (auto), siblings and control, every density; the
    # last snapshot is the consistency stage's end point, made by the same code
    traj = results["trajectory"]
    assert {(r["spawn_epoch"], r["epoch"]) for r in traj if r["control"] is None} == \
        {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)}
    assert {r["epoch"] for r in traj if r["control"] == "independent_inits"} == {1, 2, 3}
    for r in rows:
        end = next(x for x in traj if x["control"] is None and x["epoch"] == 3
                   and x["spawn_epoch"] == r["spawn_epoch"] and x["density"] == r["density"])
        for key in ("kappa_mean", "iou_mean", "pruned_iou_mean", "kappa_with_spawn_mask"):
            assert end[key] == pytest.approx(r[key], abs=1e-6), key
    assert {r["lr"] for r in traj if r["epoch"] == 3} == {0.1 * 0.1}  # after the drop at 2
    n_layers = len({r["layer"] for r in results["consistency_layers"]})
    assert len(results["trajectory_layers"]) == len(traj) * n_layers
    assert {"trajectory.png", "trajectory.csv", "trajectory_layers.csv"} <= files
    assert "## Overlap through training" in report and "](trajectory.png)" in report


@pytest.mark.slow
def test_second_run_skips_every_stage(smoke, monkeypatch):
    workdir, rundir, results, _ = smoke
    assert experiment.run(SMOKE, workdir=str(workdir), progress=False) == results
    # Without results.json the stages' own outputs are reused: nothing trains again.
    os.rename(os.path.join(rundir, "results.json"), os.path.join(rundir, "results.keep"))

    def no_training(*a, **k):
        raise AssertionError("a cached stage trained again")

    monkeypatch.setattr(siblings, "train", no_training)
    try:
        again = experiment.run(SMOKE, workdir=str(workdir), progress=False)
    finally:
        os.replace(os.path.join(rundir, "results.keep"), os.path.join(rundir, "results.json"))
    assert comparable(again) == comparable(results)


# --- beyond the paper: IMP, connectivity, baselines -------------------------------------------

def _mask_count(m):
    return int(masks.count(m)[0])


@pytest.mark.slow
def test_imp_levels_keep_the_schedule_exactly_and_only_shrink(smoke):
    _, rundir, results, _ = smoke
    previous = {}
    for level in (1, 2):
        members = checkpoint.read_json(os.path.join(rundir, paths.imp_members(level)))
        stack = masks.unstack(masks.load(os.path.join(rundir, paths.imp_masks(level))))
        chains = {m["chain"] for m in members}
        assert chains == ({"imp", "union", "intersection"} | ({"oneshot"} if level > 1 else set()))
        for m, mask in zip(members, stack):
            n = masks.count(mask)[1]
            assert _mask_count(mask) == int(np.floor(0.8**level * n + 0.5)), m
            if m["chain"] in previous:  # an IMP chain only ever prunes further
                assert all(np.all(a <= b) for a, b in zip(jax.tree.leaves(mask),
                                                          jax.tree.leaves(previous[m["chain"]])))
        previous = {m["chain"]: mask for m, mask in zip(members, stack) if m["chain"] != "oneshot"}
    rows = {(r["chain"], r["level"]): r for r in results["imp"]}
    assert rows["oneshot", 1]["test_accuracy_mean"] == rows["imp", 1]["test_accuracy_mean"]
    assert rows["union", 2]["runs"] == 2 and rows["imp", 2]["runs"] == 1
    assert rows["imp", 2]["test_accuracy_stderr"] is None
    assert {r["level"] for r in results["imp"]} == {0, 1, 2}


@pytest.mark.slow
def test_connectivity_end_points_are_the_siblings_own_accuracy(smoke):
    _, rundir, results, _ = smoke
    rows = results["connectivity"]
    assert {(r["spawn_epoch"], r["bn"]) for r in rows} == {(t, bn) for t in (0, 1)
                                                           for bn in ("interpolate", "recompute")}
    dense = {r["spawn_epoch"]: r["test_accuracy"] for r in results["dense"] if r["spawn_epoch"] is not None}
    for r in rows:
        assert len(r["alphas"]) == len(r["errors"]) == 5 and r["pair"] == [0, 1]
        assert r["barrier"] == pytest.approx(max(r["errors"]) - np.mean(r["end_errors"]))
        if r["bn"] == "interpolate":  # alpha 0 and 1 are the siblings themselves, exactly
            assert r["errors"][0] == 1 - dense[r["spawn_epoch"]][0]
            assert r["errors"][-1] == 1 - dense[r["spawn_epoch"]][1]


@pytest.mark.slow
def test_random_baselines_have_the_requested_densities(smoke):
    _, rundir, results, _ = smoke
    entries = checkpoint.read_json(os.path.join(rundir, paths.composition(1, "meta")))
    stack = masks.unstack(masks.load(os.path.join(rundir, paths.composition(1, "masks"))))
    by = {(e["method"], e["k"]): m for e, m in zip(entries, stack) if e.get("replicate", 0) == 0}
    # one positive control per one-shot mask, each layer-matched to its own one-shot mask
    second = {e["method"]: m for e, m in zip(entries, stack)
              if e.get("replicate") == 1 and e["method"] in ("baseline", "random_matched")}
    assert _layer_counts(second["random_matched"]) == _layer_counts(second["baseline"])
    baseline = by["baseline", 1]
    n = masks.count(baseline)[1]
    assert _mask_count(by["random", 1]) == _mask_count(baseline) == int(np.floor(0.2 * n + 0.5))
    # Layer-matched: exactly the one-shot mask's count in every layer, but other weights.
    assert _layer_counts(by["random_matched", 1]) == _layer_counts(baseline)
    assert _layer_counts(by["random", 1]) != _layer_counts(baseline)
    assert float(masks.iou(by["random_matched", 1], baseline)) < 0.9
    # Re-initialized baselines retrain the very masks of their rewound counterparts.
    for e, m in zip(entries, stack):
        if e["reinit"]:
            twin = e["method"].removesuffix("_reinit")
            assert float(masks.iou(m, by[twin, e["k"]])) == 1.0
    methods = {r["method"] for r in results["random_baselines"]}
    assert methods == {"random", "random_matched", "baseline_reinit", "union_reinit",
                       "intersection_reinit", "vote_reinit"}
    assert all(r["reinit"] == r["method"].endswith("_reinit") for r in results["random_baselines"])


def _layer_counts(m):
    return {masks.path_str(p): int(np.sum(x)) for p, x in jax.tree_util.tree_flatten_with_path(m)[0]}


def test_retraining_pairs_data_orders_across_masks(tmp_path, monkeypatch):
    """Seed r of every mask, the dense control included, trains on one data order; the orders
    of different seeds differ; rows carry their seed."""
    from jaxlottery import config, pipeline, retraining, stacks

    params = {"conv": {"kernel": np.ones((3, 3, 2, 2), np.float32)}}
    two = stacks.stack([masks.magnitude_prune(params, 0.5), masks.ones_like(params)])
    masks.save(str(tmp_path / "m.npz"), two)
    entries = [{"method": m, "k": k, "reinit": False, "target_density": 0.5,
                "achieved_density": 0.5, "sibling_density": 0.5}
               for m, k in (("union", 2), ("baseline", 1))]
    seen = {}

    def train_masks(ctx, folder, t, spawn_vars, stack, keys, *a, **kw):
        seen["keys"] = [tuple(np.asarray(jax.random.key_data(k)).ravel()) for k in keys]
        seen["dense"] = [bool(all(np.all(x) for x in jax.tree.leaves(m)))
                         for m in stacks.unstack(stack)]
        return {"test_accuracy": [0.5 + i / 100 for i in range(len(keys))]}

    monkeypatch.setattr(retraining, "train_masks", train_masks)
    ctx = pipeline.Context(config.preset("smoke", retrain_seeds=3), str(tmp_path), None, None,
                           None, None, jax.random.key(0), False, print)
    out = {"shared": {1: {"params": params}},
           "composition": {1: {"entries": entries, "masks": str(tmp_path / "m.npz")}}}
    rows = retraining.retrain(ctx, out)[1]
    keys = seen["keys"]
    assert len(keys) == len(rows) == 9  # (2 masks + the dense control) x 3 orders
    assert [(r["method"], r["seed"]) for r in rows[:3]] == [("union", 0), ("baseline", 0),
                                                            ("dense", 0)]
    assert [r["seed"] for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for r in range(3):
        assert keys[3 * r] == keys[3 * r + 1] == keys[3 * r + 2]  # one order per seed
    assert len({keys[0], keys[3], keys[6]}) == 3  # a new order per seed
    assert seen["dense"] == [False, True, True] * 3  # the control is unpruned
    assert [r["test_accuracy"] for r in rows] == [0.5 + i / 100 for i in range(9)]


def test_retraining_chunks_are_planned_once_and_kept(tmp_path, monkeypatch):
    """Stacks of retrained masks: k on CPU, what the device holds on a GPU/TPU (balanced), and
    fixed in plan.json, so a run resumed on another device keeps its chunk files valid."""
    import types

    from jaxlottery import config, models, pipeline, retraining
    from jaxlottery.train import Recipe

    logs = []

    def ctx(**cfg):
        return types.SimpleNamespace(
            config=config.preset("smoke", k=10, **cfg), log=logs.append, mesh=None,
            model=models.create("cifar_resnet_8_4"), recipe=Recipe(batch_size=64),
            dataset=types.SimpleNamespace(x_train=np.zeros((256, 8, 8, 3)), image_shape=(8, 8, 3)),
            path=lambda rel: pipeline.Context.path(types.SimpleNamespace(rundir=str(tmp_path)), rel))

    assert retraining.plan_chunk(ctx(), "a", 56) == 10  # CPU: no memory figure, k
    assert checkpoint.read_json(str(tmp_path / "a" / "plan.json")) == {"members": 56, "chunk": 10}
    monkeypatch.setattr(siblings, "stack_capacity", lambda *a, **kw: 40)  # "a GPU with room for 40"
    assert retraining.plan_chunk(ctx(), "a", 56) == 10  # the plan is kept
    assert retraining.plan_chunk(ctx(), "b", 56) == 28  # a new folder: 2 x 28, not 40 + 16
    assert retraining.plan_chunk(ctx(retrain_chunk=7), "c", 56) == 7  # asked for
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "chunk0.json").write_text("{}")  # started by a version without plans
    assert retraining.plan_chunk(ctx(), "old", 56) == 10
    (tmp_path / "b" / "plan.json").write_text('{"members": 12, "chunk": 28}')  # another stack
    with pytest.raises(pipeline.ConfigMismatch, match="laid out for 12 networks.*trains 56"):
        retraining.plan_chunk(ctx(), "b", 56)  # its chunk files hold other networks
    (tmp_path / "b" / "plan.json").write_text("null")  # parses, but is no plan
    logs.clear()
    assert retraining.plan_chunk(ctx(), "b", 56) == 28 and "plan.json is unreadable" in logs[0]


@pytest.mark.slow
def test_a_registered_composition_reaches_results_verdict_csv_and_figure(tmp_path, monkeypatch):
    """One new entry in masks.COMPOSITIONS, and nothing else changed: the pipeline composes and
    retrains it, and the verdict, the CSV table and the accuracy figure show it."""
    import csv

    from jaxlottery import config, report

    monkeypatch.setitem(masks.COMPOSITIONS, "two", masks.Composition(
        "two", lambda k: 2, min_k=2, label="kept in 2+", color="tab:purple", marker="P"))
    cfg = config.preset("smoke", compose=("union", "two"), k=3, k_values=(2, 3), epochs=2,
                        lr_drop_epochs=(1,), spawn_epochs=(0,), retrain_spawn_epochs=(0,),
                        densities=(0.3,), retrain_densities=(0.3,), baseline_siblings=1,
                        independent_inits=0, lmc_pairs=0, imp_levels=0, random_baselines=())
    results = experiment.run(cfg, workdir=str(tmp_path), progress=False, log=lambda _: None)
    rows = [r for r in results["composition"] if r["method"] == "two"]
    assert [r["k"] for r in rows] == [2, 3]  # at every k' from its min_k
    assert all(abs(r["achieved_density"] - 0.3) < 0.01 for r in rows)
    assert "two minus one-shot pruning:" in reading.composition.composition_verdict(results)
    rundir = tmp_path / cfg.run_id()
    with open(rundir / "composition.csv") as f:
        assert {"two", "union", "baseline"} <= {r["method"] for r in csv.DictReader(f)}
    legends = report.write(str(tmp_path), results)
    assert "kept in 2+" in legends["accuracy_vs_density.png"]


@pytest.mark.slow
def test_inits_and_spawn_points_in_iterations(tmp_path):
    """--inits=2 repeats the consistency design from a second initialization (a distinct W_0,
    its own rows, a spread over inits); a spawn point of 2 iterations (mid-epoch: 4 per epoch)
    spawns from the shared network trained exactly 2 iterations."""
    from jaxlottery import config, data, models, paths, pipeline, stacks, train

    cfg = config.preset("smoke", spawn_epochs=(0,), spawn_iterations=(2,), inits=2, k=2,
                        k_values=(2,), baseline_siblings=1, independent_inits=0,
                        densities=(0.5, 0.2), retrain_spawn_epochs=(), imp_levels=0,
                        random_baselines=(), lmc_pairs=0)
    results = experiment.run(cfg, workdir=str(tmp_path), progress=False, log=lambda _: None)
    rundir = tmp_path / cfg.run_id()
    assert {(r["init"], r["spawn_epoch"], r["spawn_iteration"]) for r in results["consistency"]} == \
        {(i, t, s) for i in (0, 1) for t, s in ((0, 0), (0.5, 2))}
    like = models.init(jax.random.key(0), "cifar_resnet_8_4")
    w0 = checkpoint.load_arrays(str(rundir / paths.spawn_weights(0)), like, as_numpy=True)
    w0b = checkpoint.load_arrays(str(rundir / "inits" / "1" / paths.spawn_weights(0)), like,
                                 as_numpy=True)
    assert not np.array_equal(w0["params"]["stem_conv"]["kernel"], w0b["params"]["stem_conv"]["kernel"])
    over = results["consistency_over_inits"]
    assert len(over) == 4 and all(r["inits"] == 2 for r in over)
    for r in over:
        assert r["kappa_ci_low"] <= r["kappa_mean"] <= r["kappa_ci_high"]
    assert {r["init"] for r in results["trajectory"]} == {0, 1}
    assert {r["init"] for r in results["dense"]} == {0, 1}
    report = (rundir / "report.md").read_text()
    assert "Over 2 initializations" in report and "95% interval over 2 inits" in report
    assert results["composition"] == [] and "Not run: no spawn point was retrained" in report
    run = jaxlottery.load_run(rundir)  # every init and spawn point reads back by name
    np.testing.assert_array_equal(run.spawn(0, init=1)["params"]["stem_conv"]["kernel"],
                                  w0b["params"]["stem_conv"]["kernel"])
    assert run.siblings("2it", init=1)["params"]["dense"]["kernel"].shape[0] == cfg.k
    assert run.masks("2it", 0.2, init=1)["dense"]["kernel"].shape[0] == cfg.k
    with pytest.raises(ValueError, match="init must be in 0..1"):
        run.siblings(0, init=2)
    with pytest.raises(ValueError, match=r"iterations \[2\] \(named '<s>it'\), not '3it'"):
        run.siblings("3it")
    # W at 2 iterations: the shared network (its init and data key) after exactly 2 iterations
    ds = experiment.load_dataset(cfg)
    root = jax.random.key(cfg.seed)
    init = models.init(jax.random.fold_in(root, pipeline.INIT), "cifar_resnet_8_4", 10, (32, 32, 3))
    recipe = train.Recipe.from_config(cfg)
    states, _ = siblings.train(siblings.spawn(init, 1, recipe),
                               jax.random.fold_in(root, pipeline.SHARED_DATA)[None],
                               data.to_device(ds), models.create("cifar_resnet_8_4", 10), recipe,
                               until=2, evaluate=False)
    on_disk = checkpoint.load_arrays(str(rundir / paths.spawn_weights("2it")), like, as_numpy=True)
    for a, b in zip(jax.tree.leaves(on_disk), jax.tree.leaves(train.variables(stacks.index(states, 0)))):
        np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.slow
def test_natural_density_retrains_composed_masks_at_their_own_density(tmp_path):
    """--natural_density: union of the siblings' one-shot masks lands denser than the target,
    intersection sparser; each is retrained beside one-shot masks and controls at exactly its
    density, judged in its own family, drawn on the accuracy figure and kept out of the
    matched-density verdicts."""
    import csv

    from jaxlottery import config, report

    cfg = config.preset("smoke", natural_density=True, compose=("union", "intersection"), k=4,
                        k_values=(2,), epochs=2, lr_drop_epochs=(1,), spawn_epochs=(0,),
                        retrain_spawn_epochs=(0,), densities=(0.3,), retrain_densities=(0.3,),
                        independent_inits=0, lmc_pairs=0, imp_levels=0, random_baselines=())
    results = experiment.run(cfg, workdir=str(tmp_path), progress=False, log=lambda _: None)
    natural = [e for e in results["retrained_masks"] if e.get("natural")]
    # per method: 2 composed masks, 2 one-shot masks, 2 controls; 2 orders each
    assert len(natural) == cfg.natural_masks_per_density() * cfg.retrain_seeds == 2 * 6 * 2
    cells = {}
    for e in natural:
        cells.setdefault(tuple(e["natural_of"]), []).append(e)
        assert e["sibling_density"] == 0.3
    union, inter = cells["union", 2], cells["intersection", 2]
    assert min(e["target_density"] for e in union) > 0.3 > max(e["target_density"] for e in inter)
    for how, cell in (("union", union), ("intersection", inter)):
        (d,) = {e["target_density"] for e in cell}  # one density per cell: the composed masks'
        composed = [e for e in cell if e["method"] == how]
        refs = [e for e in cell if e["method"] != how]
        assert {e["method"] for e in refs} == {"baseline", "random_matched"}
        assert d == pytest.approx(np.mean([e["achieved_density"] for e in composed]))
        assert all(abs(e["achieved_density"] - d) < 1e-3 for e in refs)
    # the matched-density design is unchanged by the natural cells
    assert all(not r.get("natural_of") for r in results["composition"])
    rows = composability.natural_comparisons(results)
    judged = [r for r in rows if r["section"] == "composition" and r["reference"] == "baseline"]
    assert {(r["method"], r["from_density"]) for r in judged} == {("union", 0.3),
                                                                  ("intersection", 0.3)}
    assert all(r["comparisons"] == 2 for r in judged)  # Holm over the natural cells only
    assert all(r["density"] not in {c["density"] for c in composability.comparisons(results)}
               for r in rows)
    assert "keeps" in results["readings"]["Natural density"]
    assert {"natural_composition", "natural_random_baselines"} <= {
        d["section"] for d in results["differences"]}
    rundir = tmp_path / cfg.run_id()
    with open(rundir / "natural_density.csv") as f:
        assert {"union", "intersection", "baseline"} <= {r["method"] for r in csv.DictReader(f)}
    legends = report.write(str(rundir), results)
    assert {"union, natural density", "one-shot at a natural density"} <= set(
        legends["accuracy_vs_density.png"])
    assert "at their natural density" in (rundir / "report.md").read_text()


def test_a_stack_the_device_cannot_hold_is_refused_before_training(monkeypatch):
    """On a device that reports its memory (GPU, TPU), the largest stack is checked against the
    memory free; on the CPU backend against the host's available memory; refused with the
    estimate and what to change."""
    import jax

    from jaxlottery import data, experiment, hardware, siblings
    from jaxlottery.config import ConfigError

    cfg = config.preset("smoke")
    dataset = data.synthetic(num_train=256, num_test=128)
    experiment.check_memory(cfg, dataset)  # this host holds the smoke run
    monkeypatch.setattr(hardware, "host_available_bytes", lambda: 10_000_000)
    with pytest.raises(ConfigError, match=r"--k: a stack of 3 networks .* on this host's memory "
                                          r"\(the CPU backend\) .* 10.0 MB are free; lower --k"):
        experiment.check_memory(cfg, dataset)
    monkeypatch.setattr(hardware, "host_available_bytes", lambda: None)
    experiment.check_memory(cfg, dataset)  # an OS that does not say: nothing to check
    per_member = siblings.member_bytes(
        models.create(cfg.model), train.Recipe.from_config(cfg), 256,
        (32, 32, 3))

    class Device:
        device_kind = "a small GPU"

        def __init__(self, limit):
            self.limit = limit

        def memory_stats(self):
            return {"bytes_limit": self.limit, "bytes_in_use": 0}

    monkeypatch.setattr(jax, "devices", lambda *a: [Device(100 * per_member)])
    experiment.check_memory(cfg, dataset)  # k = 3 fits easily
    monkeypatch.setattr(jax, "devices", lambda *a: [Device(2 * per_member)])
    vmap = dataclasses.replace(cfg, strategy="vmap")
    with pytest.raises(ConfigError, match=r"--k: a stack of 3 networks .* needs about .* MB on a "
                                          r"small GPU .*\(--strategy=map\)"):
        experiment.check_memory(vmap, dataset)
    experiment.check_memory(dataset=dataset, config=dataclasses.replace(cfg, strategy="map"))


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["movement", "snip", "random"])
def test_a_criterion_ranks_every_mask_of_the_study(tmp_path, criterion):
    """`--criterion` reaches the siblings' masks (checked by hand for movement: |w_T - W_t|),
    their snapshots, the composed masks (a rank rule, the accuracy-weighted vote, among them)
    and IMP (which never brings a pruned weight back); the run has its own id and its report
    names the criterion; random masks agree at chance."""
    from jaxlottery import config, criteria, stacks

    base = dict(k=3, k_values=(3,), compose=("union", "weighted_vote"), epochs=2,
                lr_drop_epochs=(1,), spawn_epochs=(0,),
                retrain_spawn_epochs=(0,), densities=(0.3,), retrain_densities=(0.3,),
                baseline_siblings=1, independent_inits=2, lmc_pairs=0, imp_levels=2,
                random_baselines=(), snapshot_epochs=(1,))
    cfg = config.preset("smoke", criterion=criterion, **base)
    assert cfg.run_id() != config.preset("smoke", **base).run_id()
    results = experiment.run(cfg, workdir=str(tmp_path), progress=False, log=lambda _: None)
    rundir = tmp_path / cfg.run_id()
    final = checkpoint.load_arrays(str(rundir / paths.final(paths.siblings(0))))["params"]
    w0 = checkpoint.load_arrays(str(rundir / paths.spawn_weights(0)))["params"]
    saved = masks.load(str(rundir / paths.sibling_masks("siblings", 0, 0)))
    assert (np.asarray(masks.count(saved, stacked=True)[0])
            == round(0.3 * masks.count(masks.ones_like(w0))[0])).all()
    if criterion == "movement":
        by_hand = masks.magnitude_prune(
            criteria.scores("movement", criteria.Evidence(final, start=w0)), 0.3, stacked=True)
        for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(by_hand)):
            np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(saved), jax.tree.leaves(masks.magnitude_prune(final, 0.3, stacked=True))))
    row = results["consistency"][0]
    assert row["kappa_independent_inits"] is not None
    if criterion == "random":
        assert abs(row["kappa_mean"]) < 0.1  # random masks agree at chance
    levels = [(masks.load(str(rundir / paths.imp_masks(level))),
               checkpoint.read_json(str(rundir / paths.imp_members(level)))) for level in (1, 2)]
    first = {m["chain"]: i for i, m in enumerate(levels[0][1])}
    chains = [(i, m["chain"]) for i, m in enumerate(levels[1][1]) if m["chain"] != "oneshot"]
    assert {c for _, c in chains} == {"imp", "union", "intersection"}
    for i, chain in chains:
        for before, after in zip(jax.tree.leaves(stacks.index(levels[0][0], first[chain])),
                                 jax.tree.leaves(stacks.index(levels[1][0], i))):
            assert not np.any(np.asarray(after) & ~np.asarray(before))  # nothing comes back
    assert f"the **{criterion}** criterion" in (rundir / "report.md").read_text()
    weighted = [r for r in results["composition"] if r["method"] == "weighted_vote"]
    assert weighted and abs(weighted[0]["achieved_density"] - 0.3) < 0.01  # a rank rule too
    history = checkpoint.read_json(str(rundir / paths.history(paths.siblings(0))))
    assert history[0]["snapshot"]  # the snapshot at epoch 1 ranked by the criterion too
