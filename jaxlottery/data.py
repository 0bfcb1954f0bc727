"""Datasets as host numpy arrays, and on-device augmentation in pure JAX.

A `Dataset` holds whole splits in memory as uint8 NHWC images and int32 labels, ready to be
put on the device once; batches are then cut from device arrays with `epoch_permutation` and
augmented there with `augment` (flip + padded crop, the protocol's CIFAR recipe) and
`normalize`, so the training loop never waits on a host input pipeline.

Sources (`load` dispatches on the string; the readers are in `jaxlottery.datasets`):

- `"synthetic"`: a small generated dataset with learnable structure, for tests and CPU runs.
- a path ending in `.npz`: arrays written by `datasets.save_npz` or converted by hand.
- a folder of MNIST-format IDX files (MNIST, Fashion-MNIST).
- any other string: a TensorFlow Datasets name such as `"cifar10"`. Reading goes through
  `tfds` array_record data sources, which need no TensorFlow (PNG decoding needs pillow or
  opencv). Preparing (download + conversion) an image dataset with tensorflow-datasets 4.9
  does need TensorFlow: do it once where TensorFlow and the network are available, or convert
  to `.npz`. CIFAR-10/100 come from the official archive when TFDS has not prepared them. A
  dataset that is missing and cannot be fetched raises `DatasetUnavailableError`; nothing ever
  falls back to other data.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlottery import datasets
# The dataset's type, its errors and statistics are defined with the readers; `data` is their
# public home, as before.
from jaxlottery.datasets import (IMAGENET_MEAN, IMAGENET_STD, Dataset,  # noqa: F401
                                 DataFormatError, DatasetUnavailableError, normalization)

# Names that are files, not TFDS datasets (TFDS names may hold "/" and ":1.0.0" versions).
FILE_SUFFIX = re.compile(r"\.(csv|tsv|txt|json|gz|tgz|tar|zip|bz2|xz|7z|pkl|pickle|pt|pth|h5|"
                         r"hdf5|parquet|feather|arrow|tfrecord|npy|mat|png|jpe?g|bin)$", re.I)


def load(source: str, data_dir: str | None = None, *, download: bool = True) -> Dataset:
    """Load `"synthetic"`, a `.npz` path, or else a TFDS dataset name (see the module docstring).

    CIFAR-10/100: TFDS's prepared copy in `data_dir` when it is readable without TensorFlow
    (array_record), else the official archive (`datasets.load_cifar`: downloaded with a progress
    bar into `data_dir`, converted once to `<data_dir>/jaxlottery/<name>.npz`), never a refusal.
    """
    if source == "synthetic":
        return synthetic()
    if source.lower().endswith(".npz"):
        return datasets.load_npz(source)
    if source.lower().endswith(".npy"):
        raise DataFormatError(f"{source}: a single .npy array cannot hold a dataset; save the "
                              "four arrays with np.savez(path, x_train=..., y_train=..., "
                              "x_test=..., y_test=...)")
    if os.path.isdir(source):
        return datasets.load_idx(source)
    if (os.path.exists(source) or source.startswith(("/", "./", "../", "~"))
            or FILE_SUFFIX.search(source)):  # a file or a path: never a TFDS dataset name
        state = "is a file" if os.path.isfile(source) else (
            "exists" if os.path.exists(source) else "does not exist")
        raise DataFormatError(f"{source} {state}, and the loader reads an .npz file (x_train, "
                              "y_train, x_test, y_test), a folder of IDX files (MNIST layout) "
                              "or a TFDS dataset name (cifar10, fashion_mnist, ...)")
    if source in datasets.CIFAR_ARCHIVES:
        if datasets.tfds_prepared(source, data_dir):
            try:
                return datasets.load_tfds(source, data_dir, download)
            except datasets.PreparedNeedsTensorFlow:
                warnings.warn(f"{source}: TFDS's copy in {datasets.default_data_dir(data_dir)} is "
                              "tfrecord, which needs TensorFlow; reading the official archive "
                              "instead", stacklevel=2)
        return datasets.load_cifar(source, data_dir, download)
    return datasets.load_tfds(source, data_dir, download)


def synthetic(
    num_train: int = 2048,
    num_test: int = 512,
    image_shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
    seed: int = 0,
) -> Dataset:
    """A generated dataset with learnable, not trivial, structure; a function of its arguments.

    Each class has a fixed smooth template: a sum of a few random plane waves of 0 to 2 cycles
    per image in each channel (so also a mean colour). An image is its class template plus a
    distractor (the template of a random class, weight uniform in [0, 1)), both circularly
    shifted by up to 1/8 of the image size, plus a random brightness offset per channel and
    pixel noise: learnable by a small ResNet, not by a nearest-class-mean rule or a single pixel
    alone, with headroom left (the measured accuracies: BUILD_NOTES.md, "Data").
    """
    h, w, c = image_shape
    rng = np.random.default_rng(seed)
    waves = 4
    freq = rng.integers(0, 3, size=(2, num_classes, waves, 1, 1, c))
    phase = rng.uniform(0, 2 * np.pi, size=(num_classes, waves, 1, 1, c))
    amp = rng.normal(size=(num_classes, waves, 1, 1, c))
    yy = np.arange(h)[:, None, None] / h
    xx = np.arange(w)[None, :, None] / w
    templates = (amp * np.cos(2 * np.pi * (freq[0] * yy + freq[1] * xx) + phase)).sum(axis=1)
    templates *= 40.0 / templates.std(axis=(1, 2, 3), keepdims=True)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
        distractor = rng.integers(0, num_classes, size=n)
        weight = rng.uniform(0, 1, size=(n, 1, 1, 1))
        rows = (np.arange(h) - rng.integers(-(h // 8), h // 8 + 1, size=(n, 1))) % h
        cols = (np.arange(w) - rng.integers(-(w // 8), w // 8 + 1, size=(n, 1))) % w
        shifted = lambda k: templates[k[:, None, None], rows[:, :, None], cols[:, None, :]]
        x = shifted(labels) + weight * shifted(distractor)
        x += 128.0 + rng.normal(0, 30.0, size=(n, 1, 1, c)) + rng.normal(0, 50.0, size=x.shape)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), labels

    x_train, y_train = images(num_train)
    x_test, y_test = images(num_test)
    mean, std = normalization("synthetic", x_train)
    return Dataset(
        "synthetic", x_train, y_train, x_test, y_test, num_classes, mean, std, synthetic=True
    )


class DeviceData(NamedTuple):
    """A dataset on the device: what the compiled training step and evaluation read from.

    A pytree, so it is passed to jitted functions as an argument (never baked in as a constant).
    """

    x_train: jax.Array  # uint8 (N, H, W, C)
    y_train: jax.Array  # int32 (N,)
    x_test: jax.Array
    y_test: jax.Array
    mean: jax.Array  # float32 (C,)
    std: jax.Array


def to_device(ds: Dataset, device: jax.Device | None = None) -> DeviceData:
    """Copy a dataset to the device once, as uint8 (CIFAR-10 train: 150 MB)."""
    put = lambda x, dtype: jax.device_put(np.asarray(x, dtype), device)  # noqa: E731
    return DeviceData(put(ds.x_train, np.uint8), put(ds.y_train, np.int32),
                      put(ds.x_test, np.uint8), put(ds.y_test, np.int32),
                      put(ds.mean, np.float32), put(ds.std, np.float32))


def augment(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
    """The CIFAR train augmentation on a uint8 (B, H, W, C) batch, per image: flip, then crop.

    Each image is flipped horizontally with probability 1/2, then an HxW window is cut from it
    zero-padded by `pad` pixels on each side, at row and column offsets uniform in 0..2*pad
    (torchvision `RandomCrop(H, padding=pad)` after `RandomHorizontalFlip()`). The key is split
    into a flip key and a crop key. Pure JAX: one padded copy and a vmapped dynamic slice.
    """
    b, h, w, c = images.shape
    flip_key, crop_key = jax.random.split(key)
    flip = jax.random.bernoulli(flip_key, 0.5, (b,))
    images = jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(crop_key, (b, 2), 0, 2 * pad + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """uint8 images -> float32 (x / 255 - mean) / std, per channel (the last axis)."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (images.astype(jnp.float32) / 255.0 - mean) / std


def epoch_permutation(key: jax.Array, n: int) -> jax.Array:
    """The order of the n training examples in one epoch: a uniform random permutation, int32."""
    return jax.random.permutation(key, n).astype(jnp.int32)
