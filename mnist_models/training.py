"""One trainer for the CLI and the app: callbacks receive the metrics, a stop event ends it, saving is atomic."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import threading
import time
import warnings
from importlib import metadata
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import registry
from .base import Config, ZooModel
from .data import load_dataset, write_atomic

STRATEGIES = ("default", "mirrored", "multiworker")


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
    strategy: str = "default"  # "default" | "mirrored" (local devices) | "multiworker" (from TF_CONFIG)
    max_minutes: float = 0.0  # > 0: stop (and save) after this much training time, e.g. for equal-budget baselines
    init: str = "scratch"  # "scratch" | "shipped" | "in_use" (the weights the app uses) | a weights folder
    init_dataset: str = ""  # the dataset of the weights to start from ("": the one trained on)

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
        if not (math.isfinite(out.max_minutes) and out.max_minutes >= 0):
            problems.append(f"max minutes must be ≥ 0, got {out.max_minutes}")
        if out.train_size < 0:
            problems.append(f"training-set size must be ≥ 0, got {out.train_size}")
        if out.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {', '.join(STRATEGIES)}, got {out.strategy!r}")
        if out.dataset not in spec.datasets:
            problems.append(f"{out.model} trains on {', '.join(spec.datasets)}, not {out.dataset}")
        if out.init_dataset and out.init_dataset not in spec.datasets:
            problems.append(f"there are no {out.model} weights for {out.init_dataset} to start from")
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
    devices: tuple[str, ...] = ()  # one per replica it trained on


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


def replica_devices(strategy: tf.distribute.Strategy) -> tuple[str, ...]:
    """The devices this process trains on, one per local replica."""
    try:
        return tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: one replica, on TensorFlow's default device
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return (devices[0].name,)


class TerminalProgress(keras.callbacks.Callback):
    """The CLI's progress bar: one Keras Progbar per epoch, after a line saying where it trains."""

    def on_train_begin(self, logs=None):
        strategy = self.model.distribute_strategy
        devices = replica_devices(strategy)
        print(f"{strategy.num_replicas_in_sync} replica{'s' * (strategy.num_replicas_in_sync != 1)} "
              f"({type(strategy).__name__}) on {', '.join(devices)}", flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        print(f"Epoch {epoch + 1}/{self.params['epochs']}", flush=True)
        self.bar = keras.utils.Progbar(self.params.get("steps"), stateful_metrics=None)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(batch + 1, [(k, float(v)) for k, v in (logs or {}).items()])


def split_cpu(n: int) -> None:
    """Expose the CPU as n logical devices, so MirroredStrategy has n replicas on a machine without GPUs.
    Must run before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """TensorFlow's own distribution: `mirrored` over this machine's devices, `multiworker` over the cluster
    that the standard TF_CONFIG variable describes, `default` for no distribution."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable (see the README)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _adapt_fit_to_strategy(trainable: keras.Model, strategy: tf.distribute.Strategy, element_spec) -> None:
    """Two work-arounds for Keras 3's `fit` under tf.distribute.

    1. Before the first step Keras builds the model's metrics and optimizer from one batch that it draws from the
       training iterator. That draw starts an extra pass over the data, so a reshuffling pipeline then serves a
       different order than without a strategy; and under MultiWorkerMirroredStrategy the draw's cross-worker
       reduce fails outright (keras-team/keras#20585, tensorflow/tensorflow#72388). Build from zeros of the
       dataset's element spec instead: only the shapes matter.
    2. After each step Keras averages the logged metrics over workers with reduce(MEAN, axis=0), which fails on
       scalars with two or more workers (same issues): hand them over as shape (1,), and the reduce
       gives the workers' mean as a scalar.
    """

    def symbolic_build(iterator=None, data_batch=None):
        zeros = tf.nest.map_structure(
            lambda spec: tf.zeros([1 if d is None else d for d in spec.shape], spec.dtype), element_spec)
        with strategy.scope():
            trainable._symbolic_build(data_batch=zeros)

    trainable._maybe_symbolic_build = symbolic_build
    if _worker_count(strategy) > 1:
        step = trainable.train_step
        trainable.train_step = lambda data: tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(data))


