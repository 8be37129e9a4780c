"""The weights store: weights files and their manifest in a folder (weights/ ships; user_weights/ holds retraining),
saved atomically and loaded into architectures built from code; which of the two the app uses; the one door `load`
(cached, warmed up); scoring a model as the zoo does."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from keras.src.saving import saving_lib

from .base import ZooModel
from .catalogue import SPECS, build, rebuild_command, spec, stem
from .data import sha256_file, write_atomic

WEIGHTS_DIR = Path(os.environ.get("MNIST_MODELS_WEIGHTS") or Path(__file__).resolve().parent.parent / "weights")
USER_WEIGHTS_DIR = Path(os.environ.get("MNIST_MODELS_USER_WEIGHTS")
                        or Path(__file__).resolve().parent.parent / "user_weights")
MANIFEST_NAME = "manifest.json"
CHOICES_NAME = "choices.json"  # in USER_WEIGHTS_DIR: which models use the user's retrained weights


class WeightsError(RuntimeError):
    """Shipped weights are missing, corrupt or do not fit; the message names the file and the rebuild command."""


# --- manifest ----------------------------------------------------------------------------------------------

def read_manifest(folder: Path | None = None) -> dict:
    path = (folder or WEIGHTS_DIR) / MANIFEST_NAME
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


def _write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def update_manifest(key: str, entry: dict | Callable[[dict | None], dict], folder: Path = WEIGHTS_DIR) -> None:
    """Read-modify-write one entry under a file lock; the file itself is replaced atomically. `entry` is the new
    entry, or a function of the current one (None if there is none), called under the same lock."""
    with _manifest_lock(folder):
        manifest = read_manifest(folder)
        manifest[key] = entry(manifest.get(key)) if callable(entry) else entry
        _write_json_atomic(folder / MANIFEST_NAME, dict(sorted(manifest.items())))


# --- the zoo, as listed everywhere ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo on one dataset, as its manifest describes it (the Home and Model zoo pages, the CLI's
    `list` and the Generate page all read these, never raw manifest fields)."""

    name: str
    dataset: str
    title: str
    status: str  # "shipped" (or "retrained" in the user folder), or "not trained"
    key_metric: str
    metrics: dict
    epochs: int  # all epochs its weights have seen, over every run and restart
    train_minutes: float  # over every run
    seconds_per_epoch: float
    train_examples: int
    size_mb: float
    rebuild: str

    @property
    def key_value(self) -> float | None:
        return self.metrics.get(self.key_metric)


def zoo_entry(name: str, dataset: str, folder: Path | None = None, manifest: dict | None = None) -> ZooEntry:
    folder, model_spec = folder or WEIGHTS_DIR, spec(name)
    entry = (_manifest_view(folder)[0] if manifest is None else manifest).get(stem(name, dataset))
    key_metric, rebuild = model_spec.model_class.key_metric, rebuild_command(name, dataset)
    if entry is None:
        return ZooEntry(name, dataset, model_spec.title, "not trained", key_metric, {}, 0, 0.0, 0.0, 0, 0.0, rebuild)
    per_epoch = entry.get("seconds_per_epoch") or [0.0]
    files = [folder / f["file"] for f in entry_files(entry)]
    return ZooEntry(
        name, dataset, model_spec.title, "shipped" if folder == WEIGHTS_DIR else "retrained", key_metric,
        dict(entry.get("metrics", {})), int(entry.get("epochs_total", entry.get("epochs_completed", 0))),
        round(entry.get("seconds_all_runs", entry.get("seconds_total", 0.0)) / 60, 1),
        round(sum(per_epoch) / len(per_epoch), 1), int(entry.get("train_examples", 0)),
        round(sum(f.stat().st_size for f in files if f.exists()) / 1e6, 2), rebuild)


def zoo(folder: Path | None = None) -> list[ZooEntry]:
    """Every model of the zoo on each of its datasets, in the order of SPECS."""
    folder = folder or WEIGHTS_DIR
    manifest = read_manifest(folder)
    return [zoo_entry(name, dataset, folder, manifest) for name, s in SPECS.items() for dataset in s.datasets]


