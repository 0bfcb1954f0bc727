"""Every bad input gets a one-line error naming it, exit status 2, before any work.

The table of inputs and messages lives in docs/bad_inputs.md between the BAD-INPUTS markers and
is checked against what the program prints now; JAXLOTTERY_UPDATE_NOTES=1 rewrites it.
"""

import os
import re

import numpy as np
import pytest

from jaxlottery import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTES = os.path.join(ROOT, "docs", "bad_inputs.md")
BEGIN, END = "<!-- BAD-INPUTS:BEGIN -->", "<!-- BAD-INPUTS:END -->"


def bad_files(tmp):
    x = np.zeros((4, 8, 8, 3), np.uint8)
    y = np.zeros(4, np.int64)
    np.savez(tmp / "no_labels.npz", x_train=x, x_test=x, y_test=y)
    np.savez(tmp / "float_images.npz", x_train=x.astype(np.float32), y_train=y, x_test=x, y_test=y)
    np.savez(tmp / "negative_labels.npz", x_train=x, y_train=y - 1, x_test=x, y_test=y)
    np.savez(tmp / "length_mismatch.npz", x_train=x, y_train=y[:3], x_test=x, y_test=y)
    np.savez(tmp / "ok.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    data = (tmp / "ok.npz").read_bytes()
    (tmp / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp / "empty_dir").mkdir()
    labels = np.arange(4, dtype=np.int64) % 2
    np.savez(tmp / "channels_first.npz", x_train=np.zeros((4, 3, 8, 8), np.uint8), y_train=labels,
             x_test=np.zeros((4, 3, 8, 8), np.uint8), y_test=labels)
    np.savez(tmp / "one_class.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    np.savez(tmp / "huge_labels.npz", x_train=x, y_train=np.array([0, 1, 5, 2**30]), x_test=x,
             y_test=labels)
    np.savez(tmp / "gappy_labels.npz", x_train=x, y_train=np.array([0, 2, 0, 2]), x_test=x,
             y_test=np.array([0, 2, 2, 0]))
    np.savez(tmp / "unseen_test_labels.npz", x_train=x, y_train=labels, x_test=x,
             y_test=np.array([0, 1, 2, 1]))
    gray = np.full((4, 8, 8), 7, np.uint8)
    np.savez(tmp / "constant_gray.npz", x_train=gray, y_train=labels, x_test=gray, y_test=labels)
    np.save(tmp / "images.npy", x)
    return {
        "a .npz without y_train": "no_labels.npz", "float32 images": "float_images.npz",
        "labels below 0": "negative_labels.npz", "4 images, 3 labels": "length_mismatch.npz",
        "a truncated .npz": "truncated.npz", "a folder without IDX files": "empty_dir",
        "a missing .npz": "missing.npz", "images channels-first (N, C, H, W)": "channels_first.npz",
        "a single class": "one_class.npz", "a label of 2**30": "huge_labels.npz",
        "labels 0 and 2, no 1": "gappy_labels.npz", "a test label never seen in training":
        "unseen_test_labels.npz", "a constant grayscale channel": "constant_gray.npz",
        "a .npy file": "images.npy",
    }


FLAGS = [
    ("k below 1", ["--k=0"]), ("k of 1", ["--k=1"]), ("k not a number", ["--k=ten"]),
    ("density above 1", ["--densities=0.5,1.5"]), ("density 0", ["--densities=0"]),
    ("spawn epoch beyond the schedule", ["--spawn_epochs=0,200"]),
    ("k-values above k", ["--k=4", "--k_values=2,8"]), ("unknown preset", ["--preset=fast"]),
    ("depth not 6n+2", ["--model=cifar_resnet_19"]), ("zero epochs", ["--epochs=0"]),
    ("negative batch size", ["--batch_size=-1"]), ("learning rate 0", ["--lr=0"]),
    ("momentum 1.5", ["--momentum=1.5"]), ("unknown composition", ["--compose=xor"]),
    ("unknown strategy", ["--strategy=pmap"]), ("unknown compute dtype", ["--compute_dtype=float16"]),
    ("unknown pruning criterion", ["--criterion=SNIP"]),
    ("unknown XLA option set", ["--xla_options=fastest"]),
    ("flat updates not a boolean", ["--flat_update=maybe"]),
    ("a compilation cache that is a file", ["--compilation_cache=/etc/hostname"]),
    ("zero iterations per compiled call", ["--steps_per_call=0"]), ("one independent init", ["--independent_inits=1"]),
    ("retrain spawn point not a spawn point", ["--retrain_spawn_epochs=3"]),
    ("boolean flag not a boolean", ["--augment=maybe"]),
    ("no baseline siblings", ["--baseline_siblings=0"]), ("zero-image subset", ["--train_subset=0"]),
    ("LR drop after the end", ["--lr_drop_epochs=500"]), ("unknown flag", ["--kk=3"]),
    ("unknown TFDS name", ["--dataset=cifar11"]),
    ("a file of a format the loader does not know", ["--dataset=/etc/hostname"]),
    ("a CSV file that is not there", ["--dataset=train.csv"]),
    ("more LMC pairs than siblings allow", ["--k=4", "--lmc_pairs=3"]),
    ("IMP pruning everything per level", ["--imp_levels=3", "--imp_rate=1"]),
    ("IMP rewind point not a spawn point", ["--imp_levels=3", "--imp_rewind_epoch=3"]),
    ("unknown random baseline", ["--random_baselines=random,shuffled"]),
    ("a density that keeps no weight of the model", ["--densities=0.5,0.00001"]),
    ("IMP levels past every weight", ["--imp_levels=60"]),
    # repeated values in list flags
    ("a spawn epoch twice", ["--spawn_epochs=0,1,1"]), ("a density twice", ["--densities=0.5,0.5"]),
    ("a k-value twice", ["--k_values=2,2"]), ("an LR drop twice", ["--lr_drop_epochs=2,2"]),
    ("a composition twice", ["--compose=union,union"]),
    # ranges that cannot be written forwards
    ("an LR drop in a 1-epoch schedule", ["--epochs=1", "--spawn_epochs=0",
                                          "--retrain_spawn_epochs=0", "--lr_drop_epochs=1"]),
    ("an LR drop at epoch 0", ["--lr_drop_epochs=0"]),
    # numbers out of range or of the wrong kind
    ("a seed past 32 bits", ["--seed=99999999999"]), ("a negative seed", ["--seed=-1"]),
    ("a seed that is a word", ["--seed=abc"]), ("a fractional seed", ["--seed=1.5"]),
    ("evaluation batch 0", ["--eval_batch=0"]), ("negative evaluation batch", ["--eval_batch=-5"]),
    ("a word in a list of integers", ["--k_values=2,x"]),
    ("a word in a list of densities", ["--densities=0.5,half"]),
    ("a learning rate that is a word", ["--lr=fast"]), ("an infinite learning rate", ["--lr=inf"]),
    ("a NaN learning rate", ["--lr=nan"]), ("momentum below 0", ["--momentum=-0.1"]),
    ("negative weight decay", ["--weight_decay=-1e-4"]), ("LR drop factor 0", ["--lr_drop_factor=0"]),
    ("zero retraining seeds", ["--retrain_seeds=0"]), ("zero checkpoint interval", ["--checkpoint_every=0"]),
    ("zero retraining chunk", ["--retrain_chunk=0"]), ("one LMC point", ["--lmc_points=1"]),
    ("an unknown BN mode", ["--lmc_bn=freeze"]), ("IMP rate 0", ["--imp_levels=2", "--imp_rate=0"]),
    ("IMP with 1 sibling", ["--imp_levels=2", "--imp_k=1"]),
    ("width 0", ["--model=cifar_resnet_20_0"]), ("unknown model", ["--model=resnet50"]),
    ("VGG of no plan", ["--model=cifar_vgg_12"]), ("old depth flag", ["--model_depth=8"]),
    ("no spawn epochs", ["--spawn_epochs="]), ("no densities", ["--densities="]),
    # the consistency design's options
    ("zero initializations", ["--inits=0"]), ("a snapshot at epoch 0", ["--snapshot_epochs=0"]),
    ("a snapshot past the schedule", ["--snapshot_epochs=1,99"]),
    ("a snapshot list that is a word", ["--snapshot_epochs=often"]),
    ("a snapshot epoch twice", ["--snapshot_epochs=1,1"]),
    ("a spawn point at iteration 0", ["--spawn_iterations=0"]),
    ("a spawn iteration past the schedule", ["--spawn_iterations=100000"]),
    ("a spawn iteration that is a spawn epoch", ["--spawn_iterations=4"]),
    ("IMP with no retraining spawn point to rewind to", ["--retrain_spawn_epochs="]),
    # the composition design's options
    ("zero replicate masks", ["--mask_replicates=0"]),
    ("replicate masks that are a word", ["--mask_replicates=many"]),
    ("a positive control that is not a boolean", ["--positive_control=sometimes"]),
    ("a natural-density switch that is not a boolean", ["--natural_density=maybe"]),
    # sizes against the actual data (synthetic: 2,048 train / 512 test images)
    ("a training subset larger than the data", ["--train_subset=5000"]),
    ("a test subset larger than the data", ["--test_subset=5000"]),
    ("a batch larger than the training set", ["--batch_size=4096"]),
    ("a retrain density that keeps no weight", ["--retrain_densities=0.00001"]),
    # where the data is
    ("an empty --dataset", ["--dataset="]), ("a --dataset of spaces", ["--dataset=  "]),
    # where the run goes
    ("an empty --workdir", ["--workdir="]), ("a --workdir that is a file", ["--workdir=<file>"]),
    ("a --workdir inside a file", ["--workdir=<file>/runs"]),
    # devices and processes
    ("a negative device count", ["--cpu_devices=-1"]), ("zero devices", ["--cpu_devices=0"]),
    ("a lock expiry of 0", ["--lock_expiry=0"]), ("a lock expiry that is a word", ["--lock_expiry=soon"]),
    ("a coordinator alone", ["--coordinator=host0:1234"]),
    ("a process count without a coordinator", ["--num_processes=2", "--process_id=0"]),
    ("a process id past the count", ["--coordinator=host0:1234", "--num_processes=2",
                                     "--process_id=2"]),
    ("a coordinator without a port", ["--coordinator=host0", "--num_processes=2",
                                      "--process_id=0"]),
    ("zero processes", ["--coordinator=host0:1234", "--num_processes=0", "--process_id=0"]),
    ("a TFDS dataset offline (mnist)", ["--dataset=mnist", "--data_dir=<tmp>/tfds"]),
    ("a TFDS dataset offline (svhn_cropped)", ["--dataset=svhn_cropped", "--data_dir=<tmp>/tfds"]),
    ("OMPI_COMM_WORLD_SIZE without mpirun", ["env:OMPI_COMM_WORLD_SIZE=2"]),
    ("a process count variable that is a word", ["--coordinator=host0:1234",
                                                 "env:JAXLOTTERY_NUM_PROCESSES=two",
                                                 "--process_id=0"]),
]


# The bad files hold 4 images: the smoke preset's subsets and batch would be refused first.
WHOLE_TINY_SET = ["--train_subset=none", "--test_subset=none", "--batch_size=2"]


def table_rows(tmp_path, capsys, monkeypatch):
    """Each case through `cli.main` in this process, as the command line would run it: its
    exit status, stderr, and whether it left anything in its workdir. An exception escaping
    main is a traceback, which fails the test."""
    from jaxlottery import experiment

    def reached(*a, **kw):
        raise AssertionError("a bad input reached the training stages")

    monkeypatch.setattr(experiment, "_run_stages", reached)
    import socket

    def offline(host, *a, **kw):  # a machine without network, as users without one see it
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    rows = []
    (tmp_path / "file").write_text("not a folder")
    cases = list(FLAGS) + [(what, [f"--dataset={tmp_path / name}", *WHOLE_TINY_SET])
                           for what, name in bad_files(tmp_path).items()]
    for what, argv in cases:
        workdir = tmp_path / "runs"
        flags = [a.replace("<file>", str(tmp_path / "file")).replace("<tmp>", str(tmp_path))
                 for a in argv if not a.startswith("env:")]
        with monkeypatch.context() as m:
            for a in argv:
                if a.startswith("env:"):
                    m.setenv(*a[4:].split("=", 1))
            try:
                status = cli.main(["--preset=smoke", f"--workdir={workdir}", "--no_progress",
                                   *flags])
            except SystemExit as e:
                status = e.code
        err = capsys.readouterr().err.strip()
        first = err.splitlines()[0] if err else ""
        shown = " ".join(a for a in argv if a not in WHOLE_TINY_SET)
        first = re.sub(r"/\d+\.\d+\.\d+\b", "/<version>", first)  # TFDS's, which varies
        rows.append((what, shown.replace(str(tmp_path), "<tmp>"), status,
                     first.replace(str(tmp_path), "<tmp>"), err, workdir.exists()))
    return rows


def render(rows) -> str:
    lines = ["| bad input | flags | exit | message (first line) |", "|---|---|---|---|"]
    for what, argv, status, msg, *_ in rows:
        lines.append(f"| {what} | `{argv}` | {status} | {msg.replace('|', '/')} |")
    return "\n".join(lines)


def test_every_bad_input_fails_fast_with_a_one_line_message(tmp_path, capsys, monkeypatch):
    """Every row: exit status 2, at most two lines on stderr (the error, and where a dataset
    comes from), no traceback, and no run directory created."""
    rows = table_rows(tmp_path, capsys, monkeypatch)
    assert len(rows) >= 80
    for what, argv, status, msg, err, created in rows:
        assert status == 2, (what, status, err)
        assert msg.startswith("error: ") and len(msg) > 20, (what, msg)
        assert len(err.splitlines()) <= 2 and "Traceback" not in err, (what, err)
        assert not created, (what, "left a run directory")
    table = render(rows)
    notes = open(NOTES).read()
    block = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), notes, re.S)
    if os.environ.get("JAXLOTTERY_UPDATE_NOTES") == "1":
        new = f"{BEGIN}\n{table}\n{END}"
        notes = notes.replace(block.group(0), new) if block else notes + "\n" + new + "\n"
        with open(NOTES, "w") as f:
            f.write(notes)
        return
    assert block is not None, "docs/bad_inputs.md has no bad-input table; run with JAXLOTTERY_UPDATE_NOTES=1"
    assert block.group(1) == table, "the bad-input table in docs/bad_inputs.md is out of date:\n" + table


