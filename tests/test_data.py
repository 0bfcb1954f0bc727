"""Tests for jaxlottery.data. Offline: TFDS is driven by `tfds.testing.mock_data`, a tiny local
builder, or a patched downloader; nothing here touches the network or needs TensorFlow."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlottery import data, datasets

tfds = pytest.importorskip("tensorflow_datasets")
PIL_Image = pytest.importorskip("PIL.Image")


def _png(image: np.ndarray) -> bytes:
    """Encode a uint8 HxWxC image as PNG with pillow (TFDS would need TensorFlow for this)."""
    buf = io.BytesIO()
    PIL_Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


class JaxlotteryTinyImages(tfds.core.GeneratorBasedBuilder):
    """A 6x5 grayscale TFDS dataset made on the spot: image i is all pixels i, label i % 3.

    Its examples are given as PNG bytes, so preparing it needs no TensorFlow and no network:
    it runs the real `download_and_prepare` -> array_record -> data source path of `load_tfds`.
    """

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(6, 5, 1)),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 12), "test": self._generate_examples(12, 18)}

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield i, {"image": _png(np.full((6, 5, 1), i, np.uint8)), "label": i % 3}


# ----------------------------------------------------------------------------- TFDS


@pytest.mark.parametrize(
    "name, shape", [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1))]
)
def test_load_tfds_mocked(tmp_path, name, shape):
    # USE_CODE: fake examples from the builder's feature spec, no metadata files, no network.
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = datasets.load_tfds(name, str(tmp_path))
    assert ds.name == name and not ds.synthetic
    assert ds.image_shape == shape
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.shape == (6, *shape) and x.dtype == np.uint8
        assert y.shape == (6,) and y.dtype == np.int32
        assert 0 <= y.min() and y.max() < ds.num_classes
    assert ds.num_classes == 10
    assert len(ds.mean) == len(ds.std) == shape[-1]
    if shape[-1] == 3:
        assert (ds.mean, ds.std) == (data.IMAGENET_MEAN, data.IMAGENET_STD)


@pytest.mark.parametrize(
    "name, match", [("imdb_reviews", "need 'image' and 'label'"), ("imagenette", "fixed shape")]
)
def test_load_tfds_rejects_non_image_classification(tmp_path, name, match):
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(data.DataFormatError, match=match):
            datasets.load_tfds(name, str(tmp_path))


def test_load_tfds_prepares_and_reads_array_record(tmp_path):
    ds = datasets.load_tfds("jaxlottery_tiny_images", str(tmp_path))  # download=True: prepares it
    assert list((tmp_path / "jaxlottery_tiny_images" / "1.0.0").glob("*.array_record-*"))
    again = datasets.load_tfds("jaxlottery_tiny_images", str(tmp_path), download=False)
    for d in (ds, again):
        assert d.num_classes == 3 and d.image_shape == (6, 5, 1)
        for x, y, ids in ((d.x_train, d.y_train, range(12)), (d.x_test, d.y_test, range(12, 18))):
            assert x.dtype == np.uint8 and y.dtype == np.int32
            value = x[:, 0, 0, 0]
            assert (x == value[:, None, None, None]).all()
            assert sorted(value) == list(ids)  # every example once (TFDS shuffles the order)
            np.testing.assert_array_equal(y, value % 3)
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_load_tfds_tfrecord_dir_is_unavailable(tmp_path):
    datasets.load_tfds("jaxlottery_tiny_images", str(tmp_path))
    info = tmp_path / "jaxlottery_tiny_images" / "1.0.0" / "dataset_info.json"
    meta = json.loads(info.read_text())
    meta["fileFormat"] = "tfrecord"  # what `tfds.load` writes by default
    info.write_text(json.dumps(meta))
    with pytest.raises(data.DatasetUnavailableError, match="as tfrecord.*array_record"):
        datasets.load_tfds("jaxlottery_tiny_images", str(tmp_path), download=False)


def test_missing_dataset_without_download(tmp_path):
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load("mnist", str(tmp_path), download=False)
    message = str(err.value)
    assert "download=False" in message and str(tmp_path) in message
    assert "data_dir" in message and ".npz" in message and "tensorflow" in message


def test_missing_dataset_download_fails(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network (simulated)")

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", offline)
    with pytest.raises(data.DatasetUnavailableError, match="no network") as err:
        datasets.load_tfds("cifar10", str(tmp_path))
    assert isinstance(err.value.__cause__, ConnectionError)


def test_npz_and_synthetic_need_no_tfds(tmp_path):
    path = tmp_path / "d.npz"
    code = (
        "import sys; sys.modules['tensorflow_datasets'] = None\n"
        "import jaxlottery.data as d, jaxlottery.datasets as ds\n"
        f"ds.save_npz({str(path)!r}, d.load('synthetic'))\n"
        f"assert d.load({str(path)!r}).num_classes == 10\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- npz


def _small(num_classes=4, shape=(5, 4, 3)) -> data.Dataset:
    return data.synthetic(20, 8, shape, num_classes, seed=1)


def test_npz_round_trip(tmp_path):
    ds = _small()
    path = str(tmp_path / "small.npz")
    datasets.save_npz(path, ds)
    datasets.save_npz(path, ds)  # overwriting is fine
    assert os.listdir(tmp_path) == ["small.npz"]  # no temporary files left behind
    back = data.load(path)
    assert back.name == path and not back.synthetic
    for field in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(ds, field), getattr(back, field)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert (back.num_classes, back.mean, back.std) == (ds.num_classes, ds.mean, ds.std)


def test_npz_grayscale_and_keras_style_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "gray.npz")
    x_train = rng.integers(0, 256, (10, 4, 4), dtype=np.uint8)
    np.savez(
        path,
        x_train=x_train,
        y_train=np.array([[0], [1]] * 5, np.uint8),
        x_test=rng.integers(0, 256, (3, 4, 4), dtype=np.uint8),
        y_test=np.array([1, 0, 1], np.int64),
        num_classes=np.array(7),
    )
    ds = datasets.load_npz(path)
    assert ds.image_shape == (4, 4, 1) and ds.num_classes == 7
    assert ds.y_train.shape == (10,) and ds.y_train.dtype == np.int32
    scaled = x_train / 255.0
    np.testing.assert_allclose(ds.mean, [scaled.mean()], rtol=1e-12)
    np.testing.assert_allclose(ds.std, [scaled.std()], rtol=1e-12)


def _arrays() -> dict:
    return {
        "x_train": np.zeros((4, 3, 3, 3), np.uint8),
        "y_train": np.array([0, 1, 2, 1]),
        "x_test": np.zeros((2, 3, 3, 3), np.uint8),
        "y_test": np.array([0, 2]),
    }


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.pop("y_test"), r"missing arrays \['y_test'\]"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "x_train has dtype float32"),
        (lambda a: a.update(x_test=np.zeros((2, 9), np.uint8)), r"x_test has shape \(2, 9\)"),
        (lambda a: a.update(x_test=np.zeros((2, 4, 3, 3), np.uint8)), "x_test images are"),
        (lambda a: a.update(y_train=np.array([0, 1, -1, 1])), r"labels in \[-1, 1\]"),
        (lambda a: a.update(y_train=np.array([0.0, 1, 2, 1])), "expected integer"),
        (lambda a: a.update(y_test=np.array([0, 1, 2])), "x_test has 2 images but y_test has 3"),
        (lambda a: a.update(num_classes=np.array(2)), "above the largest label 2"),
        (lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]), "test split is empty"),
    ],
)
def test_bad_npz(tmp_path, change, match):
    arrays = _arrays()
    change(arrays)
    path = str(tmp_path / "bad.npz")
    np.savez(path, **arrays)
    with pytest.raises(data.DataFormatError, match=match) as err:
        data.load(path)
    assert str(err.value).startswith(path)


@pytest.mark.parametrize(
    "write, match",
    [
        (lambda p: open(p, "w").write("not a zip"), "not a readable .npz"),
        (lambda p: open(p, "wb").write(b"PK\x03\x04 truncated"), "not a readable .npz"),
        (lambda p: np.save(open(p, "wb"), np.zeros(3)), "single .npy array"),
    ],
)
def test_npz_not_an_archive(tmp_path, write, match):
    path = str(tmp_path / "junk.npz")
    write(path)
    with pytest.raises(data.DataFormatError, match=match):
        datasets.load_npz(path)


def test_npz_missing_file(tmp_path):
    with pytest.raises(data.DatasetUnavailableError, match="no such file"):
        data.load(str(tmp_path / "nope.npz"))


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_and_determinism():
    ds = data.synthetic(num_train=50, num_test=20, image_shape=(8, 6, 2), num_classes=5, seed=3)
    assert ds.name == "synthetic" and ds.synthetic and ds.num_classes == 5
    assert ds.x_train.shape == (50, 8, 6, 2) and ds.x_test.shape == (20, 8, 6, 2)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == ds.y_test.dtype == np.int32
    assert np.bincount(ds.y_train).tolist() == [10] * 5
    assert len(ds.mean) == 2
    same = data.synthetic(num_train=50, num_test=20, image_shape=(8, 6, 2), num_classes=5, seed=3)
    other = data.synthetic(num_train=50, num_test=20, image_shape=(8, 6, 2), num_classes=5, seed=4)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, field), getattr(same, field))
    assert not np.array_equal(ds.x_train, other.x_train)
    assert data.load("synthetic").x_train.shape == (2048, 32, 32, 3)


def test_synthetic_is_learnable_but_not_trivial():
    ds = data.synthetic(num_train=1000, num_test=500)
    x_train = ds.x_train.reshape(1000, -1) / 255.0
    x_test = ds.x_test.reshape(500, -1) / 255.0
    centroids = np.stack([x_train[ds.y_train == k].mean(0) for k in range(10)])
    distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = (distances.argmin(1) == ds.y_test).mean()
    assert 0.5 < accuracy < 0.98  # chance is 0.1
    # No single pixel gives the class away: nearest class mean on one pixel value.
    pixel = np.abs(x_test[:, :, None] - centroids.T[None]).argmin(-1)
    assert (pixel == ds.y_test[:, None]).mean(0).max() < 0.35


# ----------------------------------------------------------------------------- normalization


def test_normalization_rule():
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    assert data.normalization("cifar10", rgb) == (data.IMAGENET_MEAN, data.IMAGENET_STD)
    assert data.normalization("cifar100", rgb) == (data.IMAGENET_MEAN, data.IMAGENET_STD)
    assert data.normalization("svhn_cropped", rgb) == (data.IMAGENET_MEAN, data.IMAGENET_STD)
    two = np.random.default_rng(0).integers(0, 256, (7, 3, 5, 2), dtype=np.uint8)
    mean, std = data.normalization("whatever", two)
    np.testing.assert_allclose(mean, (two / 255.0).mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, (two / 255.0).std(axis=(0, 1, 2)), rtol=1e-12)
    with pytest.raises(ValueError, match="3 channels"):
        data.normalization("cifar10", two)


# ----------------------------------------------------------------------------- augmentation


def _candidates(image: np.ndarray, pad: int) -> list[np.ndarray]:
    """All 2 x (2 pad + 1)^2 flipped-or-not, shifted crops of the zero-padded image."""
    h, w, _ = image.shape
    out = []
    for flipped in (image, image[:, ::-1]):
        padded = np.pad(flipped, ((pad, pad), (pad, pad), (0, 0)))
        for i in range(2 * pad + 1):
            for j in range(2 * pad + 1):
                out.append(padded[i : i + h, j : j + w])
    return out


def _which(candidates: list[np.ndarray], crop: np.ndarray) -> list[int]:
    return [k for k, c in enumerate(candidates) if np.array_equal(c, crop)]


def test_augment_is_a_flip_and_padded_crop():
    images = np.random.default_rng(0).integers(1, 256, (6, 32, 32, 3), dtype=np.uint8)
    out = np.asarray(jax.jit(data.augment)(jax.random.key(0), jnp.asarray(images)))
    assert out.shape == images.shape and out.dtype == np.uint8
    for image, crop in zip(images, out):
        assert len(_which(_candidates(image, 4), crop)) == 1  # pixels >= 1: the match is unique


def test_augment_pad_zero_only_flips():
    images = np.random.default_rng(1).integers(0, 256, (16, 5, 7, 1), dtype=np.uint8)
    out = np.asarray(data.augment(jax.random.key(1), jnp.asarray(images), pad=0))
    flipped = [np.array_equal(o, i[:, ::-1]) for i, o in zip(images, out)]
    kept = [np.array_equal(o, i) for i, o in zip(images, out)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


@pytest.mark.slow
def test_augment_covers_all_flips_and_offsets_uniformly():
    pad, n = 2, 5000
    image = np.arange(1, 37, dtype=np.uint8).reshape(6, 6, 1)
    out = np.asarray(data.augment(jax.random.key(2), jnp.broadcast_to(image, (n, 6, 6, 1)), pad))
    candidates = _candidates(image, pad)
    counts = np.bincount([_which(candidates, crop)[0] for crop in out], minlength=50)
    assert counts.min() > 0.6 * n / 50 and counts.max() < 1.4 * n / 50


def test_augment_keys():
    images = jnp.asarray(np.random.default_rng(2).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8))
    a = data.augment(jax.random.key(5), images)
    np.testing.assert_array_equal(a, data.augment(jax.random.key(5), images))
    assert not np.array_equal(a, data.augment(jax.random.key(6), images))


def test_normalize():
    images = np.random.default_rng(3).integers(0, 256, (2, 3, 3, 3), dtype=np.uint8)
    out = jax.jit(data.normalize)(jnp.asarray(images), data.IMAGENET_MEAN, data.IMAGENET_STD)
    expected = (images / 255.0 - np.array(data.IMAGENET_MEAN)) / np.array(data.IMAGENET_STD)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_epoch_permutation():
    perm = jax.jit(data.epoch_permutation, static_argnums=1)(jax.random.key(0), 100)
    assert perm.dtype == jnp.int32 and perm.shape == (100,)
    assert sorted(perm.tolist()) == list(range(100))
    np.testing.assert_array_equal(perm, data.epoch_permutation(jax.random.key(0), 100))
    assert not np.array_equal(perm, data.epoch_permutation(jax.random.key(1), 100))


# ----------------------------------------------------------------------------- CIFAR archive


def _fake_cifar10_archive(path, n_per_batch=4):
    """A tarball laid out like cifar-10-python.tar.gz: pickled dicts of (n, 3072) uint8 rows."""
    import pickle
    import tarfile

    rng = np.random.default_rng(0)
    parts = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            x = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
            y = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
            parts[name] = (x, y)
            payload = pickle.dumps({b"batch_label": b"x", b"labels": y, b"data": x}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return parts


def test_cifar10_from_the_official_archive_layout(tmp_path, monkeypatch):
    served = tmp_path / "served" / "cifar-10-python.tar.gz"
    served.parent.mkdir()
    parts = _fake_cifar10_archive(served)
    md5 = datasets._md5(str(served))
    monkeypatch.setitem(datasets.CIFAR_ARCHIVES, "cifar10", (served.as_uri(), md5))
    root = tmp_path / "data"
    ds = data.load("cifar10", str(root))
    assert ds.name == "cifar10" and ds.num_classes == 10 and not ds.synthetic
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    x, y = parts["data_batch_2"]
    # Row layout: 1024 red, then green, then blue values, each row-major: NCHW -> NHWC.
    np.testing.assert_array_equal(ds.x_train[4:8], x.reshape(4, 3, 32, 32).transpose(0, 2, 3, 1))
    assert ds.y_train[4:8].tolist() == y
    assert ds.mean == data.IMAGENET_MEAN
    # Converted once: later loads read the cached .npz, even without the archive.
    (root / "cifar-10-python.tar.gz").unlink()
    again = data.load("cifar10", str(root), download=False)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    assert again.name == "cifar10"


def _serve_fake_cifar10(tmp_path, monkeypatch):
    served = tmp_path / "served" / "cifar-10-python.tar.gz"
    served.parent.mkdir()
    _fake_cifar10_archive(served)
    monkeypatch.setitem(datasets.CIFAR_ARCHIVES, "cifar10", (served.as_uri(), datasets._md5(str(served))))


def test_cifar10_prepared_by_tfds_is_used_when_readable_without_tensorflow(tmp_path, monkeypatch):
    """TFDS's copy (array_record, mocked) wins; the archive is not fetched."""
    monkeypatch.setitem(datasets.CIFAR_ARCHIVES, "cifar10", ("http://unused.invalid/x.tar.gz", "0" * 32))
    monkeypatch.setattr(datasets, "tfds_prepared", lambda name, data_dir: True)
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load("cifar10", str(tmp_path))
    assert ds.x_train.shape == (6, 32, 32, 3) and not (tmp_path / "jaxlottery").exists()