# --- saving and loading ---------------------------------------------------------------------------------------

def _save_weights_only(network, path: str) -> None:
    """The network's weights without its optimizer's slots. Models are always loaded uncompiled, so the slots were
    never read back and only tripled the files (the CapsNet's was 30 MB); Keras's public `save_weights` cannot
    leave them out, its saving library can."""
    optimizer = getattr(network, "optimizer", None)
    saving_lib.save_weights_only(network, path, objects_to_skip=[optimizer] if optimizer is not None else None)


def write_content_addressed(folder: Path, prefix: str, suffix: str, write) -> Path:
    """`write(tmp_path)` into a temp file in `folder`, then rename it to `{prefix}-{sha256[:12]}{suffix}`."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{prefix}.", suffix=f".tmp{suffix}")
    os.close(fd)
    try:
        write(tmp)
        final = folder / f"{prefix}-{sha256_file(Path(tmp))[:12]}{suffix}"
        os.replace(tmp, final)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return final


def save(model: ZooModel, folder: Path, entry: dict) -> dict[str, Path]:
    """Save every part and its manifest entry so that a crash at any moment leaves the previous weights loadable.

    Each part goes to a temp file in `folder`, is renamed to a content-addressed name, and only then does the
    manifest (replaced atomically) point at it; the files of the previous version are removed last.
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = stem(entry["model"], entry["dataset"])
    written, weights = {}, {}
    for part, network in model.parts().items():
        final = write_content_addressed(folder, f"{key}-{part}", ".weights.h5",
                                         lambda tmp, net=network: _save_weights_only(net, tmp))
        written[part] = final
        weights[part] = {"file": final.name, "sha256": sha256_file(final)}
    extra = {}
    arrays = model.artifacts()
    if arrays:
        final = write_content_addressed(folder, f"{key}-artifacts", ".npz",
                                         lambda tmp: np.savez_compressed(tmp, **arrays))
        written["artifacts"] = final
        extra["artifacts"] = {"file": final.name, "sha256": sha256_file(final)}
    update_manifest(key, {**entry, "weights": weights, **extra}, folder)
    keep = {path.name for path in written.values()}
    for old in [*folder.glob(f"{key}-*.weights.h5"), *folder.glob(f"{key}-artifacts-*.npz")]:
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return written


def entry_files(entry: dict) -> list[dict]:
    """The {file, sha256} records of one manifest entry: every weights part and the artifacts, if any."""
    return [*entry.get("weights", {}).values(), *([entry["artifacts"]] if "artifacts" in entry else [])]


def clean_orphans(folder: Path, min_age_s: float = 600) -> list[Path]:
    """Remove temp files and weights files no manifest entry points at (left by a killed save). Files younger
    than `min_age_s` are kept: they may belong to a save in progress, e.g. a CLI training in the same folder."""
    if not folder.is_dir():
        return []
    referenced = {f["file"] for entry in read_manifest(folder).values() for f in entry_files(entry)}
    saved = [*folder.glob("*.weights.h5"), *folder.glob("*-artifacts-*.npz")]
    candidates = {p for p in saved if p.name not in referenced} | set(folder.glob(".*.tmp*"))
    removed = {p for p in candidates if time.time() - p.stat().st_mtime >= min_age_s}
    for path in removed:
        path.unlink(missing_ok=True)
    return sorted(removed)


