import io
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from mnist_models import catalogue, store, transfer
from mnist_models.classifiers import CNNConfig
from mnist_models.training import TrainSettings, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    tiny = CNNConfig(filters=(4, 8), convs_per_block=(1, 1), dense_units=16).to_dict()
    train(TrainSettings(model="cnn", epochs=1, test_size=500,
                        train_size=200, batch_size=50), out_dir=folder, config=tiny)
    return folder


def copy_of(trained, tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(trained, folder)
    return folder


def weights_file(folder):
    return folder / store.read_manifest(folder)["cnn-mnist"]["weights"]["model"]["file"]


def test_missing_file_names_file_and_command(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    path = weights_file(folder)
    path.unlink()
    with pytest.raises(store.WeightsError, match=f"{path.name} is missing.*train cnn --dataset mnist"):
        store.load_from(folder, "cnn")


def test_truncated_file_is_caught_by_sha256(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    path = weights_file(folder)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(store.WeightsError, match="does not match the sha256.*python -m mnist_models train"):
        store.load_from(folder, "cnn")


def test_weights_for_the_wrong_architecture(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    manifest = store.read_manifest(folder)
    manifest["cnn-mnist"]["config"]["dense_units"] = 32  # the file no longer fits the built network
    store.update_manifest("cnn-mnist", manifest["cnn-mnist"], folder)
    with pytest.raises(store.WeightsError, match="do not fit the cnn architecture"):
        store.load_from(folder, "cnn")


def test_no_entry_says_how_to_train(tmp_path):
    with pytest.raises(store.WeightsError, match="no trained weights for capsnet on mnist"):
        store.load_from(tmp_path, "capsnet", "mnist")


def test_unknown_model_and_dataset():
    with pytest.raises(KeyError, match="unknown model"):
        catalogue.build("resnet")
    with pytest.raises(ValueError, match="available for"):
        catalogue.build("cnn", "cifar")


def test_load_is_cached_per_process(trained):
    assert store.load("cnn", folder=trained) is store.load("cnn", folder=trained)


@pytest.mark.slow
def test_cli_evaluate_prints_one_json_object(trained):
    out = subprocess.run([sys.executable, "-m", "mnist_models", "evaluate", "cnn", "--weights", str(trained),
                          "--json"], capture_output=True, text=True, timeout=300, check=True).stdout
    metrics = json.loads(out.strip().splitlines()[-1])
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["test_examples"] == 10000


@pytest.mark.slow
def test_cli_reports_errors_without_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mnist_models", "evaluate", "capsnet", "--weights",
                          str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "python -m mnist_models train capsnet" in run.stderr


def test_saving_again_replaces_the_old_version_and_orphans_are_cleaned(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    old = weights_file(folder)
    model = store.load_from(folder, "cnn")
    model.network.layers[-1].kernel.assign(model.network.layers[-1].kernel * 0.5)
    entry = store.read_manifest(folder)["cnn-mnist"]
    store.save(model, folder, entry)
    assert not old.exists() and weights_file(folder).exists()
    (folder / ".cnn-mnist-model.abc.tmp.weights.h5").write_bytes(b"partial")
    (folder / "cnn-mnist-model-0123456789ab.weights.h5").write_bytes(b"unreferenced")
    assert store.clean_orphans(folder) == []  # too fresh: may be a save in progress
    removed = store.clean_orphans(folder, min_age_s=0)
    assert len(removed) == 2 and weights_file(folder).exists()
    store.load_from(folder, "cnn")


KILLER = """
import sys
import zipfile
from pathlib import Path
from mnist_models import catalogue, store, transfer
folder = Path(sys.argv[1])
model = store.load_from(folder, "cnn")
entry = store.read_manifest(folder)["cnn-mnist"]
print("ready", flush=True)
while True:
    store.save(model, folder, entry)
"""


@pytest.mark.slow
def test_killing_a_save_midway_leaves_loadable_weights(trained, tmp_path):
    """SIGKILL a process that saves over and over; whatever moment it dies, the weights still load."""
    import random
    import signal
    import time

    folder = copy_of(trained, tmp_path)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", KILLER, str(folder)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(random.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store.load_from(folder, "cnn")  # raises if the manifest points at a partial file
    store.clean_orphans(folder, min_age_s=0)
    assert len(list(folder.glob("*.weights.h5"))) == 1


def test_a_saved_config_lacking_a_newer_field_loads_as_it_was_trained(tmp_path):
    """The zoo's DCGAN spec now asks new runs for a categorical code and a hidden discriminator layer; weights
    saved before those fields existed load as they were trained (the fields' class defaults, not the spec's)."""
    from mnist_models.gans import GAN, GANConfig

    assert catalogue.build("dcgan").config.categories == 10
    gan = GAN(GANConfig(kind="dcgan", latent_dim=8, width=4, batch_norm=True))
    older = {k: v for k, v in gan.config.to_dict().items() if k not in ("disc_hidden", "categories")}
    store.save(gan, tmp_path, {"model": "dcgan", "dataset": "mnist", "config": older})
    loaded = store.load_from(tmp_path, "dcgan")
    assert loaded.config.categories == 0 and loaded.config.disc_hidden == 0
    np.testing.assert_allclose(loaded.generate(2, seed=1), gan.generate(2, seed=1), atol=1e-6)


def _zip_with(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def _exported(name: str = "ae_vanilla") -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(transfer.export_zip(name, "mnist", store.WEIGHTS_DIR))) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def test_weights_zip_round_trip_installs_and_loads(tmp_path):
    files = _exported()
    assert set(files) == {"manifest.json", store.read_manifest()["ae_vanilla-mnist"]["weights"]["model"]["file"]}
    assert transfer.import_zip(_zip_with(files), tmp_path) == "ae_vanilla-mnist"
    ours = store.load_from(tmp_path, "ae_vanilla").reconstruct(np.zeros((2, 28, 28)))
    shipped = store.load_from(store.WEIGHTS_DIR, "ae_vanilla").reconstruct(np.zeros((2, 28, 28)))
    assert np.array_equal(ours, shipped)


@pytest.mark.parametrize("damage, message", [
    ("tamper", "does not match the sha256"),
    ("shape", "do not fit the ae_vanilla architecture"),
    ("traversal", "not a weights file"),
    ("missing", "missing from the zip"),
    ("unknown", "names no model of this zoo"),
    ("no manifest", "has no manifest.json"),
    ("not a zip", "not a weights zip"),
])
def test_a_bad_weights_zip_is_refused_and_nothing_changes(tmp_path, damage, message):
    transfer.import_zip(_zip_with(_exported()), tmp_path)  # something already installed
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    files = _exported()
    (key, entry), = json.loads(files["manifest.json"]).items()
    weights = entry["weights"]["model"]["file"]
    if damage == "tamper":
        files[weights] = files[weights][:-64] + bytes(64)
    elif damage == "shape":  # a manifest that claims another architecture than the tensors have
        entry["config"]["code_size"] = 16
    elif damage == "traversal":
        entry["weights"]["model"]["file"] = "../" + weights
    elif damage == "missing":
        del files[weights]
    elif damage == "unknown":
        entry["model"] = "resnet"
    elif damage == "no manifest":
        del files["manifest.json"]
    if "manifest.json" in files:
        files["manifest.json"] = json.dumps({key: entry}).encode()
    source = io.BytesIO(b"not a zip at all") if damage == "not a zip" else _zip_with(files)
    with pytest.raises(store.WeightsError, match=message):
        transfer.import_zip(source, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_storing_weights_as_float16_halves_them_and_keeps_the_answers(tmp_path, mnist):
    (_, _), (x_test, y_test) = mnist
    model = catalogue.build("cnn", config={"filters": [8, 16], "dense_units": 256})  # tensors outweigh h5 overhead
    store.save(model, tmp_path, {"model": "cnn", "dataset": "mnist", "config": model.config.to_dict(),
                                    "metrics": {"test_accuracy": 0.1}})
    before = tmp_path / store.read_manifest(tmp_path)["cnn-mnist"]["weights"]["model"]["file"]
    size = before.stat().st_size
    entry = store.store_as_float16("cnn", "mnist", tmp_path)
    after = tmp_path / entry["weights"]["model"]["file"]
    assert not before.exists() and after.stat().st_size < 0.6 * size
    assert entry["weights_dtype"] == "float16" and entry["metrics_float32"] == {"test_accuracy": 0.1}
    images = x_test[:50].astype(np.float32) / 255
    np.testing.assert_allclose(store.load_from(tmp_path, "cnn").classify(images), model.classify(images),
                               atol=2e-2)


def test_shipped_weights_stay_within_the_budget():
    """Every file the manifest lists, and nothing else in weights/, together under 80 MB."""
    manifest = store.read_manifest()
    listed = {f["file"] for entry in manifest.values() for f in store.entry_files(entry)}
    present = {p.name for p in store.WEIGHTS_DIR.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert present - listed == {store.MANIFEST_NAME}  # no stray weights file left behind by a promotion
    total = sum((store.WEIGHTS_DIR / name).stat().st_size for name in present)
    assert total < 80e6, total / 1e6


def test_recorded_metrics_merge_into_the_entry_and_a_missing_entry_is_refused(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    before = store.read_manifest(folder)["cnn-mnist"]
    store.record_metrics("cnn", "mnist", {"extra_score": 0.5}, folder)
    after = store.read_manifest(folder)["cnn-mnist"]
    assert after["metrics"] == {**before["metrics"], "extra_score": 0.5} and "metrics_recorded_at" in after
    assert after["weights"] == before["weights"]
    with pytest.raises(store.WeightsError, match="vae-mnist is not in"):
        store.record_metrics("vae", "mnist", {"test_loss": 1.0}, folder)
    assert "vae-mnist" not in store.read_manifest(folder)
