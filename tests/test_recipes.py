"""The recipes in code are the shipped recipes: every shipped weights file was made by its model's `SPECS` stages."""

import json

import numpy as np
import pytest

from mnist_models import catalogue, store, training
from mnist_models.base import ModelSpec, Stage
from mnist_models.cli import main

SHIPPED = store.read_manifest(store.WEIGHTS_DIR)
RUN_FIELDS = ("batch_size", "learning_rate", "lr_decay", "seed")


def recipe_config(name: str, dataset: str) -> dict:
    """The complete config the recipe builds: the class's defaults under every stage's overrides."""
    spec = catalogue.spec(name)
    return json.loads(json.dumps(catalogue.build(name, dataset, spec.config(dataset)).config.to_dict()))


def loaded_config(entry: dict) -> dict:
    """The complete config a manifest entry's weights load with (a field added after they were saved takes the
    class's default, the behaviour they were trained with)."""
    model = catalogue.build(entry["model"], entry["dataset"], entry["config"], saved=True)
    return json.loads(json.dumps(model.config.to_dict()))


def runs_of(entry: dict) -> list[dict]:
    """The runs a manifest entry records, oldest first: its earlier runs (of a resumed model) and its own."""
    return [*entry.get("earlier_runs", []), entry]


def assert_run_is_stage(run: dict, stage: Stage, where: str) -> None:
    training_settings = run["training"]
    for field in RUN_FIELDS:
        assert training_settings[field] == pytest.approx(getattr(stage, field)), f"{where}: {field}"
    epochs = run["epochs_completed"] + run.get("resumed_from_epoch", 0)
    if stage.max_minutes:  # a time budget: the stage may end before its epochs
        assert training_settings["max_minutes"] == stage.max_minutes and epochs <= stage.epochs, where
    else:  # a run its time budget cut short is rebuilt by the epochs it had
        assert epochs == stage.epochs, where
    assert training_settings.get("front_end_from", "") == stage.front_end_from, where


@pytest.mark.parametrize("key", sorted(SHIPPED))
def test_shipped_weights_were_made_by_their_recipe(key):
    entry = SHIPPED[key]
    name, dataset = entry["model"], entry["dataset"]
    stages = catalogue.spec(name).stages(dataset)
    assert loaded_config(entry) == recipe_config(name, dataset)
    runs = runs_of(entry)
    if "init" not in entry:  # a run started from other weights (--init) recorded the runs before it only in part
        assert len(runs) == len(stages), f"{key}: {len(runs)} runs recorded, the recipe has {len(stages)} stages"
    for offset, run in enumerate(reversed(runs)):
        assert_run_is_stage(run, stages[-1 - offset], f"{key} stage {len(stages) - offset}")


def test_no_manifest_field_holds_an_absolute_path():
    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value
    absolute = [s for s in strings(SHIPPED) if s.startswith("/") or s[1:3] == ":\\"]
    assert not absolute


