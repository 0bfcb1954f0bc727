"""Where datasets come from: MNIST-format IDX folders, the official CIFAR archives, TensorFlow
Datasets' prepared data, and `.npz` files; each read into a `Dataset` (defined here, with its
errors and normalization statistics, and re-exported by `jaxlottery.data`) and checked (a
malformed source raises `DataFormatError`, a missing one `DatasetUnavailableError` saying how
to get it). `data.load` picks the reader from its argument; this module imports nothing of
`data`."""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile

import numpy as np

from jaxlottery.download import ChecksumMismatch, fetch, mirrors
from jaxlottery.files import atomic_open

IMAGENET_MEAN = (0.485, 0.456, 0.406)

IMAGENET_STD = (0.229, 0.224, 0.225)

_NAMED_STATS = {"cifar10": (IMAGENET_MEAN, IMAGENET_STD), "cifar100": (IMAGENET_MEAN, IMAGENET_STD)}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train and test splits in host memory: uint8 (N, H, W, C) images, int32 (N,) labels.

    `mean` and `std` are per-channel statistics of pixels scaled to [0, 1], for `normalize`.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    synthetic: bool = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.x_train.shape[1:])


class DatasetUnavailableError(RuntimeError):
    """The dataset is not on this machine and cannot be fetched; the message says how to get it."""


class DataFormatError(ValueError):
    """A file or dataset that is not a valid image-classification dataset; says what is wrong."""


