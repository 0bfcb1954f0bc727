"""Checkpoints: a save returns while orbax writes in the background, and reads back exactly."""

import jax.numpy as jnp
import numpy as np

from jaxlottery import checkpoint


def test_an_asynchronous_save_reads_back_exactly_and_keeps_its_history(tmp_path):
    state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray([4, 4], jnp.int32)}
    history = [{"epoch": 1}]
    ckpts = checkpoint.Checkpoints(str(tmp_path / "ckpt"))
    ckpts.save(4, state, {"history": history})
    history.append({"epoch": 2})  # the caller goes on while the write runs
    state = {k: v + 1 for k, v in state.items()}  # ... and its arrays change
    assert ckpts.latest_step() == 4  # waits for the write
    restored, meta = ckpts.restore(state)
    np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3))
    assert meta == {"history": [{"epoch": 1}]}
    ckpts.close()


def test_unreadable_result_files_are_set_aside(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"a": ')
    logs = []
    assert not checkpoint.readable(str(path), logs.append)
    assert (tmp_path / "x.json.corrupt").exists() and "unreadable" in logs[0]


def test_result_files_are_standard_json_with_null_for_what_is_not_computable(tmp_path):
    path = str(tmp_path / "r.json")
    checkpoint.write_json(path, {"iou": float("nan"), "a": np.arange(2), "b": (np.float32(0.5),),
                                 "c": jnp.asarray(3), "d": [float("inf"), None, True, "x"]})
    text = open(path).read()
    assert "NaN" not in text and "Infinity" not in text
    assert checkpoint.read_json(path) == {"iou": None, "a": [0, 1], "b": [0.5], "c": 3,
                                          "d": [None, None, True, "x"]}
