"""Background training for the app: one job at a time per machine, live metrics in a thread-safe store.

The job runs `training.train` (the same trainer as the CLI) in a thread, saves to the user-weights folder (never
over the shipped weights) and reports through `MetricsCallback`. A process-wide lock and a file lock in the
user-weights folder make sure that only one training runs, even with several server processes.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import catalogue, store
from .base import to_float
from .data import load_dataset
from .training import TrainSettings, start_from, steps_per_epoch, train


class TrainingBusyError(RuntimeError):
    """Another training is running; `job` is it when it runs in this process."""

    def __init__(self, message: str, job: TrainingJob | None = None):
        super().__init__(message)
        self.job = job


@dataclass
class Preview:
    """What the model made of fixed inputs at one moment of its training."""

    step: int  # batches done
    epochs: float  # epochs done, fractional
    seconds: float  # since the job started
    view: np.ndarray  # a uint8 grid (rows, cols, 28, 28), or a classifier's answers on the fixed test digits


@dataclass
class Snapshot:
    """A consistent copy of a job's progress for one redraw of the page."""

    status: str  # running | stopping | scoring | finished | stopped | failed
    settings: dict
    owner: str
    batches: list[dict]  # {"step": global step, "epoch": e, **metrics}
    epochs: list[dict]  # {"epoch": e, "seconds": s, **metrics}
    previews: list[Preview]  # every couple of seconds and at each epoch's end, thinned out on long runs
    steps_done: int
    total_steps: int
    elapsed: float
    message: str = ""
    preview_seconds: float = 0.0  # time spent taking previews (the training waited for them)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    before_view: np.ndarray | None = None  # `view_function` of the weights in use when it started
    after_view: np.ndarray | None = None  # the same for the weights it trained

    @property
    def eta(self) -> float | None:
        if self.steps_done == 0 or self.status != "running":
            return None
        return self.elapsed / self.steps_done * (self.total_steps - self.steps_done)


class MetricsStore:
    """Written by the training thread, read by any number of page redraws."""

    def __init__(self, settings: TrainSettings, owner: str, total_steps: int):
        self._lock = threading.Lock()
        self._snapshot = Snapshot("running", settings.to_dict(), owner, [], [], [], 0, total_steps, 0.0)
        self._started = time.perf_counter()

    def update(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._snapshot, key, value)

    def add_batch(self, point: dict) -> None:
        with self._lock:
            self._snapshot.batches.append(point)
            self._snapshot.steps_done = point["step"]

    def add_epoch(self, point: dict) -> None:
        with self._lock:
            self._snapshot.epochs.append(point)

    MAX_PREVIEWS = 400

    def seconds(self) -> float:
        return time.perf_counter() - self._started

    def add_preview(self, preview: Preview, seconds: float) -> None:
        with self._lock:
            previews = self._snapshot.previews
            previews.append(preview)
            if len(previews) > self.MAX_PREVIEWS:  # every other one, counting back from the newest
                self._snapshot.previews = previews[::-2][::-1]
            self._snapshot.preview_seconds += seconds

    def snapshot(self) -> Snapshot:
        with self._lock:
            snap = copy.copy(self._snapshot)
            snap.batches, snap.epochs, snap.previews = list(snap.batches), list(snap.epochs), list(snap.previews)
            snap.elapsed = time.perf_counter() - self._started
            return snap


class MetricsCallback(keras.callbacks.Callback):
    """Pushes per-batch and per-epoch metrics into a store, and previews of what the model makes of fixed inputs:
    at the start, at each epoch's end, and in between every `every_s` seconds as long as the previews have taken
    at most `max_share` of the training time so far (a preview stops the training while it draws)."""

    def __init__(self, store: MetricsStore, steps: int, view=None, every_s: float = 2.0, max_share: float = 0.05):
        super().__init__()
        self.store, self.steps, self.view = store, steps, view
        self.every_s, self.max_share = every_s, max_share
        self._epoch, self._epoch_start, self._next_preview = 0, 0.0, 0.0
        self._training_since, self._spent = 0.0, 0.0

    def _preview(self, step: int, force: bool = False) -> None:
        started = time.perf_counter()
        if self.view is None or not (force or (started >= self._next_preview and
                                               self._spent <= self.max_share * (started - self._training_since))):
            return
        view = _stored(self.view())
        cost = time.perf_counter() - started
        self._spent += cost
        self.store.add_preview(Preview(step, step / self.steps, self.store.seconds(), view), cost)
        self._next_preview = time.perf_counter() + self.every_s

    def on_train_begin(self, logs=None):
        self._preview(0, force=True)  # before the training: its time (the first call traces) is not the training's
        self._training_since, self._spent = time.perf_counter(), 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._epoch_start = epoch, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        step = self._epoch * self.steps + batch + 1
        self.store.add_batch({"step": step, "epoch": self._epoch + 1, **metrics})
        self._preview(step)

    def on_epoch_end(self, epoch, logs=None):
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        self.store.add_epoch({"epoch": epoch + 1, "seconds": time.perf_counter() - self._epoch_start, **metrics})
        self._preview((epoch + 1) * self.steps, force=True)

    def on_train_end(self, logs=None):
        self.store.update(status="scoring", message="Training ended; scoring on the full test set…")


