"""The networks by name: ResNet-20's exact sizes, OpenLTH init statistics, forward passes, and
the contract every registered family keeps (built by name, prunable counts, siblings in one
program equal solo runs, pruned weights stay 0)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlottery import config, data, masks, models, siblings, stacks, train
from jaxlottery.train import Recipe


@pytest.fixture(scope="module")
def resnet20():
    return models.init(jax.random.key(0))


@pytest.mark.slow
def test_resnet20_parameter_counts(resnet20):
    params = resnet20["params"]
    assert sum(x.size for x in jax.tree.leaves(params)) == 272_474
    kept, total = masks.count(masks.ones_like(params))
    assert total == 270_896 and int(kept) == total


@pytest.mark.slow
def test_resnet20_per_layer_prunable_sizes(resnet20):
    sizes = masks.layer_sizes(masks.ones_like(resnet20["params"]))
    expected = {"stem_conv/kernel": 432, "dense/kernel": 640,
                "stage2_block0/shortcut_conv/kernel": 512,
                "stage3_block0/shortcut_conv/kernel": 2048,
                "stage2_block0/conv1/kernel": 4608, "stage3_block0/conv1/kernel": 18432}
    for b in range(3):
        for c in (1, 2):
            expected[f"stage1_block{b}/conv{c}/kernel"] = 2304
            if (b, c) != (0, 1):
                expected[f"stage2_block{b}/conv{c}/kernel"] = 9216
                expected[f"stage3_block{b}/conv{c}/kernel"] = 36864
    assert sizes == expected


@pytest.mark.slow
def test_kernels_are_untruncated_kaiming_normal(resnet20):
    params = resnet20["params"]
    for path, shape in [("stage3_block1/conv1", (3, 3, 64, 64)), ("stem_conv", (3, 3, 3, 16))]:
        node = params
        for key in path.split("/"):
            node = node[key]
        w = np.asarray(node["kernel"])
        assert w.shape == shape
        std = np.sqrt(2.0 / np.prod(shape[:-1]))
        n = w.size
        assert abs(w.mean()) < 4 * std / np.sqrt(n)
        assert w.std() == pytest.approx(std, rel=6 / np.sqrt(n) + 0.02)
    # Untruncated: about 4.55% of a normal's mass lies beyond 2 std (a truncated normal has none).
    w = np.asarray(params["stage3_block1"]["conv1"]["kernel"])
    beyond = np.mean(np.abs(w) > 2 * np.sqrt(2.0 / 576))
    assert 0.040 < beyond < 0.051
    dense = np.asarray(params["dense"]["kernel"])
    assert dense.std() == pytest.approx(np.sqrt(2.0 / 64), rel=0.15)


@pytest.mark.slow
def test_batchnorm_and_bias_init(resnet20):
    params = resnet20["params"]
    scales = np.concatenate([np.asarray(x).ravel() for p, x in
                             jax.tree_util.tree_leaves_with_path(params)
                             if masks.path_str(p).endswith("scale")])
    # stem 16 + stage1 6 x 16 + stage2 6 x 32 + 32 (shortcut) + stage3 6 x 64 + 64 (shortcut)
    assert scales.size == 784
    assert np.all(scales >= 0) and np.all(scales < 1)
    assert scales.mean() == pytest.approx(0.5, abs=0.05)
    bn_biases = [np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(params)
                 if "bn" in masks.path_str(p) and masks.path_str(p).endswith("bias")]
    assert all(np.all(b == 0) for b in bn_biases)
    bias = np.asarray(params["dense"]["bias"])
    assert bias.shape == (10,) and np.all(np.abs(bias) < 1 / 8) and np.any(bias != 0)
    stats = resnet20["batch_stats"]
    assert np.all(np.asarray(stats["stem_bn"]["mean"]) == 0)
    assert np.all(np.asarray(stats["stem_bn"]["var"]) == 1)


@pytest.mark.slow
def test_resnet20_forward_shapes_and_train_mode_updates_stats(resnet20):
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    logits = models.apply(resnet20, x)
    assert logits.shape == (4, 10) and bool(jnp.all(jnp.isfinite(logits)))
    logits, stats = models.apply(resnet20, x, train=True)
    assert logits.shape == (4, 10)
    old, new = resnet20["batch_stats"]["stem_bn"]["mean"], stats["stem_bn"]["mean"]
    # Flax momentum 0.9: new running mean = 0.9 * old + 0.1 * batch mean.
    assert not np.allclose(old, new)
    assert jax.tree.structure(stats) == jax.tree.structure(resnet20["batch_stats"])


@pytest.mark.slow
def test_batchnorm_running_average_momentum():
    v = models.init(jax.random.key(0), "cifar_resnet_8_4", image_shape=(8, 8, 3))
    x = jax.random.normal(jax.random.key(1), (16, 8, 8, 3)) * 2.0 + 3.0
    _, stats = models.apply(v, x, name="cifar_resnet_8_4", train=True)
    w = np.asarray(v["params"]["stem_conv"]["kernel"])
    y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(stats["stem_bn"]["mean"], 0.1 * np.asarray(y).mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("depth,width,classes,shape", [
    (8, 4, 10, (32, 32, 3)), pytest.param(14, 8, 100, (28, 28, 1), marks=pytest.mark.slow)])
def test_small_family_members(depth, width, classes, shape):
    name = f"cifar_resnet_{depth}_{width}"
    v = models.init(jax.random.key(0), name, num_classes=classes, image_shape=shape)
    out = models.apply(v, jnp.zeros((2, *shape)), name=name, num_classes=classes)
    assert out.shape == (2, classes)
    blocks = [k for k in v["params"] if k.startswith("stage")]
    assert len(blocks) == 3 * (depth - 2) // 6
    assert v["params"]["stage3_block0"]["conv2"]["kernel"].shape == (3, 3, 4 * width, 4 * width)


@pytest.mark.parametrize("depth", [7, 9, 2, 0])
def test_bad_depth_is_rejected(depth):
    with pytest.raises(ValueError, match="depth"):
        models.init(jax.random.key(0), f"cifar_resnet_{depth}")


def test_same_key_same_init_different_key_different():
    a = models.init(jax.random.key(3), "cifar_resnet_8_4")
    b = models.init(jax.random.key(3), "cifar_resnet_8_4")
    c = models.init(jax.random.key(4), "cifar_resnet_8_4")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a["params"]["stem_conv"]["kernel"], c["params"]["stem_conv"]["kernel"])


def test_bfloat16_compute_keeps_everything_stored_in_float32():
    """--compute_dtype=bfloat16: the arithmetic rounds to bf16 (logits differ from f32 by about
    bf16's precision), but the initialization, the logits handed to the loss, the BN statistics
    and the gradients (so the weights and momentum) stay float32."""
    v = models.init(jax.random.key(0), "cifar_resnet_8_4", image_shape=(16, 16, 3))
    x = jax.random.normal(jax.random.key(1), (8, 16, 16, 3))
    f32, bf16 = models.create("cifar_resnet_8_4"), models.create("cifar_resnet_8_4",
                                                               compute_dtype="bfloat16")
    assert bf16.init(jax.random.key(0), x[:1])["params"]["stem_conv"]["kernel"].dtype == jnp.float32
    a, b = jax.jit(f32.apply)(v, x), jax.jit(bf16.apply)(v, x)
    assert b.dtype == jnp.float32 and not np.array_equal(a, b)
    np.testing.assert_allclose(a, b, atol=0.1 * float(np.max(np.abs(a))))
    (_, stats), grads = jax.jit(jax.value_and_grad(
        lambda p: (lambda out: (jnp.sum(out[0]), out[1]))(bf16.apply(
            {"params": p, "batch_stats": v["batch_stats"]}, x, train=True,
            mutable=["batch_stats"])), has_aux=True))(v["params"])
    assert {x.dtype for x in jax.tree.leaves(stats)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    with pytest.raises(ValueError, match="compute_dtype"):
        models.create("cifar_resnet_8_4", compute_dtype="float16")


# --- The contract every registered family keeps (toy members, fast tier) -----------------

FAMILY_TOYS = sorted(f.toy for f in models.FAMILIES.values())


@pytest.mark.parametrize("name", FAMILY_TOYS)
@pytest.mark.parametrize("classes,shape", [(10, (32, 32, 3)), (7, (28, 28, 1))])
def test_every_family_builds_by_name_with_its_prunable_rule(name, classes, shape):
    """Shapes by eval_shape (nothing computed): logits per class, float32 parameters, a mask of
    the family's rule covering exactly `prunable_weights` weights, and a description."""
    model = models.get(name)
    assert model.name == name and model.description and models.get(name) is model
    v = jax.eval_shape(lambda: models.init(jax.random.key(0), name, classes, shape))
    out = jax.eval_shape(lambda v: models.create(name, classes).apply(v, jnp.zeros((2, *shape))), v)
    assert out.shape == (2, classes) and out.dtype == jnp.float32
    assert {x.dtype for x in jax.tree.leaves(v)} == {jnp.dtype(jnp.float32)}
    rule = masks.prunable(v["params"], model.prunable)
    n = sum(int(np.prod(x.shape)) for x, p in zip(jax.tree.leaves(v["params"]),
                                                  jax.tree.leaves(rule)) if p)
    assert n == model.prunable_weights(classes, shape) > 0
    assert any(p for p in jax.tree.leaves(rule)) and not all(jax.tree.leaves(rule))
    # Connectivity recomputes BN statistics by cloning the module with momentum 0.
    assert models.create(name).clone(bn_momentum=0.0).bn_momentum == 0.0


@pytest.mark.parametrize("name,prunable", [
    # ResNet-20 by hand: stem 3*3*3*16, three stages of three blocks of two 3x3 convs,
    # two 1x1 projections, the 64 x 10 head.
    ("cifar_resnet_20", 432 + 9 * (16 * 16 * 6 + 16 * 32 + 32 * 32 * 5 + 32 * 64 + 64 * 64 * 5)
     + 16 * 32 + 32 * 64 + 640),
    ("cifar_resnet_56", 432 + 9 * (16 * 16 * 18 + 16 * 32 + 32 * 32 * 17 + 32 * 64
                                   + 64 * 64 * 17) + 16 * 32 + 32 * 64 + 640),
    # VGG-16: 3x3 convs 3-64-64 | 128 128 | 256 x3 | 512 x3 | 512 x3, then 512 x 10.
    ("cifar_vgg_16", 9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 2 * 256 * 256
                          + 256 * 512 + 5 * 512 * 512) + 5120),
    ("cifar_vgg_16_8", 9 * (3 * 8 + 8 * 8 + 8 * 16 + 16 * 16 + 16 * 32 + 2 * 32 * 32 + 32 * 64
                            + 5 * 64 * 64) + 640),
    # WRN-16-8: stem 3->16, stages of two blocks at 128, 256, 512 with 1x1 projections.
    ("wrn_16_8", 9 * (3 * 16 + 16 * 128 + 128 * 128 * 3 + 128 * 256 + 256 * 256 * 3
                      + 256 * 512 + 512 * 512 * 3) + 16 * 128 + 128 * 256 + 256 * 512 + 5120),
    # LeNet-300-100 (the lottery-ticket paper's 266k weights): 784-300-100-10 on MNIST's images.
    ("mnist_lenet_300_100", 784 * 300 + 300 * 100 + 100 * 10),
    # Conv-4: 3x3 convs 3-64-64 | 128-128, two pools leave 8x8x128 for dense 256-256-10.
    ("cifar_conv_4", 9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128) + 8 * 8 * 128 * 256
     + 256 * 256 + 2560),
])
def test_prunable_counts_by_hand(name, prunable):
    shape = (28, 28, 1) if name.startswith("mnist") else (32, 32, 3)
    assert models.get(name).prunable_weights(10, shape) == prunable