def load_from(folder: Path, name: str, dataset: str = "mnist", config_overrides: dict | None = None,
              fresh_parts: tuple[str, ...] = ()) -> ZooModel:
    """Build from code with the config in `folder`'s manifest, verify every file's sha256, then load_weights.

    `config_overrides` changes training-only settings (e.g. augmentation) of a model that is resumed; the parts
    named in `fresh_parts` keep their new initial weights, so overrides may also change their architecture."""
    key = stem(name, dataset)
    entry = read_manifest(folder).get(key)
    fix = f"rebuild it with: {rebuild_command(name, dataset)}"
    if entry is None:
        raise WeightsError(f"no trained weights for {name} on {dataset} in {folder}; {fix}")
    try:
        model = build(name, dataset, {**entry.get("config", {}), **(config_overrides or {})}, saved=True)
    except (ValueError, TypeError) as err:  # a config this version of the code cannot build
        raise WeightsError(f"the config of {key} in {folder / MANIFEST_NAME} does not fit the {name} "
                           f"architecture ({err}); {fix}") from err
    def verified(recorded: dict) -> Path:
        path = folder / recorded["file"]
        if not path.is_file():
            raise WeightsError(f"weights file {path} is missing; {fix}")
        if recorded["sha256"] != sha256_file(path):
            raise WeightsError(f"weights file {path} does not match the sha256 in {folder / MANIFEST_NAME} "
                               f"(changed or truncated); {fix}")
        return path

    unknown = set(fresh_parts) - set(model.parts())
    if unknown:
        raise ValueError(f"{name} has no part(s) {sorted(unknown)}; its parts are {sorted(model.parts())}")
    files = {}
    for part in model.parts():
        if part in fresh_parts:
            continue
        recorded = entry.get("weights", {}).get(part)
        if recorded is None:
            raise WeightsError(f"{folder / MANIFEST_NAME} lists no '{part}' weights for {key}; {fix}")
        files[part] = verified(recorded)
    try:
        model.load_weights(files)
    except (OSError, ValueError, KeyError) as err:
        raise WeightsError(f"weights in {', '.join(map(str, files.values()))} do not fit the {name} "
                           f"architecture ({err}); {fix}") from err
    if "artifacts" in entry:
        path = verified(entry["artifacts"])
        try:
            with np.load(path, allow_pickle=False) as arrays:
                model.load_artifacts({k: arrays[k] for k in arrays.files})
        except (OSError, ValueError) as err:
            raise WeightsError(f"{path} is unreadable ({err}); {fix}") from err
    return model


# --- shipped or user weights ------------------------------------------------------------------------------

def _read_choices() -> dict:
    path = USER_WEIGHTS_DIR / CHOICES_NAME
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}  # an unreadable choice falls back to the shipped weights


def uses_user_weights(name: str, dataset: str) -> bool:
    key = stem(name, dataset)
    return bool(_read_choices().get(key)) and _fingerprint(USER_WEIGHTS_DIR, name, dataset) != "{}"


def choose_user_weights(name: str, dataset: str, use: bool) -> None:
    """Make every page use the user's retrained weights for this model (or go back to the shipped ones)."""
    key = stem(name, dataset)
    if use and key not in read_manifest(USER_WEIGHTS_DIR):
        raise WeightsError(f"there are no retrained weights for {name} on {dataset} yet")
    with _manifest_lock(USER_WEIGHTS_DIR):
        _write_json_atomic(USER_WEIGHTS_DIR / CHOICES_NAME, {**_read_choices(), key: use})


def active_folder(name: str, dataset: str = "mnist") -> Path:
    return USER_WEIGHTS_DIR if uses_user_weights(name, dataset) else WEIGHTS_DIR


_parsed: dict[Path, tuple[tuple | None, dict, dict[str, str]]] = {}


def _manifest_view(folder: Path) -> tuple[dict, dict[str, str]]:
    """The manifest of `folder` (shared: read it, never change it) and each entry's weights fingerprint, parsed
    again only when the file changed (a save replaces it: a new inode and time). Pages ask on every run."""
    path = folder / MANIFEST_NAME
    try:
        status = path.stat()
        version = (status.st_ino, status.st_mtime_ns, status.st_size)
    except FileNotFoundError:
        version = None
    cached = _parsed.get(path)
    if cached is None or cached[0] != version:
        manifest = read_manifest(folder)
        cached = _parsed[path] = (version, manifest, {key: json.dumps(entry.get("weights", {}), sort_keys=True)
                                                      for key, entry in manifest.items()})
    return cached[1], cached[2]


def _fingerprint(folder: Path, name: str, dataset: str) -> str:
    """Changes with every save of this model in `folder` (the files are content-addressed)."""
    return _manifest_view(folder)[1].get(stem(name, dataset), "{}")


def active_version(name: str, dataset: str = "mnist") -> tuple[Path, str]:
    """(folder, fingerprint) of the weights the app should use now."""
    folder = active_folder(name, dataset)
    return folder, _fingerprint(folder, name, dataset)


