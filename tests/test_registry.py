import json
import shutil
import subprocess
import sys

import pytest

from mnist_models import registry
from mnist_models.classifiers import CNNConfig
from mnist_models.training import TrainSettings, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    tiny = CNNConfig(filters=(4, 8), convs_per_block=(1, 1), dense_units=16).to_dict()
    train(TrainSettings(model="cnn", epochs=1, train_size=200, batch_size=50), out_dir=folder, config=tiny)
    return folder


def copy_of(trained, tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(trained, folder)
    return folder


def test_missing_file_names_file_and_command(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    (folder / "cnn-mnist.weights.h5").unlink()
    with pytest.raises(registry.WeightsError, match="cnn-mnist.weights.h5 is missing.*train cnn --dataset mnist"):
        registry.load_from(folder, "cnn")


def test_truncated_file_is_caught_by_sha256(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    path = folder / "cnn-mnist.weights.h5"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(registry.WeightsError, match="does not match the sha256.*python -m mnist_models train"):
        registry.load_from(folder, "cnn")


def test_weights_for_the_wrong_architecture(trained, tmp_path):
    folder = copy_of(trained, tmp_path)
    manifest = registry.read_manifest(folder)
    manifest["cnn-mnist"]["config"]["dense_units"] = 32  # the file no longer fits the built network
    registry.update_manifest("cnn-mnist", manifest["cnn-mnist"], folder)
    with pytest.raises(registry.WeightsError, match="do not fit the cnn architecture"):
        registry.load_from(folder, "cnn")


def test_no_entry_says_how_to_train(tmp_path):
    with pytest.raises(registry.WeightsError, match="no trained weights for capsnet on fashion"):
        registry.load_from(tmp_path, "capsnet", "fashion")


def test_unknown_model_and_dataset():
    with pytest.raises(KeyError, match="unknown model"):
        registry.build("resnet")
    with pytest.raises(ValueError, match="available for"):
        registry.build("cnn", "cifar")


def test_load_is_cached_per_process(trained):
    assert registry.load("cnn", folder=trained) is registry.load("cnn", folder=trained)


def test_cli_evaluate_prints_one_json_object(trained):
    out = subprocess.run([sys.executable, "-m", "mnist_models", "evaluate", "cnn", "--weights", str(trained),
                          "--json"], capture_output=True, text=True, timeout=300, check=True).stdout
    metrics = json.loads(out.strip().splitlines()[-1])
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["test_examples"] == 10000


def test_cli_reports_errors_without_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mnist_models", "evaluate", "capsnet", "--weights",
                          str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "python -m mnist_models train capsnet" in run.stderr
