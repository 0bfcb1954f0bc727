"""The sibling axis over 8 virtual CPU devices: same per-sibling results as one device.

XLA's device count is fixed when JAX starts, so each check runs in a subprocess with
`--xla_force_host_platform_device_count=8`, training sharded and unsharded in that process.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxlottery import sharding, stacks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jaxlottery import data, masks, models, sharding, siblings
    from jaxlottery.train import Recipe

    k, masked = int(sys.argv[1]), sys.argv[2] == "masked"
    assert jax.device_count() == 8, jax.devices()
    d = data.to_device(data.synthetic(num_train=96, num_test=32, image_shape=(16, 16, 3), seed=3))
    v = models.init(jax.random.key(0), "cifar_resnet_8_4", image_shape=(16, 16, 3))
    r = Recipe(batch_size=32, epochs=2, lr_drop_epochs=(1,))
    keys = jax.random.split(jax.random.key(11), k)
    ms = masks.stack([masks.magnitude_prune(v["params"], 0.2 + 0.1 * i) for i in range(k)]) \\
        if masked else None
    model = models.create("cifar_resnet_8_4")
    runs = {}
    for name, mesh in (("one_device", None), ("sharded", sharding.sibling_mesh())):
        states, hist = siblings.train(siblings.spawn(v, k, r), keys, d, model, r, until=4, ms=ms,
                                      strategy="loop", mesh=mesh)
        runs[name] = (jax.device_get(states), hist)
    a, b = runs["one_device"][0], runs["sharded"][0]
    diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    print(json.dumps({"k": k, "members": int(b.step.shape[0]), "max_diff": max(diffs),
                      "loss": [runs[n][1][-1]["train_loss"] for n in runs],
                      "test": [runs[n][1][-1]["test_accuracy"] for n in runs]}))
""")


def run_check(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env.pop("JAX_DISABLE_MOST_OPTIMIZATIONS", None)
    out = subprocess.run([sys.executable, "-c", CHECK, *map(str, args)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("k,masked", [(8, "masked"), (5, "dense")])
def test_sharded_siblings_equal_the_single_device_run(k, masked):
    res = run_check(k, masked)
    assert res["members"] == k  # padding (5 -> 8) is dropped
    assert res["max_diff"] < 1e-4, res
    np.testing.assert_allclose(res["loss"][0], res["loss"][1], rtol=1e-5)
    assert res["test"][0] == res["test"][1]


def test_padding_and_unpadding():
    mesh = sharding.sibling_mesh(jax.devices()[:1])
    assert sharding.padded_size(5, mesh) == 5
    x = {"a": np.arange(10).reshape(5, 2), "b": None}
    padded = stacks.pad(x, 8)
    assert padded["a"].shape == (8, 2) and padded["b"] is None
    np.testing.assert_array_equal(padded["a"][5:], np.repeat(x["a"][-1:], 3, axis=0))
    np.testing.assert_array_equal(stacks.unpad(padded, 5)["a"], x["a"])


MULTI = textwrap.dedent("""
    import json, os, sys
    import jax
    from jaxlottery import checkpoint, data, models, sharding, siblings
    from jaxlottery.train import Recipe

    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if pid >= 0:
        assert sharding.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    k = 4
    d = data.to_device(data.synthetic(num_train=96, num_test=32, image_shape=(16, 16, 3), seed=3))
    v = models.init(jax.random.key(0), "cifar_resnet_8_4", image_shape=(16, 16, 3))
    r = Recipe(batch_size=32, epochs=2, lr_drop_epochs=(1,))
    keys = jax.random.split(jax.random.key(11), k)
    ckpts = checkpoint.Checkpoints(os.path.join(out, "ckpt"))
    save = lambda epoch, st, rec: ckpts.save(4 * (epoch + 1), st, {"epoch": epoch + 1})
    states, hist = siblings.train(siblings.spawn(v, k, r), keys, d,
                                  models.create("cifar_resnet_8_4"), r, until=4, strategy="loop", mesh=sharding.sibling_mesh(),
                                  on_epoch=save)
    ckpts.close()
    host = sharding.gather(states)
    if jax.process_index() == 0:
        checkpoint.save_arrays(os.path.join(out, "final.npz"), host)
        json.dump({"processes": jax.process_count(), "devices": jax.device_count(),
                   "loss": hist[-1]["train_loss"]}, open(os.path.join(out, "run.json"), "w"))
""")


@pytest.mark.slow
def test_two_processes_train_like_one_and_their_checkpoint_restores_in_one(tmp_path):
    import socket

    from jaxlottery import checkpoint, models, siblings
    from jaxlottery.train import Recipe

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env.pop("JAX_DISABLE_MOST_OPTIMIZATIONS", None)
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", MULTI, str(i), str(port), str(two)], env=env,
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    single = subprocess.run([sys.executable, "-c", MULTI, "-1", "0", str(one)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    runs = {name: json.load(open(p / "run.json")) for name, p in (("two", two), ("one", one))}
    assert (runs["two"]["processes"], runs["two"]["devices"]) == (2, 4)
    assert (runs["one"]["processes"], runs["one"]["devices"]) == (1, 2)
    np.testing.assert_allclose(runs["two"]["loss"], runs["one"]["loss"], rtol=1e-5)
    v = models.init(jax.random.key(0), "cifar_resnet_8_4", image_shape=(16, 16, 3))
    like = siblings.spawn(v, 4, Recipe(batch_size=32, epochs=2, lr_drop_epochs=(1,)))
    a = checkpoint.load_arrays(str(two / "final.npz"), like)
    b = checkpoint.load_arrays(str(one / "final.npz"), like)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # The checkpoint written by two processes restores in this single process.
    restored, meta = checkpoint.Checkpoints(str(two / "ckpt")).restore(like)
    assert meta == {"epoch": 2} and int(restored.step[0]) == 4
    for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(a)):
        np.testing.assert_allclose(x, y, rtol=1e-6)


def test_initialize_is_a_no_op_for_one_process(monkeypatch):
    for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES",
                "JAXLOTTERY_COORDINATOR"):
        monkeypatch.delenv(var, raising=False)
    assert sharding._cluster_size() == 1 and sharding.initialize() is False
    monkeypatch.setenv("SLURM_NTASKS", "4")  # an salloc or sbatch shell: one process
    assert sharding._cluster_size() == 1 and sharding.launch() == (None, None, None)
    monkeypatch.setenv("SLURM_PROCID", "0")  # started by srun: one of 4
    assert sharding._cluster_size() == 4
    monkeypatch.delenv("SLURM_NTASKS")
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t0,t1,t2,t3")
    assert sharding._cluster_size() == 4
