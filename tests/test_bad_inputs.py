"""Every bad input gets a one-line error naming it, exit status 2, before any work.

The table of inputs and messages lives in BUILD_NOTES.md between the BAD-INPUTS markers and is
checked against what the program prints now; JAXLOTTERY_UPDATE_NOTES=1 rewrites it.
"""

import os
import re

import numpy as np

from jaxlottery import cli

NOTES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BUILD_NOTES.md")
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
    return {
        "a .npz without y_train": "no_labels.npz", "float32 images": "float_images.npz",
        "labels below 0": "negative_labels.npz", "4 images, 3 labels": "length_mismatch.npz",
        "a truncated .npz": "truncated.npz", "a folder without IDX files": "empty_dir",
        "a missing .npz": "missing.npz",
    }


FLAGS = [
    ("k below 1", ["--k=0"]), ("k of 1", ["--k=1"]), ("k not a number", ["--k=ten"]),
    ("density above 1", ["--densities=0.5,1.5"]), ("density 0", ["--densities=0"]),
    ("spawn epoch beyond the schedule", ["--spawn_epochs=0,200"]),
    ("k-values above k", ["--k=4", "--k_values=2,8"]), ("unknown preset", ["--preset=fast"]),
    ("depth not 6n+2", ["--model_depth=19"]), ("zero epochs", ["--epochs=0"]),
    ("negative batch size", ["--batch_size=-1"]), ("learning rate 0", ["--lr=0"]),
    ("momentum 1.5", ["--momentum=1.5"]), ("unknown composition", ["--compose=xor"]),
    ("unknown strategy", ["--strategy=pmap"]),
    ("zero iterations per compiled call", ["--steps_per_call=0"]), ("one independent init", ["--independent_inits=1"]),
    ("retrain spawn point not a spawn point", ["--retrain_spawn_epochs=3"]),
    ("boolean flag not a boolean", ["--augment=maybe"]),
    ("no baseline siblings", ["--baseline_siblings=0"]), ("zero-image subset", ["--train_subset=0"]),
    ("LR drop after the end", ["--lr_drop_epochs=500"]), ("unknown flag", ["--kk=3"]),
    ("unknown TFDS name", ["--dataset=cifar11"]),
    ("more LMC pairs than siblings allow", ["--k=4", "--lmc_pairs=3"]),
    ("IMP pruning everything per level", ["--imp_levels=3", "--imp_rate=1"]),
    ("IMP rewind point not a spawn point", ["--imp_levels=3", "--imp_rewind_epoch=3"]),
    ("unknown random baseline", ["--random_baselines=random,shuffled"]),
    ("a density that keeps no weight of the model", ["--densities=0.5,0.00001"]),
    ("IMP levels past every weight", ["--imp_levels=60"]),
]


def table_rows(tmp_path, capsys):
    rows = []
    cases = list(FLAGS) + [(what, [f"--dataset={tmp_path / name}"])
                           for what, name in bad_files(tmp_path).items()]
    for what, argv in cases:
        try:
            status = cli.main(["--preset=smoke", f"--workdir={tmp_path / 'runs'}", "--no_progress",
                               *argv])
        except SystemExit as e:
            status = e.code
        err = capsys.readouterr().err.strip()
        first = err.splitlines()[0] if err else ""
        rows.append((what, " ".join(argv).replace(str(tmp_path), "<tmp>"), status,
                     first.replace(str(tmp_path), "<tmp>")))
    return rows


def render(rows) -> str:
    lines = ["| bad input | flags | exit | message (first line) |", "|---|---|---|---|"]
    for what, argv, status, msg in rows:
        lines.append(f"| {what} | `{argv}` | {status} | {msg.replace('|', '/')} |")
    return "\n".join(lines)


def test_every_bad_input_fails_fast_with_a_one_line_message(tmp_path, capsys):
    rows = table_rows(tmp_path, capsys)
    assert len(rows) >= 20
    for what, argv, status, msg in rows:
        assert status == 2, (what, status, msg)
        assert msg.startswith("error: ") and len(msg) > 20, (what, msg)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.npz"))
    table = render(rows)
    notes = open(NOTES).read()
    block = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), notes, re.S)
    if os.environ.get("JAXLOTTERY_UPDATE_NOTES") == "1":
        new = f"{BEGIN}\n{table}\n{END}"
        notes = notes.replace(block.group(0), new) if block else notes + "\n" + new + "\n"
        with open(NOTES, "w") as f:
            f.write(notes)
        return
    assert block is not None, "BUILD_NOTES.md has no bad-input table; run with JAXLOTTERY_UPDATE_NOTES=1"
    assert block.group(1) == table, "the bad-input table in BUILD_NOTES.md is out of date:\n" + table
