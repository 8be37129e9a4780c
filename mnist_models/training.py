"""One trainer for the CLI and the app: callbacks receive the metrics, a stop event ends it, saving is atomic."""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import platform
import threading
import time
from importlib import metadata
from pathlib import Path

import keras
import numpy as np

from . import registry
from .base import Config
from .data import load_dataset


@dataclasses.dataclass
class TrainSettings(Config):
    model: str = "cnn"
    dataset: str = "mnist"
    epochs: int = 0  # 0: the model's default
    batch_size: int = 0
    learning_rate: float = 0.0
    lr_decay: float = 0.0
    train_size: int = 0  # 0: the whole training set
    seed: int = 1234

    def resolved(self) -> TrainSettings:
        """Fill the zeros from the model's defaults and refuse settings that cannot train."""
        spec = registry.spec(self.model)
        out = dataclasses.replace(
            self,
            epochs=self.epochs or spec.epochs, batch_size=self.batch_size or spec.batch_size,
            learning_rate=self.learning_rate or spec.learning_rate, lr_decay=self.lr_decay or spec.lr_decay,
        )
        problems = []
        if not 1 <= out.epochs <= 1000:
            problems.append(f"epochs must be 1–1000, got {out.epochs}")
        if not 1 <= out.batch_size <= 4096:
            problems.append(f"batch size must be 1–4096, got {out.batch_size}")
        if not (math.isfinite(out.learning_rate) and 0 < out.learning_rate <= 1.0):
            problems.append(f"learning rate must be in (0, 1], got {out.learning_rate}")
        if not 0 < out.lr_decay <= 1.0:
            problems.append(f"lr decay must be in (0, 1], got {out.lr_decay}")
        if out.train_size < 0:
            problems.append(f"training-set size must be ≥ 0, got {out.train_size}")
        if out.dataset not in spec.datasets:
            problems.append(f"{out.model} trains on {', '.join(spec.datasets)}, not {out.dataset}")
        if problems:
            raise ValueError("; ".join(problems))
        return out


@dataclasses.dataclass
class TrainResult:
    settings: TrainSettings
    model: object
    metrics: dict
    files: dict[str, Path]
    epochs_completed: int
    stopped: bool
    seconds: float
    history: dict[str, list[float]]


class StopOnEvent(keras.callbacks.Callback):
    """Ends `fit` after the current batch once `event` is set."""

    def __init__(self, event: threading.Event):
        super().__init__()
        self.event = event

    def on_train_batch_end(self, batch, logs=None):
        if self.event.is_set():
            self.model.stop_training = True


class StopOnNaN(keras.callbacks.Callback):
    """Stops and flags a diverged run, so its weights are never saved."""

    def __init__(self):
        super().__init__()
        self.diverged = False

    def on_train_batch_end(self, batch, logs=None):
        if any(not math.isfinite(float(v)) for v in (logs or {}).values()):
            self.diverged = True
            self.model.stop_training = True


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self.batches_in_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self.batches_in_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches_in_epoch = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class TerminalProgress(keras.callbacks.Callback):
    """The CLI's progress bar: one Keras Progbar per epoch."""

    def __init__(self, steps: int, epochs: int):
        super().__init__()
        self.steps, self.epochs = steps, epochs

    def on_epoch_begin(self, epoch, logs=None):
        print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)
        self.bar = keras.utils.Progbar(self.steps, stateful_metrics=None)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(batch + 1, [(k, float(v)) for k, v in (logs or {}).items()])


def package_versions() -> dict[str, str]:
    names = ["tensorflow-cpu", "tensorflow", "keras", "numpy"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), **found}


def steps_per_epoch(settings: TrainSettings, n_train: int) -> int:
    return math.ceil(n_train / settings.batch_size)


def subset(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not size or size >= len(x):
        return x, y
    idx = np.random.default_rng(seed).permutation(len(x))[:size]
    return x[idx], y[idx]


def train(settings: TrainSettings, out_dir: Path | None = None, callbacks=(), stop_event=None,
          config: dict | None = None, model=None, resume: bool = False) -> TrainResult:
    """Train, evaluate on the full test set, save atomically to `out_dir` and record it in its manifest.

    `resume` continues from the weights already in `out_dir` (same config) and records the earlier runs.
    A run stopped by `stop_event` keeps and saves what it learned; a run whose loss went NaN saves nothing.
    """
    settings = settings.resolved()
    out_dir = Path(out_dir) if out_dir else registry.WEIGHTS_DIR
    keras.utils.set_random_seed(settings.seed)
    (x_train, y_train), (x_test, y_test) = load_dataset(settings.dataset)
    x_train, y_train = subset(x_train, y_train, settings.train_size, settings.seed)

    earlier_runs = []
    if resume:
        prior = registry.read_manifest(out_dir).get(registry.stem(settings.model, settings.dataset))
        model = registry.load_from(out_dir, settings.model, settings.dataset)
        earlier_runs = prior.get("earlier_runs", []) + [
            {k: prior[k] for k in ("training", "epochs_completed", "seconds_total", "seconds_per_epoch", "metrics",
                                   "history", "trained_at") if k in prior}]
    model = model or registry.build(settings.model, settings.dataset, config)
    steps = steps_per_epoch(settings, len(x_train))
    learning_rate = settings.learning_rate
    if settings.lr_decay < 1.0:
        learning_rate = keras.optimizers.schedules.ExponentialDecay(learning_rate, steps, settings.lr_decay)
    trainable = model.compile(learning_rate)
    dataset = model.train_dataset(x_train, y_train, settings.batch_size, settings.seed)

    timer, nan_guard = EpochTimer(), StopOnNaN()
    all_callbacks = [timer, nan_guard, *model.training_callbacks(), *callbacks]
    if stop_event is not None:
        all_callbacks.append(StopOnEvent(stop_event))
    started = time.perf_counter()
    history = trainable.fit(dataset, epochs=settings.epochs, callbacks=all_callbacks, verbose=0)
    seconds = time.perf_counter() - started
    if nan_guard.diverged:
        raise FloatingPointError("training diverged (loss became NaN or infinite); nothing was saved. "
                                 "Try a smaller learning rate.")
    stopped = bool(stop_event is not None and stop_event.is_set())
    epochs_completed = len(timer.seconds)

    metrics = model.evaluate(x_test, y_test)
    files = registry.save(model, out_dir, {
        "model": settings.model,
        "dataset": settings.dataset,
        "class": type(model).__name__,
        "config": model.config.to_dict(),
        "training": settings.to_dict(),
        "epochs_completed": epochs_completed,
        "stopped_early": stopped,
        "train_examples": int(len(x_train)),
        "seconds_total": round(seconds, 1),
        "seconds_per_epoch": [round(s, 1) for s in timer.seconds],
        "metrics": metrics,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "versions": package_versions(),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **({"earlier_runs": earlier_runs,
            "epochs_total": epochs_completed + sum(r["epochs_completed"] for r in earlier_runs),
            "seconds_all_runs": round(seconds + sum(r["seconds_total"] for r in earlier_runs), 1)}
           if earlier_runs else {}),
    })
    return TrainResult(settings, model, metrics, files, epochs_completed, stopped, seconds,
                       history.history)