def test_the_paper_network_is_the_default_and_resnet20_counts_270896():
    assert config.Config().model == "cifar_resnet_20"
    assert models.get("cifar_resnet_20").prunable_weights() == 270_896
    assert models.get("cifar_resnet_20").description == "ResNet-20 width 16"


@pytest.mark.parametrize("name,match", [
    ("resnet50", "unknown model 'resnet50'; models are named .*cifar_resnet_<depth>"),
    ("cifar_resnet_19", "6n \\+ 2"), ("cifar_resnet_20_0", "width"), ("cifar_vgg_12", "depth"),
    ("cifar_vgg_16_12", "multiple of 8"), ("wrn_12_8", "6n \\+ 4"), ("wrn_16_0", "k must"),
    ("cifar_resnet_20_", "unknown model"), ("CIFAR_RESNET_20", "unknown model"),
    ("mnist_lenet_300_0", "positive integers"), ("mnist_lenet_", "unknown model"),
    ("cifar_conv_3", "2, 4 or 6"),
    (20, "named by a string"), (["cifar_resnet_20"], "named by a string")])
def test_names_that_name_no_network_are_refused(name, match):
    with pytest.raises(ValueError, match=match):
        models.get(name)


@pytest.fixture(scope="module")
def toy_data():
    return data.to_device(data.synthetic(num_train=64, num_test=16, image_shape=(16, 16, 3),
                                         seed=5))


