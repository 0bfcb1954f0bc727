"""The benchmarks run and report what they promise (at tiny sizes, on CPU)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ENV, REPO


@pytest.mark.slow
def test_accelerator_benchmark_quick_mode(tmp_path):
    """The one-call device benchmark at tiny sizes: every section, the table and the projection."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "accelerator.py"),
                           "--quick", f"--out={tmp_path}", "--budget=240", "--ks=2"], env=ENV,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "accelerator.json").read_text())
    assert res["environment"]["backend"] == "cpu" and res["environment"]["versions"]["jax"]
    ways = {(r["mode"], r["strategy"], r["k"]) for r in res["training"] if "images_per_s" in r}
    # Every way of training the stack (one stack size: the later ones' choice of ways is
    # the ranking call's, tested below).
    assert {("step", "vmap", 2), ("step", "loop", 2), ("step", "separate", 2),
            ("program", "vmap", 2), ("program", "loop", 2), ("program", "map", 2)} <= ways
    for r in res["training"]:
        assert r["images_per_s"] > 0 and r["compile_s"] >= 0 and r["tflops"] > 0
    assert res["flops_per_image"] > 0 and res["matmul_tflops"] > 0
    assert {r["batches_on_device"] for r in res["evaluation"]} == {False, True}
    assert res["checkpoint"]["blocking_s"] <= res["checkpoint"]["total_s"]
    for label in ("defaults", "fastest"):
        p = res["projection"][label]
        assert p["total_h"] >= p["train_h"] > 0 and 0 <= p["outside_training"] < 1
        assert set(p["stages"]) >= {"shared", "siblings", "independent", "retrain"}
    table = (tmp_path / "accelerator.md").read_text()
    assert "Projected paper preset" in table and "| step:vmap | float32 | 2 |" in table
    assert "Projected paper preset" in proc.stdout


@pytest.mark.slow
def test_the_prepared_ranking_call_runs_on_the_cpu(tmp_path):
    """`gpu_calls.sh rank --quick`: the device call's ranking at toy size. Every candidate way is
    measured (or recorded as failed, with XLA's message) against the default, with the compiler
    options its programs were given; the profiles are attempted (a CPU trace has no kernels)."""
    proc = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "gpu_calls.sh"), "rank",
                           "--quick"], env=dict(ENV, OUT=str(tmp_path)), cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "accelerator.json").read_text())
    bench = _module("benchmarks/accelerator.py", "accelerator")
    assert res["size"]["modes"] == list(bench.CANDIDATES)
    rows = {r["way"]: r for r in res["training"]}
    assert set(rows) == set(bench.CANDIDATES), res["skipped"]
    for way, r in rows.items():
        assert r["images_per_s"] > 0, r.get("failed")
        assert r["compiler_options"] == {}  # GPU sets apply on the GPU only
        assert r["dtype"] == ("bfloat16" if "bf16" in way else "float32")
    assert rows["program:map+concurrent_unrolled"]["xla_options"] == "concurrent_unrolled"
    assert rows["program:map+flat"]["flat_update"] is True
    assert [p["way"] for p in res["profiles"]][:1] and all("note" in p for p in res["profiles"])
    assert "| program:hybrid | float32 | 2 |" in (tmp_path / "accelerator.md").read_text()


def test_ways_are_parsed_and_bad_ones_named():
    bench = _module("benchmarks/accelerator.py", "accelerator")
    assert bench.parse_way("program:map+concurrent+bf16") == {
        "way": "program:map+concurrent+bf16", "mode": "program", "strategy": "map",
        "xla_options": "concurrent", "dtype": "bfloat16", "flat": False}
    assert bench.parse_way("step:loop")["xla_options"] == "none"
    for bad in ("map", "program:pmap", "loop:map", "program:map+graphs+concurrent",
                "program:map+flat+flat", "program:map+fast"):
        with pytest.raises(ValueError, match="program|variants"):
            bench.parse_way(bad)
    for way in bench.CANDIDATES + bench.MODES:
        bench.parse_way(way)
    assert bench.CANDIDATES[0] == "program:map"  # today's GPU default leads the ranking


@pytest.mark.slow
def test_accelerator_benchmark_refuses_bad_flags(tmp_path):
    for flag in ("--budget=0", "--ks=0,2", "--steps=1000", "--ks=a", "--modes=program:pmap",
                 "--modes=,", "--dtype=float16", "--profile_steps=0"):
        proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "accelerator.py"),
                               "--quick", f"--out={tmp_path}", flag], env=ENV,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _module(path: str, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_kernel_summary_sums_device_kernels_by_kind():
    """Busy time is the union of kernel intervals (overlapping streams count once); host events
    and metadata are ignored; kinds are matched on names ("convert" is no convolution)."""
    bench = _module("benchmarks/accelerator.py", "accelerator")
    events = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
              {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}},
              {"ph": "X", "pid": 1, "ts": 0, "dur": 60, "name": "sm90_xmma_fprop_implicit_gemm"},
              {"ph": "X", "pid": 1, "ts": 50, "dur": 20, "name": "input_reduce_fusion"},
              {"ph": "X", "pid": 1, "ts": 100, "dur": 20, "name": "loop_convert_fusion"},
              {"ph": "X", "pid": 2, "ts": 0, "dur": 500, "name": "PjitFunction(step)"}]
    out = bench.kernel_summary(events, wall_s=200e-6, iterations=2)
    assert out["busy_s"] == pytest.approx(90e-6) and out["busy_fraction"] == pytest.approx(0.45)
    assert out["kernels_per_iteration"] == 1.5 and out["mean_kernel_us"] == pytest.approx(100 / 3)
    assert out["by_kind"] == {"convolutions and matmuls": 0.6,
                              "reductions (BN statistics, loss, metrics)": 0.2,
                              bench.OTHER_KERNELS: 0.2}
    assert out["top_kernels"][0] == {"name": "sm90_xmma_fprop_implicit_gemm", "calls": 1,
                                     "share": 0.6}
    assert "note" in bench.kernel_summary(events[1:2] + events[-1:], 1.0, 1)


