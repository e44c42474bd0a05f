"""Image data sets from local files only: nothing is downloaded at run time.

- `digits`: scikit-learn's bundled 8×8 digits (always present: the embedded default).
- `fashion-mnist`: the IDX files of Debian's `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`).
- `idx:DIR`: any directory of MNIST-format IDX files (`train-images-idx3-ubyte[.gz]`, ...), e.g. real MNIST.
- `cifar10:DIR`, `cifar100:DIR`: CIFAR in its python pickle format (`data_batch_1`..`5`, or `train`), read
  by an unpickler that builds numpy arrays and plain values and refuses anything else, so a crafted
  batch file cannot run code.

Pixels are scaled to [0, 1], then standardized with the training split's global mean and standard
deviation; CIFAR also gets the paper's global contrast normalization (each image minus its mean, over its
standard deviation). The validation split is a fixed, seeded draw from the training files.
"""
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FALLBACK_NOTE = ("Fashion-MNIST is not installed, so the default data set is scikit-learn's 8x8 digits. For real "
                 "images: `apt-get install dataset-fashion-mnist` (Debian), or --dataset idx:DIR with MNIST files.")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class ImageData:
    name: str
    x_train: torch.Tensor  # (N, C, H, W) float32
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def in_features(self) -> int:
        return int(np.prod(self.image_shape))


def read_idx(path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for suffix in ("", ".gz"):
        for name in (stem, stem.replace("-idx", ".idx")):
            if (directory / (name + suffix)).exists():
                return directory / (name + suffix)
    raise FileNotFoundError(f"no {stem}[.gz] in {directory}")


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int, max_train: int | None):
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    if max_train is not None:
        train = train[:max_train]
    return x[train], y[train], x[val], y[val]


def _standardize(name, x_train, y_train, x_val, y_val, num_classes):
    mean, std = x_train.mean(), x_train.std() + 1e-8
    t = lambda a: torch.from_numpy(((a - mean) / std).astype(np.float32))  # noqa: E731
    return ImageData(name, t(x_train), torch.from_numpy(y_train.astype(np.int64)), t(x_val),
                     torch.from_numpy(y_val.astype(np.int64)), num_classes)


def load_digits(val_fraction=0.2, seed=0, max_train=None) -> ImageData:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return _standardize("digits", *_split(x, d.target, val_fraction, seed, max_train), 10)


def load_idx_dir(directory, name=None, val_fraction=1 / 6, seed=0, max_train=None) -> ImageData:
    """MNIST-format IDX files from `directory`; the validation split comes from the training files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory} does not exist. Fashion-MNIST: `apt-get install dataset-fashion-mnist` (Debian); "
            f"MNIST: put train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] in a directory and "
            f"pass idx:DIR"
        )
    images = read_idx(_find(directory, "train-images-idx3-ubyte")).astype(np.float32) / 255.0
    labels = read_idx(_find(directory, "train-labels-idx1-ubyte"))
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"{directory}: images {images.shape} and labels {labels.shape} do not match")
    split = _split(images[:, None], labels, val_fraction, seed, max_train)
    return _standardize(name or directory.name, *split, int(labels.max()) + 1)


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; any other object a pickle names (the way
    a pickle runs code) is refused with ValueError."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise ValueError(f"refused to build {module}.{name} while unpickling; CIFAR batches hold only arrays "
                         f"and plain values")


def load_cifar(directory, classes=10, val_fraction=0.1, seed=0, max_train=None) -> ImageData:
    directory = Path(directory)
    files = [directory / f"data_batch_{i}" for i in range(1, 6)] if classes == 10 else [directory / "train"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-{classes} python files not found: {missing[:2]}. Unpack cifar-{classes}-python.tar.gz from "
            f"the CIFAR site into a directory and pass cifar{classes}:DIR"
        )
    key = b"labels" if classes == 10 else b"fine_labels"
    xs, ys = [], []
    for f in files:
        with open(f, "rb") as fh:
            try:
                batch = ArraysOnlyUnpickler(fh, encoding="bytes").load()
            except ValueError as e:
                raise ValueError(f"{f}: {e}") from None
            except (pickle.UnpicklingError, EOFError, TypeError) as e:
                raise ValueError(f"{f} is not a CIFAR python batch: {e}") from None
        xs.append(np.asarray(batch[b"data"], dtype=np.float32).reshape(-1, 3, 32, 32) / 255.0)
        ys.append(np.asarray(batch[key]))
    x, y = np.concatenate(xs), np.concatenate(ys)
    flat = x.reshape(len(x), -1)  # global contrast normalization, as in the paper's CIFAR experiments
    x = ((flat - flat.mean(1, keepdims=True)) / (flat.std(1, keepdims=True) + 1e-8)).reshape(x.shape)
    return _standardize(f"cifar{classes}", *_split(x, y, val_fraction, seed, max_train), classes)


# The labels' names, for the figures (the data files hold numbers only); by the name a loader gives its data.
CLASS_NAMES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


def class_names(data: ImageData) -> tuple | None:
    """Each label's name where the data set is known (`CLASS_NAMES`), else None."""
    names = CLASS_NAMES.get(data.name)
    return names if names is not None and len(names) == data.num_classes else None


def fashion_mnist_available() -> bool:
    try:
        _find(FASHION_MNIST_DIR, "train-images-idx3-ubyte")
    except FileNotFoundError:
        return False
    return True


def load_dataset(spec: str, seed=0, max_train=None) -> ImageData:
    """`digits`, `fashion-mnist`, `idx:DIR`, `cifar10:DIR`, `cifar100:DIR`, or `default` (Fashion-MNIST when
    its package is installed, else digits)."""
    if spec == "default":
        spec = "fashion-mnist" if fashion_mnist_available() else "digits"
    if spec == "digits":
        return load_digits(seed=seed, max_train=max_train)
    if spec == "fashion-mnist":
        return load_idx_dir(FASHION_MNIST_DIR, "fashion-mnist", seed=seed, max_train=max_train)
    kind, _, path = spec.partition(":")
    if kind == "idx" and path:
        return load_idx_dir(os.path.expanduser(path), seed=seed, max_train=max_train)
    if kind in ("cifar10", "cifar100") and path:
        return load_cifar(os.path.expanduser(path), int(kind[5:]), seed=seed, max_train=max_train)
    raise ValueError(f"unknown data set {spec!r}; expected digits, fashion-mnist, default, idx:DIR, cifar10:DIR "
                     f"or cifar100:DIR")