@pytest.mark.parametrize("name", FAMILY_TOYS)
def test_every_family_keeps_pruned_weights_exactly_zero_through_a_masked_step(name, toy_data):
    model, r = models.create(name), Recipe(batch_size=16, epochs=1, lr_drop_epochs=())
    v = models.init(jax.random.key(0), name, image_shape=(16, 16, 3))
    m = masks.magnitude_prune(v["params"], 0.2, rule=models.get(name).prunable)
    masked, _ = siblings.train(siblings.spawn(v, 1, r), jax.random.key(1)[None], toy_data, model,
                               r, until=1, ms=masks.stack([m]), evaluate=False)
    params = train.variables(stacks.index(masked, 0))["params"]
    pruned = jax.tree.map(lambda keep, w: np.zeros(0) if keep is None else
                          np.asarray(w)[~np.asarray(keep)], m, params, is_leaf=masks.is_none)
    assert all(bool(np.all(x == 0)) for x in jax.tree.leaves(pruned))
    assert sum(x.size for x in jax.tree.leaves(pruned)) > 0
    kept = jax.tree.map(lambda keep, w0, w: None if keep is None else
                        np.asarray(w)[np.asarray(keep)] - np.asarray(w0)[np.asarray(keep)],
                        m, v["params"], params, is_leaf=masks.is_none)
    assert any(bool(np.any(x != 0)) for x in jax.tree.leaves(kept))  # the kept ones trained


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILY_TOYS)
def test_every_family_trains_as_siblings_like_solo_runs(name, toy_data):
    """Two iterations of two siblings in one vmapped program equal each sibling trained alone
    with its key (BN statistics included); slow: three programs per family."""
    model, r = models.create(name), Recipe(batch_size=16, epochs=1, lr_drop_epochs=())
    v = models.init(jax.random.key(0), name, image_shape=(16, 16, 3))
    keys = jax.random.split(jax.random.key(1), 2)
    together, _ = siblings.train(siblings.spawn(v, 2, r), keys, toy_data, model, r, until=2,
                                 strategy="vmap", evaluate=False)
    for i in range(2):
        alone, _ = siblings.train(siblings.spawn(v, 1, r), keys[i:i + 1], toy_data, model, r,
                                  until=2, strategy="separate", evaluate=False)
        for a, b in zip(jax.tree.leaves(stacks.index(together, i)),
                        jax.tree.leaves(stacks.index(alone, 0))):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert siblings.member_bytes(model, r, 64, (16, 16, 3)) > 0  # the memory check (no BN too)
