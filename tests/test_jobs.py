import time

import numpy as np
import pytest

from mnist_models import jobs, store
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


@pytest.mark.slow
def test_background_training_streams_metrics_stops_and_saves(tmp_path):
    settings = TrainSettings(model="cnn", epochs=3, test_size=500, train_size=3000, batch_size=20)
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
    model = store.load_from(tmp_path, "cnn")
    assert model.classify(np.zeros((1, 28, 28))).shape == (1, 10)


@pytest.mark.slow
def test_a_second_job_can_start_after_the_first_ends(tmp_path):
    settings = TrainSettings(model="ae_vanilla", epochs=1, test_size=500, train_size=200, batch_size=50)
    first = jobs.start(settings, "a", out_dir=tmp_path, config={"kind": "vanilla", "code_size": 4})
    first.thread.join(timeout=120)
    snap = first.store.snapshot()
    assert snap.status == "finished", snap.message
    assert len(snap.previews) >= 2  # at the start and after the epoch
    assert snap.previews[0].step == 0 and snap.previews[-1].step == 4
    assert all(p.view.shape == (2, 16, 28, 28) and p.view.dtype == np.uint8 for p in snap.previews)
    second = jobs.start(settings, "b", out_dir=tmp_path, config={"kind": "vanilla", "code_size": 4})
    second.thread.join(timeout=120)
    assert second.store.snapshot().status == "finished"


def test_failures_are_reported_not_raised(tmp_path):
    settings = TrainSettings(model="cnn", epochs=1, test_size=500, train_size=100, batch_size=50)
    job = jobs.start(settings, "x", out_dir=tmp_path, config={"no_such_field": 1})
    job.thread.join(timeout=60)
    snap = job.store.snapshot()
    assert snap.status == "failed" and "no_such_field" in snap.message


def test_user_weights_choice_switches_what_load_returns(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "USER_WEIGHTS_DIR", tmp_path)
    settings = TrainSettings(model="cnn", epochs=1, test_size=500, train_size=200, batch_size=50)
    job = jobs.start(settings, "me", out_dir=tmp_path, config=TINY)
    job.thread.join(timeout=120)
    assert store.active_folder("cnn") == store.WEIGHTS_DIR
    store.choose_user_weights("cnn", "mnist", True)
    assert store.active_folder("cnn") == tmp_path
    assert store.load("cnn").config.dense_units == 16
    store.choose_user_weights("cnn", "mnist", False)
    assert store.active_folder("cnn") == store.WEIGHTS_DIR
    with pytest.raises(store.WeightsError, match="no retrained weights"):
        store.choose_user_weights("capsnet", "mnist", True)


@pytest.mark.slow
def test_previews_arrive_during_an_epoch_and_cost_little(tmp_path, mnist):
    """A tiny DCGAN, one epoch of 40 batches, a preview as often as the cost limit lets: several previews come
    before the epoch ends, and the time they took stays within the limit (5 % of the training time)."""
    from mnist_models.gans import GAN, GANConfig
    from mnist_models.training import train

    settings = TrainSettings(model="dcgan", epochs=1, test_size=500, train_size=40 * 16, batch_size=16)
    model = GAN(GANConfig(kind="dcgan", latent_dim=8, width=4))
    store = jobs.MetricsStore(settings.resolved(), "tester", 40)
    (_, _), (x_test, _) = mnist
    callback = jobs.MetricsCallback(store, 40, jobs.view_function(model, x_test[:8]), every_s=0.0)
    started = time.perf_counter()
    train(settings, out_dir=tmp_path, callbacks=[callback], model=model)
    seconds = time.perf_counter() - started
    snap = store.snapshot()
    during = [p for p in snap.previews if 0 < p.step < 40]
    assert len(during) >= 3, [p.step for p in snap.previews]
    assert [p.step for p in snap.previews] == sorted(p.step for p in snap.previews)
    assert not np.array_equal(snap.previews[0].view, snap.previews[-1].view)  # the samples changed as it learned
    assert snap.preview_seconds <= 0.06 * seconds + 0.5


def test_a_classifier_previews_its_answers_on_fixed_test_digits(mnist):
    from mnist_models.classifiers import CNNClassifier

    model = CNNClassifier(CNNConfig.from_dict(TINY))
    (_, _), (x_test, _) = mnist
    answers = jobs.view_of(model, x_test[:jobs.VIEW_DIGITS])
    assert answers.shape == (jobs.VIEW_DIGITS,) and answers.dtype.kind == "i" and answers.max() <= 9


@pytest.mark.slow
def test_starting_from_the_weights_in_use_really_starts_there(tmp_path):
    """The first batch's loss of a run started from the shipped VAE is near its test loss, far below scratch's;
    the manifest says where it started."""
    from mnist_models.training import train

    shipped = store.read_manifest()["vae-mnist"]
    first = {}
    for init in ("in_use", "scratch"):
        settings = TrainSettings(model="vae", epochs=1, test_size=500, train_size=256, batch_size=64, init=init)
        recorder = jobs.MetricsStore(settings.resolved(), "tester", 4)
        train(settings, out_dir=tmp_path / init, callbacks=[jobs.MetricsCallback(recorder, 4)])
        first[init] = recorder.snapshot().batches[0]["loss"]
    test_loss = shipped["metrics"]["test_loss"]
    assert abs(first["in_use"] - test_loss) < 0.1 * test_loss, first
    assert first["scratch"] > 2 * test_loss, first
    entry = store.read_manifest(tmp_path / "in_use")["vae-mnist"]
    assert entry["init"]["from"] == "in_use" and entry["init"]["dataset"] == "mnist"
    assert entry["init"]["weights_sha256"] == {part: f["sha256"] for part, f in shipped["weights"].items()}
    # the zoo counts the epochs and minutes of the weights it started from
    assert entry["epochs_total"] == 1 + shipped["epochs_total"]
    assert entry["seconds_all_runs"] > shipped.get("seconds_all_runs", shipped["seconds_total"])
    assert "init" not in store.read_manifest(tmp_path / "scratch")["vae-mnist"]
