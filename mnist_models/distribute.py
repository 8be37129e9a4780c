"""tf.distribute for `train`: strategies, the chief that writes, a per-epoch backup every worker restores from,
and two work-arounds for Keras 3's `fit` under a strategy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .base import ZooModel
from .data import write_atomic

STRATEGIES = ("default", "mirrored", "multiworker")


def replica_devices(strategy: tf.distribute.Strategy) -> tuple[str, ...]:
    """The devices this process trains on, one per local replica."""
    try:
        return tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: one replica, on TensorFlow's default device
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return (devices[0].name,)


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


def adapt_fit_to_strategy(trainable: keras.Model, strategy: tf.distribute.Strategy, element_spec) -> None:
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

    def __init__(self, backup_dir: Path, chief: bool, owner: ZooModel, timer, keep=lambda: False):
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=True)
        self.chief, self.owner, self.timer, self.keep = chief, owner, timer, keep
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
        if self.chief and not self.keep():  # `keep()`: the run is unfinished and will go on from the backup
            super().on_train_end(logs)
