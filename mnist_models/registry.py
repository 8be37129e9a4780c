"""Name → model class, training defaults and weights files; the manifest in weights/; the one door `load`."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
import threading
from pathlib import Path

from .base import ZooModel
from .capsnet import CapsNet
from .classifiers import CNNClassifier
from .data import sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST_NAME = "manifest.json"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    model_class: type[ZooModel]
    datasets: tuple[str, ...]
    title: str
    epochs: int
    batch_size: int = 128
    learning_rate: float = 1e-3
    lr_decay: float = 1.0  # multiplied into the learning rate after every epoch


SPECS: dict[str, ModelSpec] = {
    spec.name: spec for spec in [
        ModelSpec("cnn", CNNClassifier, ("mnist", "fashion"), "CNN classifier", epochs=10, lr_decay=0.8),
        ModelSpec("capsnet", CapsNet, ("mnist", "fashion"), "CapsNet (dynamic routing)", epochs=10,
                  batch_size=100, lr_decay=0.85),
    ]
}


class WeightsError(RuntimeError):
    """Shipped weights are missing, corrupt or do not fit; the message names the file and the rebuild command."""


def spec(name: str) -> ModelSpec:
    if name not in SPECS:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(SPECS)}")
    return SPECS[name]


def stem(name: str, dataset: str) -> str:
    return f"{name}-{dataset}"


def rebuild_command(name: str, dataset: str) -> str:
    return f"python -m mnist_models train {name} --dataset {dataset}"


# --- manifest ----------------------------------------------------------------------------------------------

def read_manifest(folder: Path = WEIGHTS_DIR) -> dict:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"{path} is unreadable ({err}); restore it with: git checkout -- {path}") from err


@contextlib.contextmanager
def _manifest_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".manifest.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_manifest(key: str, entry: dict, folder: Path = WEIGHTS_DIR) -> None:
    """Read-modify-write one entry under a file lock; the file itself is replaced atomically."""
    with _manifest_lock(folder):
        manifest = read_manifest(folder)
        manifest[key] = entry
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(dict(sorted(manifest.items())), f, indent=2, sort_keys=False)
                f.write("\n")
            os.replace(tmp, folder / MANIFEST_NAME)
        finally:
            Path(tmp).unlink(missing_ok=True)


# --- loading -----------------------------------------------------------------------------------------------

def build(name: str, dataset: str = "mnist", config: dict | None = None) -> ZooModel:
    """A fresh, untrained model built from code (config from a dict, or the defaults)."""
    model_spec = spec(name)
    if dataset not in model_spec.datasets:
        raise ValueError(f"{name} is available for {', '.join(model_spec.datasets)}, not {dataset!r}")
    cls = model_spec.model_class
    return cls(cls.config_class.from_dict(config) if config else None, dataset=dataset)


def load_from(folder: Path, name: str, dataset: str = "mnist") -> ZooModel:
    """Build from code with the config in `folder`'s manifest, verify every file's sha256, then load_weights."""
    key = stem(name, dataset)
    entry = read_manifest(folder).get(key)
    fix = f"rebuild it with: {rebuild_command(name, dataset)}"
    if entry is None:
        raise WeightsError(f"no trained weights for {name} on {dataset} in {folder}; {fix}")
    model = build(name, dataset, entry.get("config"))
    files = {}
    for part in model.parts():
        path = folder / model.weights_filename(key, part)
        if not path.is_file():
            raise WeightsError(f"weights file {path} is missing; {fix}")
        expected = entry.get("files", {}).get(path.name)
        if expected != sha256_file(path):
            raise WeightsError(f"weights file {path} does not match the sha256 in {folder / MANIFEST_NAME} "
                               f"(changed or truncated); {fix}")
        files[part] = path
    try:
        model.load_weights(files)
    except (OSError, ValueError, KeyError) as err:
        raise WeightsError(f"weights in {', '.join(map(str, files.values()))} do not fit the {name} "
                           f"architecture ({err}); {fix}") from err
    return model


_cache: dict[tuple[str, str, str], ZooModel] = {}
_cache_lock = threading.Lock()


def load(name: str, dataset: str = "mnist", folder: Path | None = None) -> ZooModel:
    """The shipped model `name` for `dataset`, loaded once per process and shared (thread-safe)."""
    folder = folder or WEIGHTS_DIR
    key = (name, dataset, str(folder))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load_from(folder, name, dataset)
        return _cache[key]


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