@pytest.mark.slow
def test_the_cli_itself_fails_in_one_line_without_a_run_directory(tmp_path):
    """A sample of the table through the real command line (a fresh process): exit status 2,
    no traceback, at most two lines on stderr, nothing created."""
    import subprocess
    import sys

    from conftest import ENV, REPO

    (tmp_path / "file").write_text("x")
    for argv in (["--k=ten"], ["--densities=0.5,0.5"], ["--workdir="], ["--seed=99999999999"],
                 ["--train_subset=5000"], ["--coordinator=host0:1"], [f"--workdir={tmp_path}/file"],
                 ["--lr=fast"]):  # (no TFDS name: a CI machine may have network)
        workdir = [] if any(a.startswith("--workdir") for a in argv) else [f"--workdir={tmp_path}/runs"]
        proc = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "run.py"),
                               "--preset=smoke", "--no_progress", *workdir, *argv],
                              env=ENV, capture_output=True, text=True, timeout=120)
        err = proc.stderr.strip()
        assert proc.returncode == 2, (argv, err)
        assert err.startswith("error: ") and len(err.splitlines()) <= 2, (argv, err)
        assert "Traceback" not in err and not (tmp_path / "runs").exists(), argv


def test_a_flag_of_none_unsets_what_the_preset_set():
    args = cli.build_parser().parse_args(["--preset=quick", "--train_subset=none"])
    assert cli.config_from_args(args).train_subset is None
    assert cli.config_from_args(cli.build_parser().parse_args(["--preset=quick"])).train_subset == 4000


