"""Preemption, corruption, full disks, concurrent runs, divergence: nothing is lost or wrong."""

import errno
import json
import os
import random
import shutil
import signal
import time

import pytest

from jaxlottery import checkpoint, config, experiment, files

from conftest import ENV, SMOKE, comparable, run_cli


def _copy_run(smoke, tmp_path):
    workdir, rundir, results, _ = smoke
    dst = tmp_path / "work"
    shutil.copytree(workdir, dst)
    return dst, dst / SMOKE.run_id(), results


@pytest.mark.slow
def test_killed_at_seeded_points_of_every_stage_resumes_to_identical_results(smoke, tmp_path):
    """Seven kill -9s at named points (counts drawn with a fixed seed): the sibling, output,
    retraining, IMP and results stages, in the middle of a checkpoint write and of the results
    writing; then one clean run. Bit-identical results."""
    rng = random.Random(0)
    points = [f"epoch siblings/e0:{rng.randint(1, 2)}",  # sibling stage, at an epoch's end
              f"checkpoint:{rng.randint(2, 3)}",  # an orbax save still in flight
              f"write *:{rng.randint(3, 8)}",  # stage outputs (masks, histories, finals)
              "epoch retrain/*:1",  # the retraining stage
              "epoch imp/level2/*:1",  # IMP: level 2's masks come from level 1's saved weights
              "write report.md:1",  # results writing: the report
              "write results.json:1"]  # results writing: the results file itself
    rundir = tmp_path / SMOKE.run_id()
    for point in points:
        proc = run_cli(tmp_path, env=dict(ENV, JAXLOTTERY_KILL_AT=point))
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, err[-2000:])
        assert not (rundir / "results.json").exists()
    proc = run_cli(tmp_path)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    with open(rundir / "results.json") as f:
        resumed = json.load(f)
    assert comparable(resumed) == comparable(smoke[2])
    # the snapshots recorded before the kill in the sibling stage came back from its checkpoint
    assert {(r["spawn_epoch"], r["epoch"]) for r in resumed["trajectory"]} >= {(0, 1), (0, 2), (0, 3)}


@pytest.mark.slow
def test_sigterm_stops_with_one_line_and_the_run_resumes_to_identical_results(smoke, tmp_path):
    """SIGTERM (how preemptible VMs and schedulers stop a job) in the sibling stage: one line
    saying how to resume, the lock released, no half-written file; then a clean run gives the
    uninterrupted results. (Unwinding mid-write is the atomic writes' job, tested with kills.)"""
    rundir = tmp_path / SMOKE.run_id()
    for point in ("epoch siblings/e1:1:TERM",):
        proc = run_cli(tmp_path, env=dict(ENV, JAXLOTTERY_KILL_AT=point))
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 128 + signal.SIGTERM, (point, proc.returncode, err[-2000:])
        last = err.strip().splitlines()[-1]
        assert last.startswith("stopped by SIGTERM") and str(rundir) in last, err[-2000:]
        assert not (rundir / "lock").exists()
        assert not [p for p in rundir.rglob(".tmp-*")]  # no half-written file left behind
    proc = run_cli(tmp_path)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert comparable(json.loads((rundir / "results.json").read_text())) == comparable(smoke[2])