def test_cifar10_prepared_as_tfrecord_falls_back_to_the_archive_with_a_progress_bar(
        tmp_path, monkeypatch, capfd):
    """`tfds.load`'s default format needs TensorFlow: the official archive is read instead,
    downloaded into data_dir with a progress bar, never a refusal."""
    _serve_fake_cifar10(tmp_path, monkeypatch)
    monkeypatch.setattr(datasets, "tfds_prepared", lambda name, data_dir: True)

    def tfrecord(*args, **kwargs):  # what TFDS raises for a tfrecord folder without TensorFlow
        raise NotImplementedError("tfrecord needs TensorFlow")

    root = tmp_path / "data"
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        with monkeypatch.context() as mp:
            mp.setattr(tfds.core.DatasetBuilder, "as_data_source", tfrecord)
            with pytest.warns(UserWarning, match="is tfrecord, which needs TensorFlow; reading the "
                                                 "official archive instead"):
                ds = data.load("cifar10", str(root))
    assert ds.x_train.shape == (20, 32, 32, 3)
    assert (root / "cifar-10-python.tar.gz").is_file() and (root / "jaxlottery" / "cifar10.npz").is_file()
    assert "downloading cifar-10-python.tar.gz" in capfd.readouterr().err


def test_cifar10_archive_put_by_hand_and_checksum(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    _fake_cifar10_archive(archive)
    monkeypatch.setitem(datasets.CIFAR_ARCHIVES, "cifar10", ("http://unused.invalid/cifar-10-python.tar.gz",
                                                         "0" * 32))
    with pytest.raises(data.DataFormatError, match="MD5"):
        data.load("cifar10", str(tmp_path), download=False)
    monkeypatch.setitem(datasets.CIFAR_ARCHIVES, "cifar10", ("http://unused.invalid/cifar-10-python.tar.gz",
                                                         datasets._md5(str(archive))))
    assert data.load("cifar10", str(tmp_path), download=False).x_train.shape[0] == 20


def test_cifar10_unavailable_offline(tmp_path, monkeypatch):
    with pytest.raises(data.DatasetUnavailableError, match="cifar-10-python.tar.gz"):
        data.load("cifar10", str(tmp_path), download=False)

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    from jaxlottery import datasets, download

    waits = []  # the retries back off (recorded here instead of slept: 30 s of waiting)
    monkeypatch.setattr(datasets, "fetch", lambda *a, **k: download.fetch(
        *a, **k, sleep=waits.append))
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(data.DatasetUnavailableError, match="download failed"):
        data.load("cifar10", str(tmp_path))
    assert waits and waits == sorted(waits) and waits[-1] > waits[0]
    assert not list(tmp_path.glob("*.tar.gz")) and not list(tmp_path.glob(".tmp-*"))


def test_cifar_archive_refuses_foreign_pickles(tmp_path):
    import pickle
    import tarfile

    archive = tmp_path / "evil.tar.gz"
    payload = pickle.dumps({b"data": os.getcwd}, protocol=2)  # a callable, not an array
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        datasets._read_cifar_archive("cifar10", str(archive))


# ----------------------------------------------------------------------------- IDX folders


def _write_idx(path, array):
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_folder_loads_like_mnist(tmp_path):
    rng = np.random.default_rng(0)
    x_tr, x_te = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 256, (5, 28, 28))
    y_tr, y_te = rng.integers(0, 10, 12), rng.integers(0, 10, 5)
    for name, arr in zip(datasets.IDX_FILES, (x_tr, y_tr, x_te, y_te)):
        _write_idx(tmp_path / f"{name}.gz", arr)
    ds = data.load(str(tmp_path))
    assert ds.image_shape == (28, 28, 1) and ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train[..., 0], x_tr)
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert ds.num_classes == int(max(y_tr.max(), y_te.max())) + 1
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DatasetUnavailableError, match="t10k-labels"):
        data.load(str(tmp_path))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y_te[:3])
    with pytest.raises(data.DataFormatError, match="do not match"):
        data.load(str(tmp_path))
