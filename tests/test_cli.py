"""The command line as a person uses it: every subcommand's --help, a quiet start, a tiny real run with --json,
the replicas a distributed run reports, and importing a weights zip."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_models import store, transfer

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ["fetch-data", "train", "evaluate", "bench", "import-weights", "list"]
# a tiny CNN, scored on 500 test digits
TINY_CNN = ["--set", "filters=[4,8]", "--set", "convs_per_block=[1,1]", "--set", "dense_units=16",
            "--test-size", "500"]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_models", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_explains_itself(command, capsys):
    from mnist_models import cli as command_line

    with pytest.raises(SystemExit) as finished:
        command_line.parser().parse_args([command, "--help"])
    out, err = capsys.readouterr()
    assert finished.value.code == 0 and "usage: python -m mnist_models" in out and err == ""


@pytest.mark.slow
def test_a_run_is_quiet_unless_verbose():
    quiet, verbose = cli("list"), cli("--verbose", "list")
    assert quiet.returncode == verbose.returncode == 0 and "cnn" in quiet.stdout
    assert quiet.stderr == "", quiet.stderr  # no oneDNN / cpu_feature_guard / absl start-up lines
    assert "oneDNN" in verbose.stderr or "cpu_feature_guard" in verbose.stderr


@pytest.mark.slow
def test_a_tiny_mirrored_run_says_how_many_replicas_and_where(tmp_path):
    done = cli("train", "cnn", "--epochs", "1", "--train-size", "256", "--strategy", "mirrored", "--logical-cpus",
               "2", "--out", str(tmp_path), *TINY_CNN)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 replicas (MirroredStrategy) on" in done.stdout
    result = json.loads(done.stdout[done.stdout.index("{\n"):])
    assert result["replicas"] == 2 and len(result["devices"]) == 2 and result["epochs_completed"] == 1
    assert result["metrics"]["test_examples"] == 500  # --test-size
    assert store.read_manifest(tmp_path)["cnn-mnist"]["replicas"] == 2


@pytest.mark.slow
def test_evaluate_json_is_one_line(tmp_path):
    done = cli("evaluate", "ae_vanilla", "--json")
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout.strip().splitlines()[-1])["test_examples"] == 10000


@pytest.mark.slow
def test_import_weights_installs_a_zip_and_refuses_a_bad_one(tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(transfer.export_zip("ae_vanilla", "mnist", store.WEIGHTS_DIR))
    done = cli("import-weights", str(good), "--into", str(tmp_path / "into"))
    assert done.returncode == 0 and "installed ae_vanilla-mnist" in done.stdout, done.stderr
    assert store.load_from(tmp_path / "into", "ae_vanilla") is not None
    bad = tmp_path / "bad.zip"
    bad.write_bytes(good.read_bytes()[:-100])
    refused = cli("import-weights", str(bad), "--into", str(tmp_path / "other"))
    assert refused.returncode == 2 and refused.stderr.startswith("error: ")
    assert not (tmp_path / "other" / "manifest.json").exists()


@pytest.mark.slow
def test_train_starts_from_given_weights_or_says_why_not(tmp_path):
    common = ["--epochs", "1", "--train-size", "128", "--test-size", "500", "--out", str(tmp_path / "out")]
    refused = cli("train", "ae_vanilla", "--init", str(tmp_path / "nowhere"), *common)
    assert refused.returncode == 2 and "no trained weights for ae_vanilla on mnist" in refused.stderr, refused.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()
    done = cli("train", "ae_vanilla", "--init", "shipped", *common)
    assert done.returncode == 0, done.stderr[-2000:]
    started = store.read_manifest(tmp_path / "out")["ae_vanilla-mnist"]["init"]
    shipped = store.read_manifest()["ae_vanilla-mnist"]
    assert started["from"] == "shipped" and started["dataset"] == "mnist"
    assert started["weights_sha256"] == {part: f["sha256"] for part, f in shipped["weights"].items()}


def test_an_abandoned_run_says_whether_its_weights_were_saved(tmp_path):
    """A second Ctrl-C can come while the saved weights are being scored: the message then says they were saved,
    and how to score them."""
    from mnist_models.cli import _what_was_saved

    since = "2026-11-30T20:00:00+00:00"
    assert _what_was_saved(tmp_path, "cnn", "mnist", since) == "nothing was saved."
    store.update_manifest("cnn-mnist", {"trained_at": "2026-11-30T19:59:59+00:00", "metrics": {}}, tmp_path)
    assert _what_was_saved(tmp_path, "cnn", "mnist", since) == "nothing was saved."  # an earlier run's weights
    store.update_manifest("cnn-mnist", {"trained_at": since, "metrics": {}}, tmp_path)
    unscored = _what_was_saved(tmp_path, "cnn", "mnist", since)
    assert "saved" in unscored and f"evaluate cnn --dataset mnist --weights {tmp_path} --record" in unscored
    store.update_manifest("cnn-mnist", {"trained_at": since, "metrics": {"test_accuracy": 0.9}}, tmp_path)
    assert "saved and scored" in _what_was_saved(tmp_path, "cnn", "mnist", since)