def test_dry_run_prints_every_stage(capsys):
    assert main(["train", "ae_denoising", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "stage 1 (from scratch): 20 epochs" in out and "stage 4 (continues stage 3): 8 epochs" in out
    assert '"noise_shares": [2, 1, 1]' in out
    assert main(["train", "cnn", "--dry-run", "--epochs", "3"]) == 2  # one run's settings are not the recipe


@pytest.mark.slow
def test_rebuild_runs_every_stage_and_goes_on_after_a_stop(mnist, tmp_path, monkeypatch):
    """A two-stage recipe on a few hundred digits: the second stage continues the first with its own settings and
    config; a recipe stopped after its first stage goes on from the second."""
    (x_train, y_train), (x_test, y_test) = mnist
    monkeypatch.setattr(training, "load_dataset", lambda name: ((x_train[:300], y_train[:300]),
                                                                (x_test[:100], y_test[:100])))
    spec = ModelSpec("cnn", catalogue.SPECS["cnn"].model_class, ("mnist",), "tiny", recipe=(
        Stage(1, batch_size=50, config={"filters": (4, 8), "dense_units": 8}),
        Stage(1, 5e-4, batch_size=50, seed=7, config={"max_shift": 0})))
    monkeypatch.setitem(catalogue.SPECS, "cnn", spec)
    first = training.rebuild("cnn", "mnist", tmp_path)
    entry = store.read_manifest(tmp_path)["cnn-mnist"]
    assert [r.settings.seed for r in first] == [1234, 7] and entry["recipe_stage"] == "2/2"
    assert entry["config"]["max_shift"] == 0 and entry["config"]["filters"] == [4, 8]
    assert entry["earlier_runs"][0]["config"]["max_shift"] == 2 and entry["epochs_total"] == 2
    assert entry["config"] == recipe_config("cnn", "mnist")

    stop = training.threading.Event()

    class StopAfterStageOne(training.keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            stop.set()

    stopped = training.rebuild("cnn", "mnist", tmp_path / "again", callbacks=[StopAfterStageOne()], stop_event=stop)
    assert len(stopped) == 1 and training.stages_done(tmp_path / "again", "cnn", "mnist") == 1
    rest = training.rebuild("cnn", "mnist", tmp_path / "again")
    assert [r.settings.seed for r in rest] == [7]
    assert store.read_manifest(tmp_path / "again")["cnn-mnist"]["recipe_stage"] == "2/2"
    assert training.stages_done(tmp_path / "again", "cnn", "mnist") == 0  # finished: a new rebuild starts over


@pytest.mark.slow
def test_a_stage_stopped_by_hand_goes_on_from_its_backup(mnist, tmp_path, monkeypatch):
    """Stop (Ctrl-C) in the middle of a stage leaves it unfinished: its backup stays, and the same command run
    again finishes that stage from its last epoch, then the rest; a time budget's end finishes a stage."""
    (x_train, y_train), (x_test, y_test) = mnist
    monkeypatch.setattr(training, "load_dataset", lambda name: ((x_train[:300], y_train[:300]),
                                                                (x_test[:100], y_test[:100])))
    tiny = {"filters": (4, 8), "dense_units": 8}
    spec = ModelSpec("cnn", catalogue.SPECS["cnn"].model_class, ("mnist",), "tiny", recipe=(
        Stage(1, batch_size=50, config=tiny), Stage(3, 5e-4, batch_size=50, seed=7)))
    monkeypatch.setitem(catalogue.SPECS, "cnn", spec)
    stop, backup = training.threading.Event(), tmp_path / "backup"

    class StopInSecondEpoch(training.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.params["epochs"] == 3 and training.keras.ops.convert_to_numpy(
                    self.model.optimizer.iterations) == 8:  # 6 batches an epoch: the 2nd of epoch 2
                stop.set()

    stopped = training.rebuild("cnn", "mnist", tmp_path / "out", callbacks=[StopInSecondEpoch()],
                               stop_event=stop, backup_dir=backup)
    entry = store.read_manifest(tmp_path / "out")["cnn-mnist"]
    assert [r.stopped for r in stopped] == [False, True]
    assert entry["recipe_stage"] == "2/2" and entry["stopped_by_hand"] and entry["epochs_completed"] == 2
    assert training.stages_done(tmp_path / "out", "cnn", "mnist") == 1 and (backup / "stage2").is_dir()
    assert not (backup / "stage1").exists()  # a finished stage's backup is gone

    rest = training.rebuild("cnn", "mnist", tmp_path / "out", backup_dir=backup)
    entry = store.read_manifest(tmp_path / "out")["cnn-mnist"]
    assert [r.settings.seed for r in rest] == [7] and not rest[0].stopped and rest[0].epochs_completed == 1
    assert entry["resumed_from_epoch"] == 2 and "stopped_by_hand" not in entry
    assert [run["recipe_stage"] for run in entry["earlier_runs"]] == ["1/2"]  # the stopped run went on
    assert entry["epochs_total"] == 4 and len(entry["seconds_per_epoch"]) == 3
    assert training.stages_done(tmp_path / "out", "cnn", "mnist") == 0 and not any(backup.iterdir())

    budgeted = ModelSpec("cnn", spec.model_class, ("mnist",), "tiny", recipe=(
        Stage(50, batch_size=50, max_minutes=0.001, config=tiny), Stage(1, seed=7)))
    monkeypatch.setitem(catalogue.SPECS, "cnn", budgeted)
    over = training.rebuild("cnn", "mnist", tmp_path / "budget", stop_event=training.threading.Event())
    assert [r.stopped for r in over] == [True, False]  # the budget ended stage 1 early, and stage 2 followed


def test_front_end_head_start_copies_the_layers_that_fit(tmp_path):
    source, target = catalogue.build("cnn"), catalogue.build("cnn_multi")
    copied = training.copy_front_end(source, target)
    assert copied == ["conv0_0", "conv1_0", "conv1_1"]
    for name in copied:
        for a, b in zip(source.network.get_layer(name).get_weights(), target.network.get_layer(name).get_weights(),
                        strict=True):
            np.testing.assert_array_equal(a, b)
