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
