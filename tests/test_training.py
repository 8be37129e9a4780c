import threading

import keras
import numpy as np
import pytest

from mnist_models import store
from mnist_models.classifiers import CNNConfig
from mnist_models.training import TrainSettings, train

TINY = CNNConfig(filters=(4, 8), convs_per_block=(1, 1), dense_units=16).to_dict()


class Recorder(keras.callbacks.Callback):
    """Records batch losses; sets `stop_event` after `stop_after` batches, as the Stop button does."""

    def __init__(self, stop_event=None, stop_after=None):
        super().__init__()
        self.stop_event, self.stop_after = stop_event, stop_after
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(float(logs["loss"]))
        if self.stop_event is not None and len(self.batches) == self.stop_after:
            self.stop_event.set()


class PoisonWeights(keras.callbacks.Callback):
    """Turns the weights to NaN after the first batch, as a diverged run does."""

    def on_train_batch_end(self, batch, logs=None):
        for weight in self.model.trainable_weights:
            weight.assign(weight * float("nan"))


def test_stop_event_ends_mid_epoch_and_keeps_what_was_learned(tmp_path):
    stop = threading.Event()
    recorder = Recorder(stop, stop_after=3)
    result = train(TrainSettings(model="cnn", epochs=3, test_size=500,
                                 train_size=2000, batch_size=50), out_dir=tmp_path,
                   callbacks=[recorder], stop_event=stop, config=TINY)
    assert result.stopped and len(recorder.batches) == 3  # 40 batches per epoch: stopped in the first
    entry = store.read_manifest(tmp_path)["cnn-mnist"]
    assert entry["stopped_early"] is True
    assert store.load_from(tmp_path, "cnn").classify(np.zeros((1, 28, 28))).shape == (1, 10)


def test_diverging_run_is_not_saved(tmp_path):
    with pytest.raises(FloatingPointError, match="nothing was saved"):
        train(TrainSettings(model="cnn", epochs=1, test_size=500, train_size=500, batch_size=50, learning_rate=1.0),
              out_dir=tmp_path, config=TINY, callbacks=[PoisonWeights()])
    assert not (tmp_path / "cnn-mnist.weights.h5").exists()


@pytest.mark.parametrize("change, message", [
    ({"epochs": -1}, "epochs"),
    ({"batch_size": -5}, "batch size"),
    ({"learning_rate": 1e9}, "learning rate"),
    ({"learning_rate": float("nan")}, "learning rate"),
    ({"dataset": "cifar"}, "trains on"),
])
def test_absurd_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings(model="cnn", **change).resolved()


def test_settings_round_trip():
    settings = TrainSettings(model="capsnet", epochs=3).resolved()
    assert TrainSettings.from_dict(settings.to_dict()) == settings


def test_a_run_whose_scoring_fails_keeps_its_weights(tmp_path, monkeypatch):
    """The weights are saved before they are scored: a failure while scoring (here a made-up one) loses nothing,
    and the message says where the weights are and how to score them."""
    def broken(model, x, y):
        raise ValueError("a scorer that fails")

    monkeypatch.setattr(store, "evaluate", broken)
    with pytest.raises(RuntimeError, match="weights were saved in .*evaluate cnn"):
        train(TrainSettings(model="cnn", epochs=1, test_size=100, train_size=200, batch_size=50), out_dir=tmp_path,
              config=TINY)
    assert store.load_from(tmp_path, "cnn").classify(np.zeros((1, 28, 28))).shape == (1, 10)


def test_a_time_budget_counts_the_epochs_before_a_restart(tmp_path):
    """A run restarted from its backup has only what is left of its budget: with the whole budget spent before the
    restart (as the backup's epoch times say), it stops in its first batch."""
    import json

    from mnist_models.training import TimeBudget

    over = threading.Event()
    backup = type("Backup", (), {"seconds_before_restart": [30.0, 31.0]})()
    budget = TimeBudget(1.0, over, backup)
    budget.on_train_begin()
    assert over.wait(timeout=5)  # 61 s spent of 60: the budget is over at once
    budget.on_train_end()
    fresh = threading.Event()
    unspent = TimeBudget(1.0, fresh, type("Backup", (), {"seconds_before_restart": json.loads("[10.0]")})())
    unspent.on_train_begin()
    assert not fresh.wait(timeout=0.5)
    unspent.on_train_end()


def class_npz(tmp_path, count: int = 6):
    """An .npz as the Class page exports it: drawings of the class, labelled with the digit their round asked for."""
    from mnist_models import classroom

    rng = np.random.default_rng(0)
    drawings = [classroom.Drawing(seq, 1, "Ada", 1, seq % 10, rng.integers(0, 256, (28, 28), dtype=np.uint8),
                                  np.eye(10)[seq % 10], np.eye(10)[seq % 10], 0.0) for seq in range(1, count + 1)]
    path = tmp_path / "class-ABCDEF.npz"
    path.write_bytes(classroom.export_npz(drawings))
    return path


def test_a_class_download_is_mixed_into_training_as_a_tenth_of_each_epoch(tmp_path):
    from mnist_models.training import with_extra_data

    x, y = np.zeros((540, 28, 28), np.uint8), np.zeros(540, np.int64)
    mixed_x, mixed_y = with_extra_data(x, y, class_npz(tmp_path))
    assert len(mixed_x) == 540 + 60 and np.bincount(mixed_y[540:], minlength=10)[1:7].tolist() == [10] * 6
    result = train(TrainSettings(model="cnn", epochs=1, test_size=100, train_size=200, batch_size=50,
                                 extra_data=str(class_npz(tmp_path))), out_dir=tmp_path / "out", config=TINY)
    recorded = store.read_manifest(tmp_path / "out")["cnn-mnist"]["training"]["extra_data"]
    assert recorded.startswith("class-ABCDEF.npz (sha256 ") and str(tmp_path) not in recorded
    assert result.metrics["test_examples"] == 100


def test_extra_data_that_is_not_a_class_download_is_refused_clearly(tmp_path):
    from mnist_models.training import load_extra_data

    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((3, 32, 32), np.uint8), y_train=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="28×28 uint8"):
        load_extra_data(bad)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an .npz with x_train and y_train"):
        load_extra_data(tmp_path / "text.npz")