def test_timed_study_fits_its_schedule_to_the_budget():
    """The study's schedule is the only thing cut: more budget never buys fewer epochs, the
    prediction grows with the epochs, and the rates come from the fastest way near k = 4."""
    timed = _module("experiments/timed_study.py", "timed_study")
    rows = [{"mode": "step", "strategy": "vmap", "k": 10, "images_per_s": 50_000.0, "compile_s": 9.0},
            {"mode": "program", "strategy": "vmap", "k": 10, "images_per_s": 80_000.0, "compile_s": 11.0},
            {"mode": "program", "strategy": "vmap", "k": 2, "images_per_s": 30_000.0, "compile_s": 10.0},
            {"mode": "step", "strategy": "vmap", "k": 2, "images_per_s": 35_000.0, "compile_s": 5.0}]
    bench = {"training": rows, "evaluation": [{"images_per_s": 400_000.0}],
             "size": {"per_call": 50}}
    by_k, eval_rate, compile_s, how = timed.rates(bench, 1.0)
    # k = 2 is nearer 4 than 10 is; its fastest way is the per-step vmap.
    assert how == {"strategy": "vmap", "steps_per_call": 1, "xla_options": "none",
                   "flat_update": False, "compute_dtype": "float32"}
    assert by_k == {10: 50_000.0, 2: 35_000.0}
    # A faster bfloat16 way is not chosen unless asked for (it changes the arithmetic).
    bf16 = dict(rows[3], way="step:vmap+bf16", dtype="bfloat16", images_per_s=90_000.0)
    assert timed.rates(dict(bench, training=rows + [bf16]), 1.0)[3]["compute_dtype"] == "float32"
    assert timed.rates(dict(bench, training=rows + [bf16]), 1.0,
                       "step:vmap+bf16")[3]["compute_dtype"] == "bfloat16"
    assert eval_rate == 400_000.0 and compile_s == 9.0  # the median of that way's rows
    times = [timed.predict(timed.study("d", e, 1), 60_000, 10_000, by_k, 1.0, eval_rate, 60.0, 0.1)
             for e in timed.EPOCHS]
    assert times == sorted(times, reverse=True) and times[-1] > 60.0
    # Members run one after another (loop, map): a smaller stack keeps the images/s.
    cfg = timed.study("d", 8, 1)
    assert timed.predict(cfg, 60_000, 10_000, by_k, 1.0, eval_rate, 60.0, 0.1, True) < times[-1]
    cfg = timed.study("d", 30, 2)
    assert cfg.lr_drop_epochs == (15, 22) and cfg.validate() and cfg.network_epochs() == {
        "shared": 5.0, "siblings": 332.0, "independent": 60.0, "retrain": 672.0}
    # retraining from W_2 at one density, 2 orders: union and intersection of k' = 2 from two
    # sibling groups, three methods of all 4, 2 one-shot masks, 2 controls, the dense control:
    # 12 x 2 x 28 epochs
    assert timed.stack_sizes(cfg) == {"shared": 1, "siblings": 4, "independent": 2, "retrain": 20}
    assert timed.study("d", 8, 1).lr_drop_epochs == (4, 6)


def test_the_claim1_design_cuts_siblings_and_control_before_the_schedule():
    timed = _module("experiments/timed_study.py", "timed_study")
    by_k = {4: 40_000.0, 2: 40_000.0}
    for epochs in timed.CLAIM1_EPOCHS:
        times = [timed.predict(timed.claim1("d", epochs, k, c), 60_000, 10_000, by_k, 1.0,
                               400_000.0, 60.0, 0.1, True) for k, c in timed.CLAIM1_SHAPES]
        assert times == sorted(times, reverse=True)  # each cut is cheaper
    cfg = timed.claim1("d", 160, 4, 2).validate()
    assert cfg.lr_drop_epochs == (80, 120) and cfg.spawn_epochs == (0,) and not cfg.retrain_spawn_epochs
    assert cfg.network_epochs() == {"shared": 0.0, "siblings": 640.0, "independent": 320.0,
                                    "retrain": 0.0}
    assert cfg.imprint(60_000) == pytest.approx(0.019, abs=0.001)  # 160 epochs of 469 iterations
    assert timed.claim1("d", 12, 2, 0).validate().lr_drop_epochs == (6, 9)
    assert timed.stack_sizes(timed.claim1("d", 12, 3, 2))["siblings"] == 3