_cache: dict[tuple[str, str, str, str], ZooModel] = {}
_cache_lock = threading.Lock()


def load(name: str, dataset: str = "mnist", folder: Path | None = None) -> ZooModel:
    """The one way to a ready model: `name` for `dataset` with the chosen (shipped or user) weights, or those in
    `folder`; loaded and warmed up (inference traced) once per weights version per process, and shared
    (thread-safe). The app, the CLI's benchmarks, the jobs and the tests all come through here."""
    folder = folder or active_folder(name, dataset)
    key = (name, dataset, str(folder), _fingerprint(folder, name, dataset))
    with _cache_lock:
        if key not in _cache:
            model = load_from(folder, name, dataset)
            model.warm_up()
            _cache[key] = model
        return _cache[key]


# --- scoring -------------------------------------------------------------------------------------------------

def evaluate(model: ZooModel, x: np.ndarray, y: np.ndarray) -> dict:
    """`model.evaluate` on a test set, handing a model that is scored by classifiers (a GAN) the shipped CNN of its
    dataset and, where it is shipped, the judge (metrics suffixed `_judge`): the model modules never import the
    registry."""
    if model.needs_scorer:
        scorers = {"": load("cnn", model.dataset, WEIGHTS_DIR)}  # loaded once, cached
        if stem("judge", model.dataset) in read_manifest(WEIGHTS_DIR):
            scorers["_judge"] = load("judge", model.dataset, WEIGHTS_DIR)
        return model.evaluate(x, y, scorers=scorers)
    return model.evaluate(x, y)


def record_metrics(name: str, dataset: str, metrics: dict, folder: Path = WEIGHTS_DIR, stamp: bool = True) -> None:
    """Merge freshly measured metrics into a manifest entry (the weights are unchanged, so is their sha256);
    `stamp` notes when, for metrics measured after the training that saved the entry."""
    key = stem(name, dataset)

    def merged(entry: dict | None) -> dict:
        if entry is None:
            raise WeightsError(f"{key} is not in {folder / MANIFEST_NAME}")
        return {**entry, "metrics": {**entry.get("metrics", {}), **metrics}, **(
            {"metrics_recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} if stamp else {})}

    update_manifest(key, merged, folder)


def store_as_float16(name: str, dataset: str = "mnist", folder: Path | None = None) -> dict:
    """Rewrite one entry's weights files with float16 tensors (half the bytes; Keras loads them into the float32
    model built from code) and re-score it, so `evaluate` reproduces the manifest. For shipped models that would
    otherwise break the weights budget; the float32 metrics stay in the entry as `metrics_float32`."""
    import h5py

    folder = folder or WEIGHTS_DIR
    key = stem(name, dataset)
    entry = read_manifest(folder)[key]
    weights = {}
    for part, record in entry["weights"].items():
        def halve(tmp, src=folder / record["file"]):
            with h5py.File(src, "r") as source, h5py.File(tmp, "w") as target:
                def copy(path, item):
                    if isinstance(item, h5py.Group):
                        group = target.require_group(path)
                        group.attrs.update(item.attrs)
                    else:
                        data = item[()]
                        half = data.astype(np.float16) if data.dtype == np.float32 else data
                        target.create_dataset(path, data=half).attrs.update(item.attrs)
                target.attrs.update(source.attrs)
                source.visititems(copy)
        final = write_content_addressed(folder, f"{key}-{part}", ".weights.h5", halve)
        weights[part] = {"file": final.name, "sha256": sha256_file(final)}
    staged = {**entry, "weights": weights}
    update_manifest(key, staged, folder)
    model = load_from(folder, name, dataset)
    from .data import load_dataset

    (_, _), (x_test, y_test) = load_dataset(dataset)
    update_manifest(key, {**staged, "weights_dtype": "float16", "metrics_float32": entry["metrics"],
                          "metrics": evaluate(model, x_test, y_test)}, folder)
    for record in entry["weights"].values():
        if record["file"] not in {w["file"] for w in weights.values()}:
            (folder / record["file"]).unlink(missing_ok=True)
    return read_manifest(folder)[key]