@pytest.mark.slow
def test_truncated_results_and_checkpoint_are_recovered(smoke, tmp_path, capsys):
    work, rundir, reference = _copy_run(smoke, tmp_path)
    # A results file cut in half: reported, set aside, rebuilt from the stages' outputs.
    text = (rundir / "results.json").read_text()
    (rundir / "results.json").write_text(text[: len(text) // 2])
    again = experiment.run(SMOKE, workdir=str(work), progress=False)
    assert comparable(again) == comparable(reference)
    assert "results.json is unreadable" in capsys.readouterr().out
    # The sibling stage's final weights lost, its newest checkpoint truncated: the older
    # checkpoint is used and the last epoch trained again, to the same numbers.
    (rundir / "results.json").unlink()
    (rundir / "siblings" / "e0" / "final.npz").unlink()
    ckpt = rundir / "siblings" / "e0" / "ckpt"
    newest = max((p for p in ckpt.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for f in newest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    again = experiment.run(SMOKE, workdir=str(work), progress=False)
    out = capsys.readouterr().out
    assert f"checkpoint {newest} is unreadable" in out
    assert comparable(again) == comparable(reference)
    # A truncated stage output (a mask file) is recomputed, not loaded.
    (rundir / "results.json").unlink()
    mask = rundir / "masks" / "siblings_e0_d0.npz"
    mask.write_bytes(mask.read_bytes()[:100])
    again = experiment.run(SMOKE, workdir=str(work), progress=False)
    assert "siblings_e0_d0.npz is unreadable" in capsys.readouterr().out
    assert comparable(again) == comparable(reference)


@pytest.mark.slow
def test_a_full_disk_fails_clearly_and_keeps_the_last_good_state(smoke, tmp_path, monkeypatch):
    work, rundir, _ = _copy_run(smoke, tmp_path)
    (rundir / "results.json").unlink()
    before = {p: p.read_bytes() for p in rundir.rglob("*") if p.is_file()}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        experiment.run(SMOKE, workdir=str(work), progress=False)
    after = {p: p.read_bytes() for p in rundir.rglob("*") if p.is_file()}
    assert after == before  # nothing changed, nothing half-written, lock released


@pytest.mark.slow
def test_two_processes_on_one_run_directory(tmp_path):
    first = run_cli(tmp_path)
    lock = tmp_path / SMOKE.run_id() / "lock"
    deadline = time.time() + 300
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert lock.exists(), "the first run never took the lock"
    second = run_cli(tmp_path)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2
    assert f"in use by process {first.pid}" in err and len(err.strip().splitlines()) == 1
    assert first.poll() is None  # the holder was not disturbed
    first.send_signal(signal.SIGKILL)  # preempted: its lock is now stale ...
    first.wait()
    with files.RunLock(lock.parent, print):  # ... and the next run takes it over
        pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    logs = []
    (tmp_path / "lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname()[1],
                                              "since": 0}))
    with files.RunLock(tmp_path, logs.append):
        held = json.loads((tmp_path / "lock").read_text())
        assert held["pid"] == os.getpid()
    assert "stale lock" in logs[0] and not (tmp_path / "lock").exists()
    (tmp_path / "lock").write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere", "since": 0}))
    with pytest.raises(files.RunLocked, match="elsewhere"):
        with files.RunLock(tmp_path):
            pass


def test_a_lost_hosts_lock_expires_and_a_live_one_is_kept(tmp_path):
    """Colab: a disconnect gives a new VM with a new host name. The old VM's lock stops being
    refreshed and is taken over after --lock_expiry; a lock refreshed by its holder is kept;
    --break_lock takes any lock. The holder's heartbeat refreshes the file while it runs."""
    lock = tmp_path / "lock"
    lock.write_text(json.dumps({"pid": 4242, "host": "colab-vm-before-disconnect", "since": 0}))
    old = time.time() - 400
    os.utime(lock, (old, old))
    logs = []
    with files.RunLock(tmp_path, logs.append, expiry=300):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "process 4242 on colab-vm-before-disconnect" in logs[0]
    assert "not refreshed for 400 s" in logs[0]
    lock.write_text(json.dumps({"pid": 4242, "host": "another-live-host", "since": 0}))
    with pytest.raises(files.RunLocked, match="another-live-host.*--break_lock"):
        with files.RunLock(tmp_path, expiry=300):
            pass
    logs.clear()
    with files.RunLock(tmp_path, logs.append, break_lock=True):
        pass
    assert "breaking the lock" in logs[0] and not lock.exists()
    with files.RunLock(tmp_path, expiry=300, heartbeat=0.05):
        os.utime(lock, (old, old))
        time.sleep(0.5)
        assert time.time() - os.path.getmtime(lock) < 5  # refreshed by the heartbeat
    # a live process on this host is never disturbed, however old its lock
    lock.write_text(json.dumps({"pid": os.getppid(), "host": os.uname()[1], "since": 0}))
    os.utime(lock, (old, old))
    with pytest.raises(files.RunLocked):
        with files.RunLock(tmp_path, expiry=1):
            pass


@pytest.mark.slow
def test_divergence_stops_loudly_and_reports_no_numbers(tmp_path):
    bad = config.preset("smoke", lr=1e9)
    with pytest.raises(experiment.TrainingDiverged, match="non-finite training loss") as err:
        experiment.run(bad, workdir=str(tmp_path), progress=False)
    rundir = tmp_path / bad.run_id()
    failure = checkpoint.read_json(str(rundir / "failed.json"))
    assert failure["stage"] in ("shared", "siblings/e0") and "members [" in failure["error"]
    assert f"stage {failure['stage']}" in str(err.value) and "iterations" in str(err.value)
    assert not (rundir / "results.json").exists()
    assert not (rundir / "lock").exists()


class _Died(Exception):
    """The process 'dies' here (raised past every handler in the test)."""


@pytest.mark.slow
def test_death_right_after_the_checkpoint_at_a_spawn_point_recovers_its_spawn_weights(
        tmp_path, monkeypatch):
    """The shared stage trains one segment per spawn point and writes W_t when the segment
    returns, after the segment's last checkpoint: a death in between leaves a checkpoint at
    exactly t and no W_t, and the resume must write W_t from that checkpoint, unchanged."""
    import jax
    import numpy as np

    from jaxlottery import paths, stacks, stages, train

    real_save, saved = checkpoint.Checkpoints.save, []

    def save_then_die(self, step, state, meta):
        real_save(self, step, state, meta)
        self.wait()  # the checkpoint is complete on disk
        saved.append(jax.device_get(state))
        raise _Died

    cfg = config.preset("smoke", train_subset=64, test_subset=32, batch_size=32)
    spawn = tmp_path / cfg.run_id() / paths.spawn_weights(1)
    with monkeypatch.context() as m:
        m.setattr(checkpoint.Checkpoints, "save", save_then_die)
        with pytest.raises(_Died):
            experiment.run(cfg, workdir=str(tmp_path), progress=False)
    assert not spawn.exists() and int(saved[0].step[0]) == 2  # epoch 1 of 2 iterations
    monkeypatch.setattr(stages, "STAGES", stages.STAGES[:1])  # the shared stage alone
    experiment.run(cfg, workdir=str(tmp_path), progress=False)
    checkpointed = train.variables(stacks.index(saved[0], 0))
    on_disk = checkpoint.load_arrays(str(spawn), checkpointed, as_numpy=True)
    for a, b in zip(jax.tree.leaves(on_disk), jax.tree.leaves(checkpointed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_run_files_that_parse_but_hold_the_wrong_thing_are_recomputed(smoke, tmp_path, capsys):
    """A results.json of `null` and an empty stage file are reported by path and recomputed
    (no stage trains again); a config.json from a version with other settings is refused,
    naming it."""
    workdir, rundir, results = _copy_run(smoke, tmp_path)
    (rundir / "results.json").write_text("null")
    (rundir / "consistency.json").write_text("")
    again = experiment.run(SMOKE, workdir=str(workdir), progress=False)
    assert comparable(again) == comparable(results)
    out = capsys.readouterr().out
    assert f"{rundir / 'results.json'} is unreadable" in out
    assert f"{rundir / 'consistency.json'} is unreadable" in out
    (rundir / "results.json").unlink()
    record = json.loads((rundir / "config.json").read_text())
    record["config"]["sparsity_schedule"] = "cubic"  # a setting this version does not know
    (rundir / "config.json").write_text(json.dumps(record))
    with pytest.raises(experiment.ConfigMismatch, match="config.json was written by jaxlottery"):
        experiment.run(SMOKE, workdir=str(workdir), progress=False)