def _worker_count(strategy: tf.distribute.Strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(1, sum(len(spec.get(job, [])) for job in ("chief", "worker")))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The worker that writes checkpoints and weights: the `chief` task, or worker 0 when there is none."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                               and "chief" not in resolver.cluster_spec().as_dict())


class ChiefBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore, made safe for several workers: every worker restores from the backup, only the
    chief writes it, and each file is replaced atomically (a kill mid-write leaves the previous backup). The zoo
    model's artifacts (a GAN's per-epoch samples and loss curves) are backed up too, so a restarted run keeps
    the epochs before the restart; the backup must then be the last callback, after those that record them.
    So are the seconds each epoch took (`timer`'s), so the manifest's training time includes the stopped process's."""

    def __init__(self, backup_dir: Path, chief: bool, owner: ZooModel, timer: EpochTimer):
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=True)
        self.chief, self.owner, self.timer = chief, owner, timer
        self.resumed_from_epoch = 0
        self.seconds_before_restart: list[float] = []  # per epoch, of the processes that trained before this one
        self._artifacts_path = Path(backup_dir) / "artifacts.npz"
        self._timing_path = Path(backup_dir) / "seconds_per_epoch.json"

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.resumed_from_epoch = int(getattr(self.model, "_initial_epoch", 0) or 0)
        if self.resumed_from_epoch and self._artifacts_path.is_file():
            with np.load(self._artifacts_path, allow_pickle=False) as arrays:
                self.owner.load_artifacts(dict(arrays))
        if self.resumed_from_epoch and self._timing_path.is_file():
            self.seconds_before_restart = json.loads(self._timing_path.read_text())[:self.resumed_from_epoch]

    def _save_model(self):
        if not self.chief:
            return
        write_atomic(Path(self._weights_path), lambda tmp: self.model.save_weights(tmp, overwrite=True),
                     suffix=".weights.h5")
        progress = json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen})
        write_atomic(Path(self._training_metadata_path), lambda tmp: Path(tmp).write_text(progress))
        if arrays := self.owner.artifacts():
            write_atomic(Path(self._artifacts_path), lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
        seconds = json.dumps(self.seconds_before_restart + self.timer.seconds)
        write_atomic(self._timing_path, lambda tmp: Path(tmp).write_text(seconds))

    def on_train_end(self, logs=None):
        if self.chief:
            super().on_train_end(logs)


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


def init_folder(settings: TrainSettings) -> Path:
    """Where the weights a run starts from live: `init` is "shipped", "in_use" or a folder."""
    if settings.init == "shipped":
        return registry.WEIGHTS_DIR
    if settings.init == "in_use":
        return registry.active_folder(settings.model, settings.init_dataset or settings.dataset)
    return Path(settings.init)


def training_totals(entry: dict) -> tuple[int, float]:
    """The epochs and seconds a manifest entry's weights have had in all: over the runs of a resumed model, and
    those of the weights a run started from (entries saved before these totals were kept had one run)."""
    return (entry.get("epochs_total", entry["epochs_completed"] + entry.get("resumed_from_epoch", 0)),
            entry.get("seconds_all_runs", entry["seconds_total"]))


def start_from(settings: TrainSettings, config: dict | None = None) -> ZooModel:
    """The model to train, loaded from the weights named by `settings.init` (its architecture is theirs; `config`
    may change training-only settings), with a record of where it started (`started_from`, kept in the new
    manifest entry). Its history of samples and losses starts anew with this run (it may be on another dataset)."""
    folder, source = init_folder(settings), settings.init_dataset or settings.dataset
    model = registry.load_from(folder, settings.model, source, config)
    model.dataset = settings.dataset
    model.forget_history()
    entry = registry.read_manifest(folder)[registry.stem(settings.model, source)]
    epochs_total, seconds_all_runs = training_totals(entry)
    model.started_from = {
        "from": settings.init, "folder": str(folder), "dataset": source,
        "epochs_total": epochs_total, "trained_at": entry.get("trained_at"), "seconds_all_runs": seconds_all_runs,
        "metrics": entry.get("metrics", {}),
        "weights_sha256": {part: f["sha256"] for part, f in entry.get("weights", {}).items()}}
    return model


def train(settings: TrainSettings, out_dir: Path | None = None, callbacks=(), stop_event=None,
          config: dict | None = None, model=None, resume: bool = False,
          backup_dir: Path | None = None, fresh_parts: tuple[str, ...] = ()) -> TrainResult:
    """Train, evaluate on the full test set, save atomically to `out_dir` and record it in its manifest.

    `config` overrides the model's defaults; with `resume`, which continues from the weights already in `out_dir`
    and records the earlier runs, it may change training-only settings such as augmentation, and restart the
    `fresh_parts` (e.g. a GAN's discriminator) from new weights, in an architecture the config may change.
    A run stopped by `stop_event` keeps and saves what it learned; a run whose loss went NaN saves nothing.
    With a distribution strategy, the batch size is per replica (the global batch scales with the replicas),
    and only the chief saves. `backup_dir` keeps a per-epoch backup that a restarted run resumes from.
    """
    if fresh_parts and not resume:
        raise ValueError("--fresh restarts a part of a resumed model: add --resume")
    settings = settings.resolved()
    out_dir = Path(out_dir) if out_dir else registry.WEIGHTS_DIR
    strategy = make_strategy(settings.strategy)
    keras.utils.set_random_seed(settings.seed)
    (x_train, y_train), (x_test, y_test) = load_dataset(settings.dataset)
    x_train, y_train = subset(x_train, y_train, settings.train_size, settings.seed)
    global_batch = settings.batch_size * strategy.num_replicas_in_sync

    earlier_runs, epochs_before, seconds_before = [], 0, 0.0  # what the weights it continues from had had
    if resume and settings.init != "scratch":
        raise ValueError("--resume continues the weights in the output folder: it cannot also start from --init")
    with strategy.scope():  # variables, optimizers and metrics are created under the strategy
        if resume:
            prior = registry.read_manifest(out_dir).get(registry.stem(settings.model, settings.dataset))
            model = registry.load_from(out_dir, settings.model, settings.dataset, config, fresh_parts)
            earlier_runs = prior.get("earlier_runs", []) + [
                {k: prior[k] for k in ("config", "fresh_parts", "training", "resumed_from_epoch", "epochs_completed",
                                       "seconds_total", "seconds_per_epoch", "metrics", "history", "trained_at")
                 if k in prior}]
            epochs_before, seconds_before = training_totals(prior)
        elif model is None and settings.init != "scratch":
            model = start_from(settings, config)
        model = model or registry.build(settings.model, settings.dataset, config)
        if model.started_from:
            epochs_before, seconds_before = model.started_from["epochs_total"], model.started_from["seconds_all_runs"]
        steps = math.ceil(len(x_train) / global_batch)
        learning_rate = settings.learning_rate
        if settings.lr_decay < 1.0:
            learning_rate = keras.optimizers.schedules.ExponentialDecay(learning_rate, steps, settings.lr_decay)
        trainable = model.compile(learning_rate)
    options = tf.data.Options()  # every worker reads the same seeded order and keeps its share of each batch
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = model.train_dataset(x_train, y_train, global_batch, settings.seed).with_options(options)
    if settings.strategy != "default":
        _adapt_fit_to_strategy(trainable, strategy, dataset.element_spec)

    timer, nan_guard = EpochTimer(), StopOnNaN()
    all_callbacks = [timer, nan_guard, *model.training_callbacks(x_train), *callbacks]
    if settings.max_minutes:
        stop_event = stop_event or threading.Event()
        budget = threading.Timer(settings.max_minutes * 60, stop_event.set)
        budget.daemon = True
    if stop_event is not None:
        all_callbacks.append(StopOnEvent(stop_event))
    backup = ChiefBackupAndRestore(backup_dir, is_chief(strategy), model, timer) if backup_dir else None
    if backup:
        all_callbacks.append(backup)
    started = time.perf_counter()
    if settings.max_minutes:
        budget.start()
    try:
        with warnings.catch_warnings():  # our datasets shuffle themselves; Keras warns that its shuffle is unused
            warnings.filterwarnings("ignore", message=".*shuffle=True.*", category=UserWarning)
            history = trainable.fit(dataset, epochs=settings.epochs, callbacks=all_callbacks, verbose=0)
    finally:
        if settings.max_minutes:
            budget.cancel()
    # a run restarted from its backup trained its first `resumed_from_epoch` epochs in the stopped process
    before_restart = backup.seconds_before_restart if backup else []
    seconds_per_epoch = before_restart + timer.seconds
    seconds = time.perf_counter() - started + sum(before_restart)
    if nan_guard.diverged:
        raise FloatingPointError("training diverged (loss became NaN or infinite); nothing was saved. "
                                 "Try a smaller learning rate.")
    stopped = bool(stop_event is not None and stop_event.is_set())
    epochs_completed = len(timer.seconds)

    metrics = registry.evaluate(model, x_test, y_test)
    if not is_chief(strategy):  # the chief writes the weights; the other workers hold the same values
        return TrainResult(settings, model, metrics, {}, epochs_completed, stopped, seconds, history.history,
                           replica_devices(strategy))
    files = registry.save(model, out_dir, {
        "model": settings.model,
        "dataset": settings.dataset,
        "class": type(model).__name__,
        "config": model.config.to_dict(),
        "training": settings.to_dict(),
        "epochs_completed": epochs_completed,
        "stopped_early": stopped,
        "train_examples": int(len(x_train)),
        "replicas": int(strategy.num_replicas_in_sync),
        **({"resumed_from_epoch": backup.resumed_from_epoch} if backup and backup.resumed_from_epoch else {}),
        **({"fresh_parts": list(fresh_parts)} if fresh_parts else {}),
        **({"init": model.started_from} if model.started_from else {}),
        "seconds_total": round(seconds, 1),
        "seconds_per_epoch": [round(s, 1) for s in seconds_per_epoch],
        "metrics": metrics,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "versions": package_versions(),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        # all the epochs and time its weights have had: earlier runs of a resumed model, the weights it started from
        "epochs_total": epochs_completed + (backup.resumed_from_epoch if backup else 0) + epochs_before,
        **({"earlier_runs": earlier_runs} if earlier_runs else {}),
        **({"seconds_all_runs": round(seconds + seconds_before, 1)} if seconds_before else {}),
    })
    return TrainResult(settings, model, metrics, files, epochs_completed, stopped, seconds, history.history,
                       replica_devices(strategy))