def test_file_extensions_in_any_case(tmp_path):
    from jaxlottery import data, datasets

    ds = data.synthetic(num_train=8, num_test=8)
    datasets.save_npz(str(tmp_path / "d.npz"), ds)
    os.replace(tmp_path / "d.npz", tmp_path / "D.NPZ")
    assert data.load(str(tmp_path / "D.NPZ")).x_train.shape == ds.x_train.shape


def test_python_api_errors_name_the_problem(tmp_path):
    import jax
    import jax.numpy as jnp

    from jaxlottery import checkpoint, masks, train
    from jaxlottery.config import Config, ConfigError

    for kw in (dict(densities=0.5), dict(compose="union"), dict(k="10"), dict(spawn_epochs=[0, 1.5])):
        with pytest.raises(ConfigError):
            Config(**kw).validate()
    with pytest.raises(TypeError, match="outside|not inside"):
        jax.jit(lambda x: train.check_finite({"loss": x}, "a step") or x)(jnp.ones(2))
    with pytest.raises(FileNotFoundError, match="cannot write /nonexistent-folder/x.json"):
        checkpoint.write_json("/nonexistent-folder/x.json", {})
    for meta in ("null", '{"format": "jaxlottery-mask", "version": 1}', '[1, 2]'):
        np.savez(tmp_path / "m.npz", __meta__=np.array(meta))
        with pytest.raises(ValueError, match="m.npz"):
            masks.load(str(tmp_path / "m.npz"))