def normalization(name: str, images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of pixels scaled to [0, 1], for `normalize`.

    The rule: CIFAR-10/100, and by default any 3-channel data, use the ImageNet statistics
    (the protocol's OpenLTH quirk, so runs on other colour data stay comparable); data with
    another channel count uses the exact mean and std of `images` (the training set).
    """
    channels = images.shape[-1]
    if name in _NAMED_STATS or channels == 3:
        mean, std = _NAMED_STATS.get(name, (IMAGENET_MEAN, IMAGENET_STD))
        if channels != len(mean):
            raise ValueError(f"{name!r} statistics are for {len(mean)} channels, got {channels}")
        return mean, std
    values = np.arange(256) / 255.0
    mean, std = [], []
    for ch in range(channels):  # exact, via the histogram: no float copy of the whole set
        counts = np.bincount(images[..., ch].ravel(), minlength=256) / images[..., ch].size
        m = float(counts @ values)
        mean.append(m)
        std.append(float(np.sqrt(max(counts @ values**2 - m * m, 0.0))))
    return tuple(mean), tuple(std)


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


def load_idx(directory: str) -> Dataset:
    """MNIST-format IDX files (optionally .gz) from a folder: MNIST, Fashion-MNIST, KMNIST.

    Debian's `dataset-fashion-mnist` package installs them in /usr/share/datasets/fashion-mnist,
    which makes real data available without network.
    """
    import gzip

    arrays = []
    for base in IDX_FILES:
        path = next((os.path.join(directory, base + ext) for ext in ("", ".gz")
                     if os.path.isfile(os.path.join(directory, base + ext))), None)
        if path is None:
            raise DatasetUnavailableError(f"{directory}: no {base}[.gz]; a dataset folder needs "
                                          f"the four MNIST-format files {list(IDX_FILES)}")
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
        if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 8:
            raise DataFormatError(f"{path}: not an unsigned-byte IDX file")
        ndim = raw[3]
        shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
        if body.size != int(np.prod(shape)):
            raise DataFormatError(f"{path}: header says {shape}, file holds {body.size} bytes")
        arrays.append(body.reshape(shape))
    x_train, y_train, x_test, y_test = arrays
    name = os.path.basename(os.path.normpath(directory))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataFormatError(f"{directory}: {split} images {x.shape} and labels {y.shape} "
                                  "do not match")
    x_train, x_test = x_train[..., None], x_test[..., None]
    mean, std = normalization(name, x_train)
    return Dataset(name, x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32),
                   int(max(y_train.max(), y_test.max())) + 1, mean, std)


CIFAR_ARCHIVES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e4002c42a8d85"),
}


def default_data_dir(data_dir: str | None = None) -> str:
    """`data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (TFDS's own default)."""
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR")
                              or "~/tensorflow_datasets")


def load_cifar(name: str, data_dir: str | None = None, download: bool = True) -> Dataset:
    """CIFAR-10 or CIFAR-100 from the official archive, without TensorFlow.

    Looks for `<data_dir>/jaxlottery/<name>.npz` (made by an earlier call), else for the
    archive in `<data_dir>` (downloaded here if `download`, or put there by hand), checks its
    MD5, converts it to that .npz once and loads it.
    """
    url, md5 = CIFAR_ARCHIVES[name]
    root = default_data_dir(data_dir)
    cached = os.path.join(root, "jaxlottery", f"{name}.npz")
    if os.path.isfile(cached):
        return dataclasses.replace(load_npz(cached), name=name)
    archive = os.path.join(root, os.path.basename(url))
    if not os.path.isfile(archive):
        if not download:
            raise _cifar_unavailable(name, archive, "the archive is not there and download=False")
        os.makedirs(root, exist_ok=True)
        try:  # resumable, retried, mirrors first ($JAXLOTTERY_DATA_MIRRORS), checked as it comes
            fetch(mirrors(url), archive, md5)
        except ChecksumMismatch as e:
            raise DataFormatError(str(e)) from None
        except Exception as e:  # no network, proxy, disk: all mean "cannot fetch it"
            raise _cifar_unavailable(name, archive, f"download failed: {type(e).__name__}: {e} "
                                     f"(what arrived is kept in {archive}.partial; the next "
                                     "run resumes it)")
    if _md5(archive) != md5:
        raise DataFormatError(f"{archive}: MD5 {_md5(archive)} is not that of the official "
                              f"{name} archive ({md5}); delete it and try again")
    ds = _read_cifar_archive(name, archive)
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    save_npz(cached, ds)
    return ds


def _md5(path: str) -> str:
    import hashlib

    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of numpy arrays, lists and bytes) and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        return super().find_class(module, name)


def _read_cifar_archive(name: str, archive: str) -> Dataset:
    """Parse the python-version CIFAR tarball into uint8 NHWC arrays."""
    import tarfile

    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    train_parts = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                   "data_batch_5") if name == "cifar10" else ("train",)
    test_parts = ("test_batch",) if name == "cifar10" else ("test",)
    batches = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if member.isfile() and base in train_parts + test_parts:
                batches[base] = _ArrayUnpickler(tar.extractfile(member), encoding="bytes").load()
    missing = [p for p in train_parts + test_parts if p not in batches]
    if missing:
        raise DataFormatError(f"{archive}: missing batches {missing}")

    def split(parts):
        x = np.concatenate([np.asarray(batches[p][b"data"], np.uint8) for p in parts])
        y = np.concatenate([np.asarray(batches[p][label_key], np.int32) for p in parts])
        return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y

    (x_train, y_train), (x_test, y_test) = split(train_parts), split(test_parts)
    mean, std = normalization(name, x_train)
    return Dataset(name, x_train, y_train, x_test, y_test, 10 if name == "cifar10" else 100,
                   mean, std)


def _cifar_unavailable(name: str, archive: str, reason: str) -> DatasetUnavailableError:
    url, _ = CIFAR_ARCHIVES[name]
    return DatasetUnavailableError(
        f"{name} is not available: {reason}.\n"
        f"To get it, download {url} on a machine with network access and put it at {archive} "
        f"(or pass its folder as --data_dir), or pass an .npz file (see jaxlottery.datasets.save_npz)."
    )


def _offline(host: str = "storage.googleapis.com") -> str | None:
    """Why nothing can be downloaded (the name of TFDS's download host does not resolve), or
    None when it resolves or the check itself cannot tell."""
    import socket

    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror:
        return f"there is no network here ({host}, where TFDS downloads from, does not resolve)"
    except OSError:
        return None
    return None


def _quiet_tfds() -> None:
    """TFDS logs through absl (e.g. "Variant folder ... has no dataset_info.json" for a
    half-written folder) and urllib3 retries; what matters reaches the user as our one error."""
    import logging

    for name in ("absl", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


class PreparedNeedsTensorFlow(DatasetUnavailableError):
    """TFDS prepared the dataset in a format only TensorFlow reads (tfrecord, `tfds.load`'s
    default): for CIFAR, `data.load` reads the official archive instead."""


def tfds_prepared(name: str, data_dir: str | None) -> bool:
    """Whether TFDS has `name` prepared in `data_dir` (False where tfds is not installed)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return False
    _quiet_tfds()
    return tfds.builder(name, data_dir=data_dir).is_prepared()


def load_tfds(name: str, data_dir: str | None = None, download: bool = True) -> Dataset:
    """Read the whole train and test splits of TFDS dataset `name` into numpy arrays.

    The dataset is read from `data_dir` (TFDS's default, `$TFDS_DATA_DIR` or
    ~/tensorflow_datasets, when None) in array_record format, without TensorFlow. If it is not
    prepared there and `download` is true, it is downloaded and prepared in that format first.
    Raises `DatasetUnavailableError` when it is not prepared and that is off or fails.
    """
    import tensorflow_datasets as tfds  # lazy: the npz and synthetic paths must not need it

    _quiet_tfds()
    try:
        builder = tfds.builder(name, data_dir=data_dir)  # file_format here rejects tfrecord dirs
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetUnavailableError(
            f"unknown dataset {name!r}: not 'synthetic', not a path ending in .npz, and not a "
            "TensorFlow Datasets name (e.g. cifar10, cifar100, mnist, fashion_mnist, svhn_cropped)"
        ) from None
    where = os.fspath(builder.data_dir)
    if not builder.is_prepared():
        if not download:
            raise _unavailable(name, where, "it is not prepared there and download=False")
        offline = _offline()
        if offline:  # before TFDS's downloader retries every file against a missing network
            raise _unavailable(name, where, f"it is not prepared there, and {offline}")
        try:
            builder.download_and_prepare(file_format="array_record")
        except Exception as e:  # network, missing TensorFlow, ...: all mean "cannot fetch it"
            reason = f"download/preparation failed: {type(e).__name__}: {e}"
            raise _unavailable(name, where, reason) from e
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise DataFormatError(
            f"TFDS dataset {name!r} has features {list(features)}, need 'image' and 'label'"
        )
    image, label = features["image"], features["label"]
    if None in image.shape or np.dtype(image.np_dtype) != np.uint8:
        raise DataFormatError(
            f"TFDS dataset {name!r}: images must have a fixed shape and dtype uint8, "
            f"got shape {image.shape} and dtype {image.np_dtype}"
        )
    try:
        train, test = builder.as_data_source(split=["train", "test"])
    except NotImplementedError as e:  # prepared earlier in tfrecord format
        reason = (
            f"it is prepared there as {builder.info.file_format.value}, which needs TensorFlow "
            "to read; prepare it again with file_format='array_record' in another data_dir"
        )
        error = _unavailable(name, where, reason)
        raise PreparedNeedsTensorFlow(str(error)) from e
    x_train, y_train = _read_split(train, image.shape)
    x_test, y_test = _read_split(test, image.shape)
    mean, std = normalization(name, x_train)
    return Dataset(name, x_train, y_train, x_test, y_test, label.num_classes, mean, std)


def _read_split(source, image_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Decode every example of a TFDS data source into preallocated uint8 / int32 arrays."""
    n = len(source)
    x = np.empty((n, *image_shape), np.uint8)
    y = np.empty((n,), np.int32)
    # One record at a time: `__getitems__` is faster on real array_record files (BUILD_NOTES.md),
    # but `tfds.testing.mock_data` does not support it.
    for i, example in enumerate(source):
        x[i] = example["image"]
        y[i] = example["label"]
    return x, y


def _unavailable(name: str, where: str, reason: str) -> DatasetUnavailableError:
    """The error for a TFDS dataset that is not here, with the ways to get it (two lines)."""
    return DatasetUnavailableError(
        f"TFDS dataset {name!r} is not available at {where}: {reason}.\n"
        "To get it, prepare it once where there is network and TensorFlow (pip install tensorflow"
        f" && python -c \"import jaxlottery.datasets as d; d.load_tfds('{name}', 'DIR')\") and "
        "pass DIR as --data_dir, or save it as an .npz file (jaxlottery.datasets.save_npz) and "
        "pass its path."
    )


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str) -> Dataset:
    """Read and validate a dataset from an .npz file (the format `save_npz` writes).

    Required arrays: `x_train`, `x_test` uint8 of shape (N, H, W, C), or (N, H, W) for grayscale
    (given C = 1); `y_train`, `y_test` integer of shape (N,) (or (N, 1)) in [0, num_classes).
    `num_classes` is the optional scalar array of that name, else max label + 1. Other arrays
    are ignored. Raises `DataFormatError` naming the file and the problem, and
    `DatasetUnavailableError` if there is no file.
    """
    if not os.path.isfile(path):
        raise DatasetUnavailableError(
            f"{path}: no such file. Write one with jaxlottery.datasets.save_npz, or pass a "
            "TFDS name or 'synthetic'."
        )
    try:
        archive = np.load(path, allow_pickle=False)
        if isinstance(archive, np.lib.npyio.NpzFile):
            with archive:
                arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataFormatError(f"{path}: not a readable .npz archive ({e})") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataFormatError(f"{path}: holds a single .npy array, not an .npz archive")
    missing = [k for k in _NPZ_KEYS if k not in arrays]
    if missing:
        raise DataFormatError(
            f"{path}: missing arrays {missing}; found {sorted(arrays)}, need {list(_NPZ_KEYS)}"
        )
    x_train, x_test = (_npz_images(path, k, arrays[k]) for k in ("x_train", "x_test"))
    y_train, y_test = (_npz_labels(path, k, arrays[k]) for k in ("y_train", "y_test"))
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataFormatError(
            f"{path}: x_train images are {x_train.shape[1:]} but x_test images are "
            f"{x_test.shape[1:]}"
        )
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise DataFormatError(
                f"{path}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels"
            )
        if len(x) == 0:
            raise DataFormatError(f"{path}: the {split} split is empty")
    top = int(max(y_train.max(), y_test.max()))
    num_classes = top + 1
    if "num_classes" in arrays:
        given = arrays["num_classes"]
        if given.shape != () or not np.issubdtype(given.dtype, np.integer) or given <= top:
            raise DataFormatError(
                f"{path}: num_classes must be an integer scalar above the largest label {top}, "
                f"got {given!r}"
            )
        num_classes = int(given)
    mean, std = normalization(path, x_train)
    return Dataset(path, x_train, y_train, x_test, y_test, num_classes, mean, std)


def _npz_images(path: str, key: str, x: np.ndarray) -> np.ndarray:
    """Check one image array of an .npz file; grayscale (N, H, W) gets a channel axis."""
    if x.dtype != np.uint8:
        raise DataFormatError(f"{path}: {key} has dtype {x.dtype}, expected uint8 pixels 0..255")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataFormatError(
            f"{path}: {key} has shape {x.shape}, expected (N, H, W, C) or (N, H, W)"
        )
    if x.shape[1] in (1, 3, 4) and x.shape[3] not in (1, 3, 4):
        raise DataFormatError(
            f"{path}: {key} has shape {x.shape}, which looks channels-first (N, C, H, W); "
            f"jaxlottery expects channels last: save {key}.transpose(0, 2, 3, 1)"
        )
    return x


def _npz_labels(path: str, key: str, y: np.ndarray) -> np.ndarray:
    """Check one label array of an .npz file and return it as int32 (N,)."""
    if not np.issubdtype(y.dtype, np.integer):
        raise DataFormatError(f"{path}: {key} has dtype {y.dtype}, expected integer class ids")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataFormatError(f"{path}: {key} has shape {y.shape}, expected (N,) or (N, 1)")
    if y.size and (y.min() < 0 or y.max() > np.iinfo(np.int32).max):
        raise DataFormatError(
            f"{path}: {key} has labels in [{y.min()}, {y.max()}], expected 0 <= label < 2**31"
        )
    return y.astype(np.int32)


def save_npz(path: str, ds: Dataset) -> None:
    """Write `ds` as an .npz file `load_npz` reads back (arrays and num_classes), atomically.

    The data goes to a temporary file in the same directory, is fsynced, then renamed over
    `path`, so a crash never leaves a half-written dataset behind.
    """
    with atomic_open(path) as f:
        np.savez(f, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test,
                 num_classes=np.int64(ds.num_classes))
