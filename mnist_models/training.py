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

from . import catalogue, store
from .base import Config, Stage, ZooModel
from .data import load_dataset, sha256_file
from .distribute import (
    STRATEGIES,
    ChiefBackupAndRestore,
    adapt_fit_to_strategy,
    is_chief,
    make_strategy,
    replica_devices,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class TrainSettings(Config):
    model: str = "cnn"
    dataset: str = "mnist"
    epochs: int = 0  # 0: the model's default
    batch_size: int = 0
    learning_rate: float = 0.0
    lr_decay: float = 0.0
    train_size: int = 0  # 0: the whole training set
    test_size: int = 0  # score on the first this many test examples (quick checks; 0: the whole test set)
    seed: int = 1234
    strategy: str = "default"  # "default" | "mirrored" (local devices) | "multiworker" (from TF_CONFIG)
    max_minutes: float = 0.0  # > 0: stop (and save) after this much training time, e.g. for equal-budget baselines
    init: str = "scratch"  # "scratch" | "shipped" | "in_use" (the weights the app uses) | a weights folder
    init_dataset: str = ""  # the dataset of the weights to start from ("": the one trained on)
    front_end_from: str = ""  # a shipped MNIST model whose layers of the same name and shape a new model starts from
    extra_data: str = ""  # an .npz of extra labelled 28×28 digits (a class's download) mixed into every epoch

    def resolved(self) -> TrainSettings:
        """Fill the zeros from the first stage of the model's recipe and refuse settings that cannot train."""
        spec = catalogue.spec(self.model)
        first = spec.first(self.dataset) if self.dataset in spec.datasets else spec.recipe[0]
        out = dataclasses.replace(
            self,
            epochs=self.epochs or first.epochs, batch_size=self.batch_size or first.batch_size,
            learning_rate=self.learning_rate or first.learning_rate, lr_decay=self.lr_decay or first.lr_decay,
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
        if out.train_size < 0 or out.test_size < 0:
            problems.append(f"training- and test-set sizes must be ≥ 0, got {out.train_size}, {out.test_size}")
        if out.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {', '.join(STRATEGIES)}, got {out.strategy!r}")
        if out.dataset not in spec.datasets:
            problems.append(f"{out.model} trains on {', '.join(spec.datasets)}, not {out.dataset}")
        if out.init_dataset and out.init_dataset not in spec.datasets:
            problems.append(f"there are no {out.model} weights for {out.init_dataset} to start from")
        if out.front_end_from and out.front_end_from not in catalogue.SPECS:
            problems.append(f"--front-end-from names no model of the zoo: {out.front_end_from!r}")
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
    """Ends `fit` after the current batch once `stop` (a person's Stop) or `budget_over` is set, and remembers
    which: the end of a time budget finishes a run as its recipe says, a Stop leaves it unfinished."""

    def __init__(self, stop: threading.Event | None, budget_over: threading.Event):
        super().__init__()
        self.stop, self.budget_over = stop, budget_over
        self.by_hand = False

    def on_train_batch_end(self, batch, logs=None):
        if self.budget_over.is_set():
            self.model.stop_training = True
        elif self.stop is not None and self.stop.is_set():
            self.model.stop_training = self.by_hand = True


class StopOnNaN(keras.callbacks.Callback):
    """Stops and flags a diverged run, so its weights are never saved."""

    def __init__(self):
        super().__init__()
        self.diverged = False

    def on_train_batch_end(self, batch, logs=None):
        if any(not math.isfinite(float(v)) for v in (logs or {}).values()):
            self.diverged = True
            self.model.stop_training = True


class TimeBudget(keras.callbacks.Callback):
    """Sets `over` once the run has trained `minutes` in all, counting the epochs a stopped process trained
    before it was restarted from its backup (so a budget holds across a session's end). Placed after the backup
    callback, which learns those epochs' times when training begins."""

    def __init__(self, minutes: float, over: threading.Event, backup=None):
        super().__init__()
        self.seconds, self.over, self.backup, self.timer = minutes * 60, over, backup, None

    def on_train_begin(self, logs=None):
        spent = sum(self.backup.seconds_before_restart) if self.backup else 0.0
        self.timer = threading.Timer(max(self.seconds - spent, 0.0), self.over.set)
        self.timer.daemon = True
        self.timer.start()

    def on_train_end(self, logs=None):
        self.timer.cancel()


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


EXTRA_SHARE = 0.1  # the extra digits, repeated as needed, make up this share of each epoch


def with_extra_data(x: np.ndarray, y: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training set with the extra digits of `path` (e.g. a class's drawings) repeated into it, so a few dozen
    of them weigh about a tenth of every epoch; the model still sees all of MNIST's."""
    extra_x, extra_y = load_extra_data(path)
    repeats = max(1, round(EXTRA_SHARE * len(x) / ((1 - EXTRA_SHARE) * len(extra_x))))
    return np.concatenate([x, np.tile(extra_x, (repeats, 1, 1))]), np.concatenate([y, np.tile(extra_y, repeats)])


def load_extra_data(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`x_train` (N, 28, 28) uint8 and `y_train` (N,) digits 0–9 from an .npz (never unpickled), or a clear error."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            x, y = npz["x_train"], npz["y_train"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not an .npz with x_train and y_train arrays, as the Class page's download has "
                         f"({err})") from err
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8 or len(x) == 0:
        raise ValueError(f"{path}: x_train must hold at least one 28×28 uint8 image, got {x.shape} {x.dtype}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
        raise ValueError(f"{path}: y_train must hold one digit 0–9 per image, got {y.shape} {y.dtype}")
    return x, y.astype(np.int64)


def extra_data_record(path: Path) -> str:
    """How the manifest names the extra data: its file name and content hash, no machine's path."""
    return f"{path.name} (sha256 {sha256_file(path)[:16]})"


def portable(folder: Path) -> str:
    """A folder as the manifest records it: relative to the project when inside it, so no machine's path is kept."""
    try:
        return str(Path(folder).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return Path(folder).name


def init_folder(settings: TrainSettings) -> Path:
    """Where the weights a run starts from live: `init` is "shipped", "in_use" or a folder."""
    if settings.init == "shipped":
        return store.WEIGHTS_DIR
    if settings.init == "in_use":
        return store.active_folder(settings.model, settings.init_dataset or settings.dataset)
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
    model = store.load_from(folder, settings.model, source, config)
    model.dataset = settings.dataset
    model.forget_history()
    entry = store.read_manifest(folder)[catalogue.stem(settings.model, source)]
    epochs_total, seconds_all_runs = training_totals(entry)
    model.started_from = {
        "from": settings.init if settings.init in ("shipped", "in_use") else portable(folder),
        "folder": portable(folder), "dataset": source,
        "epochs_total": epochs_total, "trained_at": entry.get("trained_at"), "seconds_all_runs": seconds_all_runs,
        "metrics": entry.get("metrics", {}),
        "weights_sha256": {part: f["sha256"] for part, f in entry.get("weights", {}).items()}}
    return model


def copy_front_end(source: ZooModel, target: ZooModel) -> list[str]:
    """Copy into `target` the weights of every layer that `source` has under the same name with the same shapes
    (a head start: e.g. the MNIST CapsNet's convolutions for the MultiMNIST one); returns the layer names."""
    def layers_by_name(model: ZooModel) -> dict[str, keras.layers.Layer]:
        found, todo = {}, list(model.parts().values())
        while todo:
            layer = todo.pop()
            if isinstance(layer, keras.Model):
                todo.extend(layer.layers)
            elif layer.weights:
                found[layer.name] = layer
        return found

    sources, copied = layers_by_name(source), []
    for name, layer in sorted(layers_by_name(target).items()):
        weights = sources[name].get_weights() if name in sources else None
        if weights is not None and [w.shape for w in weights] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(weights)
            copied.append(name)
    return copied


@dataclasses.dataclass
class _Prepared:
    """What a run starts with: the model and what the weights it continues from had had."""

    model: ZooModel
    earlier_runs: list
    epochs_before: int
    seconds_before: float
    front_end: dict | None

    def went_on_from_backup(self) -> _Prepared:
        """The run stopped by hand that this one continued from its backup is this run's first epochs, so it
        is no earlier run of its own."""
        last = self.earlier_runs[-1]
        return dataclasses.replace(
            self, earlier_runs=self.earlier_runs[:-1],
            epochs_before=self.epochs_before - last["epochs_completed"] - last.get("resumed_from_epoch", 0),
            seconds_before=self.seconds_before - last["seconds_total"])


def _prepare(settings: TrainSettings, out_dir: Path, config: dict | None, model: ZooModel | None, resume: bool,
             fresh_parts: tuple[str, ...]) -> _Prepared:
    """Build or load the model to train (call under the strategy's scope)."""
    earlier_runs, epochs_before, seconds_before, front_end = [], 0, 0.0, None
    if resume:
        prior = store.read_manifest(out_dir).get(catalogue.stem(settings.model, settings.dataset))
        if prior is None:
            raise ValueError(f"--resume: {out_dir} holds no {settings.model} weights for {settings.dataset}")
        model = store.load_from(out_dir, settings.model, settings.dataset, config, fresh_parts)
        earlier_runs = prior.get("earlier_runs", []) + [
            {k: prior[k] for k in ("config", "fresh_parts", "training", "recipe_stage", "front_end_from",
                                   "stopped_by_hand", "resumed_from_epoch", "epochs_completed", "seconds_total",
                                   "seconds_per_epoch", "metrics", "history", "trained_at")
             if k in prior}]
        epochs_before, seconds_before = training_totals(prior)
    elif model is None and settings.init != "scratch":
        model = start_from(settings, config)
    model = model or catalogue.build(settings.model, settings.dataset, config)
    if model.started_from:
        epochs_before, seconds_before = model.started_from["epochs_total"], model.started_from["seconds_all_runs"]
    if settings.front_end_from and not resume:
        source = store.load_from(store.WEIGHTS_DIR, settings.front_end_from, "mnist")
        entry = store.read_manifest(store.WEIGHTS_DIR)[catalogue.stem(settings.front_end_from, "mnist")]
        front_end = {"model": settings.front_end_from, "layers": copy_front_end(source, model),
                     "weights_sha256": {part: f["sha256"] for part, f in entry["weights"].items()}}
        if not front_end["layers"]:
            raise ValueError(f"{settings.front_end_from} has no layer that fits {settings.model}")
    return _Prepared(model, earlier_runs, epochs_before, seconds_before, front_end)


@dataclasses.dataclass
class _Fitted:
    history: dict[str, list[float]]
    seconds: float
    seconds_per_epoch: list[float]
    epochs_completed: int
    resumed_from_epoch: int
    stopped: bool  # before its last epoch, by hand or by the time budget
    stopped_by_hand: bool  # unfinished: a recipe stage stopped so is run again


def _fit(settings: TrainSettings, model: ZooModel, trainable: keras.Model, dataset, x_train: np.ndarray, strategy,
         callbacks, stop_event: threading.Event | None, backup_dir: Path | None) -> _Fitted:
    """`fit` with the callbacks every run has: epoch timing, the NaN guard, Stop, the time budget, the backup."""
    timer, nan_guard, budget_over = EpochTimer(), StopOnNaN(), threading.Event()
    stopper = StopOnEvent(stop_event, budget_over)
    all_callbacks = [timer, nan_guard, *model.training_callbacks(x_train), *callbacks, stopper]
    # a run stopped by hand keeps its backup, so the same command run again goes on from its last epoch
    backup = (ChiefBackupAndRestore(backup_dir, is_chief(strategy), model, timer, keep=lambda: stopper.by_hand)
              if backup_dir else None)
    if backup:
        all_callbacks.append(backup)  # after the callbacks that record what it backs up
    if settings.max_minutes:
        all_callbacks.append(TimeBudget(settings.max_minutes, budget_over, backup))
    started = time.perf_counter()
    with warnings.catch_warnings():  # our datasets shuffle themselves; Keras warns that its shuffle is unused
        warnings.filterwarnings("ignore", message=".*shuffle=True.*", category=UserWarning)
        history = trainable.fit(dataset, epochs=settings.epochs, callbacks=all_callbacks, verbose=0)
    if nan_guard.diverged:
        raise FloatingPointError("training diverged (loss became NaN or infinite); nothing was saved. "
                                 "Try a smaller learning rate.")
    # a run restarted from its backup trained its first `resumed_from_epoch` epochs in the stopped process
    before_restart = backup.seconds_before_restart if backup else []
    return _Fitted({k: [float(v) for v in vals] for k, vals in history.history.items()},
                   time.perf_counter() - started + sum(before_restart), before_restart + timer.seconds,
                   len(timer.seconds), backup.resumed_from_epoch if backup else 0,
                   stopper.by_hand or budget_over.is_set(), stopper.by_hand)


def _record(settings: TrainSettings, prepared: _Prepared, fitted: _Fitted, metrics: dict, train_examples: int,
            replicas: int, fresh_parts: tuple[str, ...], recipe_stage: str) -> dict:
    """The manifest entry of a finished run."""
    model = prepared.model
    return {
        "model": settings.model,
        "dataset": settings.dataset,
        "class": type(model).__name__,
        "config": model.config.to_dict(),
        "training": settings.to_dict(),
        **({"recipe_stage": recipe_stage} if recipe_stage else {}),
        "epochs_completed": fitted.epochs_completed,
        "stopped_early": fitted.stopped,
        **({"stopped_by_hand": True} if fitted.stopped_by_hand else {}),
        "train_examples": train_examples,
        "replicas": replicas,
        **({"resumed_from_epoch": fitted.resumed_from_epoch} if fitted.resumed_from_epoch else {}),
        **({"fresh_parts": list(fresh_parts)} if fresh_parts else {}),
        **({"init": model.started_from} if model.started_from else {}),
        **({"front_end_from": prepared.front_end} if prepared.front_end else {}),
        "seconds_total": round(fitted.seconds, 1),
        "seconds_per_epoch": [round(s, 1) for s in fitted.seconds_per_epoch],
        "metrics": metrics,
        "history": fitted.history,
        "versions": package_versions(),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "trained_at": run_stamp(),
        # all the epochs and time its weights have had: earlier runs of a resumed model, the weights it started from
        "epochs_total": fitted.epochs_completed + fitted.resumed_from_epoch + prepared.epochs_before,
        **({"earlier_runs": prepared.earlier_runs} if prepared.earlier_runs else {}),
        **({"seconds_all_runs": round(fitted.seconds + prepared.seconds_before, 1)}
           if prepared.seconds_before else {}),
    }


def run_stamp() -> str:
    """Now, as a manifest entry's `trained_at` records it: UTC to the second, so stamps compare as text."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def scoring_command(model: str, dataset: str, out_dir: Path) -> str:
    """The command that scores weights saved but not scored, and records the figures in their manifest."""
    return f"python -m mnist_models evaluate {model} --dataset {dataset} --weights {out_dir} --record"


def train(settings: TrainSettings, out_dir: Path | None = None, callbacks=(), stop_event=None,
          config: dict | None = None, model=None, resume: bool = False,
          backup_dir: Path | None = None, fresh_parts: tuple[str, ...] = (), recipe_stage: str = "") -> TrainResult:
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
    if resume and settings.init != "scratch":
        raise ValueError("--resume continues the weights in the output folder: it cannot also start from --init")
    out_dir = Path(out_dir) if out_dir else store.WEIGHTS_DIR
    strategy = make_strategy(settings.strategy)
    keras.utils.set_random_seed(settings.seed)
    (x_train, y_train), (x_test, y_test) = load_dataset(settings.dataset)
    x_train, y_train = subset(x_train, y_train, settings.train_size, settings.seed)
    if settings.extra_data:
        x_train, y_train = with_extra_data(x_train, y_train, Path(settings.extra_data))
        settings = dataclasses.replace(settings, extra_data=extra_data_record(Path(settings.extra_data)))
    if settings.test_size:
        x_test, y_test = x_test[:settings.test_size], y_test[:settings.test_size]
    global_batch = settings.batch_size * strategy.num_replicas_in_sync

    with strategy.scope():  # variables, optimizers and metrics are created under the strategy
        prepared = _prepare(settings, out_dir, config, model, resume, fresh_parts)
        learning_rate = settings.learning_rate
        if settings.lr_decay < 1.0:
            learning_rate = keras.optimizers.schedules.ExponentialDecay(
                learning_rate, math.ceil(len(x_train) / global_batch), settings.lr_decay)
        trainable = prepared.model.compile(learning_rate)
    options = tf.data.Options()  # every worker reads the same seeded order and keeps its share of each batch
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = prepared.model.train_dataset(x_train, y_train, global_batch, settings.seed).with_options(options)
    if settings.strategy != "default":
        adapt_fit_to_strategy(trainable, strategy, dataset.element_spec)

    fitted = _fit(settings, prepared.model, trainable, dataset, x_train, strategy, callbacks, stop_event, backup_dir)
    last_run = prepared.earlier_runs[-1] if prepared.earlier_runs else {}
    if (fitted.resumed_from_epoch and last_run.get("stopped_by_hand")
            and last_run.get("recipe_stage", "") == recipe_stage):
        prepared = prepared.went_on_from_backup()
    devices = replica_devices(strategy)
    files = {}
    if is_chief(strategy):  # the chief writes the weights; the other workers hold the same values
        # saved before scoring: a run whose scoring fails keeps what it learned (its backup is gone by now)
        files = store.save(prepared.model, out_dir, _record(settings, prepared, fitted, {}, len(x_train),
                                                            strategy.num_replicas_in_sync, fresh_parts, recipe_stage))
    try:
        metrics = store.evaluate(prepared.model, x_test, y_test)
    except Exception as err:
        raise RuntimeError(f"the trained weights were saved in {out_dir}, but scoring them failed ({err}); score "
                           f"them with: {scoring_command(settings.model, settings.dataset, out_dir)}") from err
    if files:
        store.record_metrics(settings.model, settings.dataset, metrics, out_dir, stamp=False)
    return TrainResult(settings, prepared.model, metrics, files, fitted.epochs_completed, fitted.stopped,
                       fitted.seconds, fitted.history, devices)


# --- the shipped recipes, end to end --------------------------------------------------------------------------

def stage_settings(name: str, dataset: str, stage: Stage) -> TrainSettings:
    return TrainSettings(model=name, dataset=dataset, epochs=stage.epochs, batch_size=stage.batch_size,
                         learning_rate=stage.learning_rate, lr_decay=stage.lr_decay, seed=stage.seed,
                         max_minutes=stage.max_minutes, front_end_from=stage.front_end_from).resolved()


def describe_recipe(name: str, dataset: str) -> list[str]:
    """The recipe as lines a person reads (`train NAME --dry-run`)."""
    lines = []
    for index, stage in enumerate(catalogue.spec(name).stages(dataset), 1):
        start = "from scratch" if index == 1 else "continues stage " + str(index - 1)
        if stage.front_end_from:
            start += f", with the layers of the shipped MNIST {stage.front_end_from} that fit copied in"
        budget = f", stopped after {stage.max_minutes:g} min" if stage.max_minutes else ""
        lines.append(f"stage {index} ({start}): {stage.epochs} epochs{budget}, batch {stage.batch_size}, "
                     f"Adam {stage.learning_rate:g} × {stage.lr_decay:g} per epoch, seed {stage.seed}"
                     + (f", config {json.dumps(stage.config)}" if stage.config else "")
                     + (f", fresh {', '.join(stage.fresh_parts)}" if stage.fresh_parts else ""))
    return lines


def stages_done(out_dir: Path, name: str, dataset: str) -> int:
    """How many stages of the recipe the weights in `out_dir` have finished, when they stopped part-way through it
    (0 otherwise: a finished or foreign entry is rebuilt from the start). A stage stopped by hand is unfinished."""
    entry = store.read_manifest(out_dir).get(catalogue.stem(name, dataset), {})
    done, _, total = entry.get("recipe_stage", "").partition("/")
    if not (done.isdigit() and total == str(len(catalogue.spec(name).stages(dataset)))):
        return 0
    finished = int(done) - bool(entry.get("stopped_by_hand"))
    return finished if finished < int(total) else 0


def rebuild(name: str, dataset: str = "mnist", out_dir: Path | None = None, callbacks=(), stop_event=None,
            backup_dir: Path | None = None) -> list[TrainResult]:
    """Run the shipped recipe of `name` on `dataset`, every stage, into `out_dir` (default weights/). A recipe
    stopped goes on from the stage it stopped in: from that stage's last epoch if `backup_dir`, which keeps each
    stage's per-epoch backup, has it, else from that stage's start (a later stage from the weights saved at the
    stop)."""
    out_dir = Path(out_dir) if out_dir else store.WEIGHTS_DIR
    stages = catalogue.spec(name).stages(dataset)
    results = []
    for index in range(stages_done(out_dir, name, dataset), len(stages)):
        stage = stages[index]
        results.append(train(stage_settings(name, dataset, stage), out_dir, callbacks, stop_event,
                             config=dict(stage.config) or None, resume=index > 0,
                             backup_dir=Path(backup_dir) / f"stage{index + 1}" if backup_dir else None,
                             fresh_parts=stage.fresh_parts, recipe_stage=f"{index + 1}/{len(stages)}"))
        if stop_event is not None and stop_event.is_set():
            break
    return results
