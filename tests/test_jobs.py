import time

import numpy as np
import pytest

from mnist_models import jobs, registry
from mnist_models.classifiers import CNNConfig
from mnist_models.training import TrainSettings

TINY = CNNConfig(filters=(4, 8), convs_per_block=(1, 1), dense_units=16).to_dict()


def wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_background_training_streams_metrics_stops_and_saves(tmp_path):
    settings = TrainSettings(model="cnn", epochs=3, train_size=3000, batch_size=20)
    job = jobs.start(settings, "tester", out_dir=tmp_path, config=TINY)
    with pytest.raises(jobs.TrainingBusyError, match="tester is training cnn"):
        jobs.start(settings, "someone else", out_dir=tmp_path, config=TINY)
    wait_for(lambda: job.store.snapshot().steps_done >= 5)
    for _ in range(5):  # Stop pressed repeatedly
        job.stop()
    job.thread.join(timeout=60)
    job.stop()  # and once more after it ended
    assert not job.running
    assert len(list(tmp_path.glob("*.weights.h5"))) == 1  # saved once
    snap = job.store.snapshot()
    steps = [b["step"] for b in snap.batches]
    assert steps == sorted(steps) and steps[0] == 1 and len(steps) >= 5
    assert snap.steps_done < 150  # 150 batches per epoch: it stopped mid-epoch
    assert snap.status == "stopped" and "saved" in snap.message
    assert "test_accuracy" in snap.after
    model = registry.load_from(tmp_path, "cnn")
    assert model.classify(np.zeros((1, 28, 28))).shape == (1, 10)


def test_a_second_job_can_start_after_the_first_ends(tmp_path):
    settings = TrainSettings(model="ae_vanilla", epochs=1, train_size=200, batch_size=50)
    first = jobs.start(settings, "a", out_dir=tmp_path, config={"kind": "vanilla", "code_size": 4})
    first.thread.join(timeout=120)
    snap = first.store.snapshot()
    assert snap.status == "finished", snap.message
    assert len(snap.samples) == 1 and snap.samples[0].shape == (2, 8, 28, 28)  # preview after the epoch
    second = jobs.start(settings, "b", out_dir=tmp_path, config={"kind": "vanilla", "code_size": 4})
    second.thread.join(timeout=120)
    assert second.store.snapshot().status == "finished"


def test_failures_are_reported_not_raised(tmp_path):
    settings = TrainSettings(model="cnn", epochs=1, train_size=100, batch_size=50)
    job = jobs.start(settings, "x", out_dir=tmp_path, config={"no_such_field": 1})
    job.thread.join(timeout=60)
    snap = job.store.snapshot()
    assert snap.status == "failed" and "no_such_field" in snap.message


def test_user_weights_choice_switches_what_load_returns(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "USER_WEIGHTS_DIR", tmp_path)
    settings = TrainSettings(model="cnn", epochs=1, train_size=200, batch_size=50)
    job = jobs.start(settings, "me", out_dir=tmp_path, config=TINY)
    job.thread.join(timeout=120)
    assert registry.active_folder("cnn") == registry.WEIGHTS_DIR
    registry.choose_user_weights("cnn", "mnist", True)
    assert registry.active_folder("cnn") == tmp_path
    assert registry.load("cnn").config.dense_units == 16
    registry.choose_user_weights("cnn", "mnist", False)
    assert registry.active_folder("cnn") == registry.WEIGHTS_DIR
    with pytest.raises(registry.WeightsError, match="no retrained weights"):
        registry.choose_user_weights("capsnet", "mnist", True)