class TrainingJob:
    def __init__(self, settings: TrainSettings, owner: str, out_dir: Path, config: dict | None):
        self.settings, self.owner, self.out_dir, self.config = settings, owner, out_dir, config
        self.id = uuid.uuid4().hex
        n_train = settings.train_size or 60000
        self.store = MetricsStore(settings, owner, steps_per_epoch(settings, n_train) * settings.epochs)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"train-{settings.model}", daemon=True)
        self.result = None

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        """Ask the training to end after the current batch; what it learned so far is kept and saved."""
        if self.running:
            self.stop_event.set()
            self.store.update(status="stopping")

    def _run(self) -> None:
        try:
            settings = self.settings.resolved()
            model = (start_from(settings, self.config) if settings.init != "scratch"
                     else catalogue.build(settings.model, settings.dataset, self.config))
            (_, _), (x_test, _) = load_dataset(settings.dataset)
            fixed = x_test[:VIEW_DIGITS]
            callback = MetricsCallback(self.store, steps_per_epoch(settings, settings.train_size or 60000),
                                       view_function(model, fixed))
            try:
                before_view = view_of(store.load(settings.model, settings.dataset), fixed)
            except store.WeightsError:  # nothing trained to compare with
                before_view = None
            self.store.update(before=_metrics_of_active(settings), before_view=before_view)
            self.result = train(settings, out_dir=self.out_dir, callbacks=[callback], stop_event=self.stop_event,
                                config=self.config, model=model)
            stopped = self.result.stopped
            self.store.update(status="stopped" if stopped else "finished", after=self.result.metrics,
                              after_view=view_of(self.result.model, fixed),
                              message=f"Stopped after {self.result.epochs_completed} full epoch(s); what it learned "
                                      "so far was saved." if stopped else "Training finished and was saved.")
        except Exception as err:  # the page shows it; the thread must never die silently
            self.store.update(status="failed", message=f"{type(err).__name__}: {err}")
        finally:
            _release_file_lock()


VIEW_DIGITS = 500  # fixed test digits: a classifier's answers on all of them
DRAWN_DIGITS = 16  # the first of them, for the models that redraw their input


def view_function(model, x_uint8: np.ndarray):
    """What the page shows of a model, before, during and after a training, on fixed inputs: the grid a drawing
    model draws (an autoencoder's or CapsNet's redrawings of the first 16, a GAN's samples from its fixed noise),
    or the digits a classifier reads in all of them. A function, called again for every preview; None for a
    model that does neither."""
    draw = model.preview_images(x_uint8[:DRAWN_DIGITS])
    if draw is not None:
        return draw
    if hasattr(model, "classify"):
        images = to_float(x_uint8)
        return lambda: model.classify(images).argmax(1)
    return None


def view_of(model, x_uint8: np.ndarray) -> np.ndarray | None:
    """`view_function`'s picture, once."""
    view = view_function(model, x_uint8)
    return None if view is None else _stored(view())


def _stored(view) -> np.ndarray:
    """Pictures as uint8 (a quarter of the memory of float32, for hundreds of previews); answers as they are."""
    view = np.asarray(view)
    return np.round(np.clip(view, 0, 1) * 255).astype(np.uint8) if view.dtype.kind == "f" else view


def _metrics_of_active(settings: TrainSettings) -> dict:
    folder = store.active_folder(settings.model, settings.dataset)
    entry = store.read_manifest(folder).get(catalogue.stem(settings.model, settings.dataset))
    return dict(entry["metrics"]) if entry else {}


_jobs_lock = threading.Lock()
_current: TrainingJob | None = None
_lock_file = None


def _acquire_file_lock(folder: Path) -> bool:
    global _lock_file
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".training.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _lock_file = handle
    return True


def _release_file_lock() -> None:
    global _lock_file
    if _lock_file is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(_lock_file, fcntl.LOCK_UN)
            _lock_file.close()
        _lock_file = None


def current() -> TrainingJob | None:
    """The latest job of this process (running or finished), if any."""
    return _current


def start(settings: TrainSettings, owner: str, out_dir: Path | None = None,
          config: dict | None = None) -> TrainingJob:
    """Start a background training; raises TrainingBusyError if one is already running anywhere."""
    global _current
    settings = settings.resolved()
    out_dir = out_dir or store.USER_WEIGHTS_DIR
    with _jobs_lock:
        if _current is not None and _current.running:
            raise TrainingBusyError(f"{_current.owner} is training {_current.settings.model} right now", _current)
        if not _acquire_file_lock(out_dir):
            raise TrainingBusyError("another studio server on this machine is training right now")
        job = TrainingJob(settings, owner, out_dir, config)
        _current = job
        job.thread.start()
        return job


def clean_orphans_at_startup() -> list[Path]:
    """Remove temp and unreferenced weights files that a killed save left behind, unless a training is running
    (in this or another server process), whose half-written files must not be touched."""
    removed = []
    if _current is not None and _current.running:
        return removed
    if not _acquire_file_lock(store.USER_WEIGHTS_DIR):
        return removed
    try:
        for folder in (store.WEIGHTS_DIR, store.USER_WEIGHTS_DIR):
            try:
                removed += store.clean_orphans(folder)
            except store.WeightsError:  # an unreadable manifest: nothing is removed, and the pages say what to do
                continue
    finally:
        _release_file_lock()
    return removed