def test_report_tool_errors_and_older_results(tmp_path, capsys):
    import json
    import shutil

    from jaxlottery import report

    assert report.main([str(tmp_path / "none")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert report.main([str(tmp_path)]) == 2
    assert "has no results.json" in capsys.readouterr().err
    (tmp_path / "results.json").write_text("null")
    assert report.main([str(tmp_path)]) == 2
    assert "not a jaxlottery results file" in capsys.readouterr().err
    (tmp_path / "results.json").write_text("{")
    assert report.main([str(tmp_path)]) == 2
    assert "unreadable" in capsys.readouterr().err
    docs = os.path.join(ROOT, "docs", "quick_fashion_mnist", "results.json")
    old = json.load(open(docs))
    for key in ("consistency_layers", "random_baselines", "connectivity", "imp",
                "retrained_masks", "differences", "readings", "imp_members"):
        old.pop(key)
    (tmp_path / "results.json").write_text(json.dumps(old))
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "has no 'consistency_layers' (written by an older version): skipped" in out
    text = (tmp_path / "report.md").read_text()
    assert "## Claim 2" in text and "layer_overlap.png" not in text
    assert not (tmp_path / "layer_overlap.png").exists()
    shutil.rmtree(tmp_path)


def test_a_workdir_that_cannot_be_written_fails_before_any_work(tmp_path, capsys, monkeypatch):
    """Read-only mounts and folders of another user (root writes anywhere, so the refusal of
    the probe file is simulated)."""
    import tempfile

    def refuse(*a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    assert cli.main(["--preset=smoke", f"--workdir={tmp_path}/runs", "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --workdir: cannot write in {tmp_path} (Permission denied)")
    assert not (tmp_path / "runs").exists()
