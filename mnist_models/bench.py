"""Benchmarks that print figures (never asserted in tests): variants are compared as ratios in one run."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from . import registry
from .capsnet import CapsNet, ReferenceCapsNet
from .data import load_dataset
from .preprocess import to_mnist


def _percentiles(samples_ms: list[float]) -> str:
    p50, p95 = np.percentile(samples_ms, [50, 95])
    return f"p50 {p50:6.2f} ms   p95 {p95:6.2f} ms"


def capsnet_training(batches: int, batch_size: int = 100, rounds: int = 3) -> dict[str, float]:
    """Training images/s of our routing and the tiled reference, same weights and data, interleaved rounds."""
    (x_train, y_train), _ = load_dataset("mnist")
    x, y = x_train[: batches * batch_size], y_train[: batches * batch_size]
    runs = {}
    for label, cls in [("ours (GEMM routing)", CapsNet), ("reference (tile + map_fn matmul)", ReferenceCapsNet)]:
        keras.utils.set_random_seed(0)
        model = cls()
        trainer = model.compile(1e-3)
        trainer.fit(model.train_dataset(x[:2 * batch_size], y[:2 * batch_size], batch_size, seed=0), epochs=1,
                    verbose=0)  # trace and warm up
        data = model.train_dataset(x, y, batch_size, seed=0).cache()
        runs[label] = (trainer, data)
    rates: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, (trainer, data) in runs.items():
            started = time.perf_counter()
            trainer.fit(data, epochs=1, verbose=0)
            rates[label].append(len(x) / (time.perf_counter() - started))
    return {label: float(np.median(r)) for label, r in rates.items()}


def inference_latency(repeats: int) -> dict[str, list[float]]:
    """One 280×280 canvas drawing → preprocess + CNN + CapsNet + reconstruction, per call, in ms."""
    cnn, caps = registry.load("cnn"), registry.load("capsnet")
    (_, _), (x_test, _) = load_dataset("mnist")
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[:, :, 3] = np.kron(x_test[0], np.ones((10, 10), np.uint8))

    def direct():
        image = to_mnist(canvas)[None]
        cnn.classify(image)
        out = caps.analyze(image)
        caps.reconstruct(out.poses, int(out.lengths.argmax()))

    def with_predict():
        image = to_mnist(canvas)[None]
        cnn.classifier.predict(image, verbose=0)
        lengths, poses = caps.encoder.predict(image, verbose=0)
        masked = poses * np.eye(10, dtype=np.float32)[lengths.argmax(1)][:, :, None]
        caps.decoder.predict(masked.reshape(1, -1), verbose=0)

    timings = {}
    for label, fn in [("direct calls (tf.function)", direct), ("Model.predict", with_predict)]:
        for _ in range(5):
            fn()
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - started) * 1000)
        timings[label] = samples
    return timings


def multiworker_throughput(workers: tuple[int, ...] = (1, 2), train_size: int = 6000, epochs: int = 3,
                           batch_size: int = 64) -> dict[int, float]:
    """Training images/s of the CNN with MultiWorkerMirroredStrategy on 1 and on 2 local worker processes.

    Each worker takes `batch_size` per step (the global batch grows with the workers); the rate is the chief's
    images per second over the epochs after the first (which includes tracing and the cluster's start-up)."""
    import tempfile

    from . import cluster

    rates = {}
    for n in workers:
        with tempfile.TemporaryDirectory() as out:
            ports = cluster.free_ports(n)
            args = ["cnn", "--epochs", str(epochs), "--train-size", str(train_size), "--batch-size", str(batch_size),
                    "--out", out]
            procs = [cluster.start_worker(ports, i, args, Path(out) / f"worker{i}.log", threads=max(1, 2 // n))
                     for i in range(n)]
            if any(p.wait(timeout=900) != 0 for p in procs):
                raise RuntimeError(f"a worker failed; see the logs in {out}")
            entry = registry.read_manifest(Path(out))["cnn-mnist"]
            rates[n] = entry["train_examples"] / float(np.mean(entry["seconds_per_epoch"][1:]))
    return rates


def run(what: str, args) -> int:
    if what == "capsnet":
        rates = capsnet_training(args.batches)
        for label, rate in rates.items():
            print(f"{label:36s} {rate:8.1f} images/s (training, batch 100)")
        ours, ref = rates.values()
        print(f"{'speed-up':36s} {ours / ref:8.2f}×")
    elif what == "inference":
        timings = inference_latency(args.repeats)
        for label, samples in timings.items():
            print(f"{label:28s} {_percentiles(samples)}   ({len(samples)} drawings)")
        direct, predict = (np.percentile(s, 50) for s in timings.values())
        print(f"{'Model.predict / direct':28s} {predict / direct:6.2f}× (p50)")
    elif what == "multiworker":
        rates = multiworker_throughput()
        for n, rate in rates.items():
            print(f"{n} worker{'s' if n > 1 else ' '} (CNN, batch 64 per worker) {rate:8.1f} images/s")
        print(f"{'2 workers / 1 worker':36s} {rates[2] / rates[1]:8.2f}×")
    return 0
