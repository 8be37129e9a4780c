"""tf.distribute: MirroredStrategy over two logical CPUs matches the default strategy; two local workers with
MultiWorkerMirroredStrategy finish, and after one is killed the restarted cluster resumes from the backup."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mnist_models import cluster, store
from mnist_models.training import TrainSettings

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parent.parent

TRAIN_SCRIPT = textwrap.dedent("""
    import json, sys
    from mnist_models import distribute, training
    distribute.split_cpu(2)  # before TensorFlow starts: two logical CPU devices
    settings, out, config = sys.argv[1:4]
    result = training.train(training.TrainSettings.from_dict(json.loads(settings)), out_dir=out,
                            config=json.loads(config))
    print("HISTORY " + json.dumps({k: [float(v) for v in vals] for k, vals in result.history.items()}))
""")


def train_on_two_logical_cpus(out: Path, config: dict, **settings) -> dict:
    """One training in its own process: a process runs one strategy (collective ops keep per-process state)."""
    done = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, json.dumps(settings), str(out), json.dumps(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.split("HISTORY ")[-1])


def test_mirrored_over_two_logical_cpus_matches_the_default_strategy(tmp_path):
    tiny_cnn = {"filters": [4, 8], "convs_per_block": [1, 1], "dense_units": 16, "dropout": 0.0, "max_shift": 0}
    common = dict(model="cnn", epochs=3, train_size=1024, test_size=500, learning_rate=3e-3)
    default = train_on_two_logical_cpus(tmp_path / "default", tiny_cnn, batch_size=64, **common)
    mirrored = train_on_two_logical_cpus(tmp_path / "mirrored", tiny_cnn, batch_size=32, strategy="mirrored",
                                         **common)
    # same global batch (64 = 2 replicas × 32), same seed and data order: the same trajectory up to float sums
    assert mirrored["loss"] == pytest.approx(default["loss"], rel=2e-3)
    assert default["loss"][-1] < default["loss"][0]
    assert store.read_manifest(tmp_path / "mirrored")["cnn-mnist"]["replicas"] == 2
    assert store.read_manifest(tmp_path / "default")["cnn-mnist"]["replicas"] == 1


@pytest.mark.parametrize("model, config", [("vae", {"filters": [4, 8], "dense_units": 16}),
                                           ("aeacgan", {"width": 4, "latent_dim": 8, "noise": "uniform"})])
def test_mirrored_trains_the_custom_train_step_families(tmp_path, model, config):
    history = train_on_two_logical_cpus(tmp_path, config, model=model, epochs=2, train_size=128, test_size=200,
                                        batch_size=16, strategy="mirrored")
    assert all(all(map(lambda v: v == v, values)) for values in history.values())  # no NaN
    assert store.read_manifest(tmp_path)[f"{model}-mnist"]["replicas"] == 2


def start_cluster(tmp_path: Path, tag: str, args: list[str]) -> list[subprocess.Popen]:
    ports = cluster.free_ports(2)
    return [cluster.start_worker(ports, i, args, tmp_path / f"{tag}-worker{i}.log", threads=1) for i in range(2)]


def wait_all(procs, tmp_path, timeout=300) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        logs = "\n".join(f.read_text()[-2000:] for f in sorted(tmp_path.glob("*.log")))
        pytest.fail(f"the workers did not finish:\n{logs}")


def test_two_workers_train_and_resume_after_one_is_killed(tmp_path):
    out, backup = tmp_path / "weights", tmp_path / "backup"
    base = ["cnn", "--train-size", "1024", "--test-size", "500", "--batch-size", "32", "--out", str(out)]
    epochs = 8
    procs = start_cluster(tmp_path, "killed", [*base, "--epochs", str(epochs), "--backup-dir", str(backup)])
    metadata = backup / "training_metadata.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (metadata.is_file() and json.loads(metadata.read_text())["epoch"] >= 2):
        assert procs[0].poll() is None, (tmp_path / "killed-worker0.log").read_text()[-2000:]
        time.sleep(0.2)
    backed_up = json.loads(metadata.read_text())["epoch"]
    assert 2 <= backed_up < epochs
    os.kill(procs[1].pid, signal.SIGKILL)  # a worker dies mid-run; its peer would fail, or hang on the lost
    procs[0].kill()  # collective: the cluster is restarted as a whole, as an orchestrator would
    procs[0].wait()

    codes = wait_all(start_cluster(tmp_path, "restarted", [*base, "--epochs", str(epochs),
                                                           "--backup-dir", str(backup)]), tmp_path)
    assert codes == [0, 0], (tmp_path / "restarted-worker0.log").read_text()[-2000:]
    entry = store.read_manifest(out)["cnn-mnist"]
    assert entry["replicas"] == 2 and entry["training"]["strategy"] == "multiworker"
    assert entry["metrics"]["test_accuracy"] > 0.5
    assert len(list(out.glob("cnn-mnist-*.weights.h5"))) == 1  # only the chief wrote
    assert entry["resumed_from_epoch"] >= backed_up
    assert entry["epochs_completed"] == epochs - entry["resumed_from_epoch"]  # it did not start over
    assert not backup.exists()  # a finished run removes its backup


def test_multiworker_needs_tf_config(monkeypatch):
    from mnist_models.distribute import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multiworker")
    with pytest.raises(ValueError, match="strategy"):
        TrainSettings(strategy="horovod").resolved()
