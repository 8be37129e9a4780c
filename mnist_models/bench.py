"""Benchmarks that print figures (never asserted in tests): variants are compared as ratios in one run."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import catalogue, store
from .capsnet import CAPSNET_DESIGN, CapsNet, DigitCapsules, squash
from .data import load_dataset
from .preprocess import to_mnist


def _percentiles(samples_ms: list[float]) -> str:
    p50, p95 = np.percentile(samples_ms, [50, 95])
    return f"p50 {p50:6.2f} ms   p95 {p95:6.2f} ms"


class TiledDigitCapsules(DigitCapsules):
    """The formulation of the popular Keras CapsNet (XifengGuo/CapsNet-Keras, TF2 branch): tile the inputs once
    per output capsule, map a matmul over the examples, route with broadcast multiply + sum. Same weights and
    maths as DigitCapsules (a test checks it); the benchmark's reference for the routing code."""

    def predictions(self, u):
        tiled = tf.tile(u[:, None, :, :, None], (1, self.num_capsules, 1, 1, 1))  # (B, n_out, n_in, d_in, 1)
        w = tf.transpose(tf.reshape(self.W, (self.n_in, self.d_in, self.num_capsules, self.dim)), (2, 0, 3, 1))
        return tf.squeeze(tf.map_fn(lambda x: tf.matmul(w, x), tiled), -1)  # (B, n_out, n_in, d_out)

    def routing(self, u):
        u_hat = self.predictions(u)
        u_hat_const = tf.stop_gradient(u_hat)
        logits = tf.zeros(tf.shape(u_hat)[:3])  # (B, n_out, n_in)
        for i in range(self.routings):
            c = tf.nn.softmax(logits, axis=1)
            last = i == self.routings - 1
            v = squash(tf.reduce_sum(c[..., None] * (u_hat if last else u_hat_const), axis=2))
            if not last:
                logits = logits + tf.reduce_sum(u_hat_const * v[:, :, None, :], axis=-1)
        return v, tf.transpose(c, (0, 2, 1))


class TiledCapsNet(CapsNet):
    capsule_layer = TiledDigitCapsules


CAPSNET_VARIANTS = {  # label: (class, config overrides), all on the same data; the first is what ships
    "shipped: conv stack, strides 1,2,2,2, 64 primary caps, GroupNorm": (CapsNet, CAPSNET_DESIGN),
    "before: the same on BatchNorm": (CapsNet, {**CAPSNET_DESIGN, "norm": "batch"}),
    "the same on GroupNorm, strides 1,1,2,2, 256 primary caps": (CapsNet, {**CAPSNET_DESIGN,
                                                                          "stack_strides": (1, 1, 2, 2)}),
    "before that: conv stack, strides 1,1,2,2, 256 primary caps": (CapsNet, {"front_end": "stack"}),
    "before that: one 9×9 conv, 576 primary capsules": (CapsNet, {"front_end": "single"}),
    "before that, with the tiled reference routing": (TiledCapsNet, {"front_end": "single"}),
}


def capsnet_training(batches: int, batch_size: int = 100, rounds: int = 3) -> dict[str, float]:
    """Training images/s of the CapsNet variants (front ends, routing code), same data, interleaved rounds."""
    (x_train, y_train), _ = load_dataset("mnist")
    x, y = x_train[: batches * batch_size], y_train[: batches * batch_size]
    runs = {}
    for label, (cls, overrides) in CAPSNET_VARIANTS.items():
        keras.utils.set_random_seed(0)
        model = cls(cls.config_class(**overrides))
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
    """What the server computes for one drawing, in ms per drawing: on Draw (a 280×280 canvas → preprocessing, CNN,
    CapsNet, redrawing) and on Two digits (a 36×36 pair → both models), each without and with the routing view
    (the trace and the heat maps the page shows: winner and runner-up at every iteration on Draw, both digits at
    the first and last on Two digits), interleaved so both see the same machine; and Keras' `predict` for the
    Draw page's models, against the direct calls the app makes."""
    from . import multimnist

    cnn, caps = store.load("cnn"), store.load("capsnet")
    cnn_multi, caps_multi = store.load("cnn_multi"), store.load("capsnet_multi")
    (_, _), (x_test, y_test) = load_dataset("mnist")
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[:, :, 3] = np.kron(x_test[0], np.ones((10, 10), np.uint8))
    pair = multimnist.test_pairs(x_test, y_test, 1).images

    def draw_page(routing: bool):
        image = to_mnist(canvas)[None]
        cnn.classify(image)
        if routing:
            trace = caps.route(image)  # with the pixel maps of the two longest capsules
            lengths, poses = trace.lengths[:, -1], trace.poses
        else:
            out = caps.analyze(image)
            lengths, poses = out.lengths, out.poses
        caps.reconstruct(poses, int(lengths.argmax()))

    def two_digits(routing: bool):
        cnn_multi.read_pair(pair)
        if not routing:
            caps_multi.read_pair(pair)
        else:
            caps_multi.read_routed(pair)  # with the pixel maps

    def with_predict():
        image = to_mnist(canvas)[None]
        cnn.classifier.predict(image, verbose=0)
        lengths, poses = caps.encoder.predict(image, verbose=0)
        masked = poses * np.eye(10, dtype=np.float32)[lengths.argmax(1)][:, :, None]
        caps.decoder.predict(masked.reshape(1, -1), verbose=0)

    variants = {"Draw, no routing view": lambda: draw_page(False), "Draw, routing view": lambda: draw_page(True),
                "Two digits, no routing view": lambda: two_digits(False),
                "Two digits, routing view": lambda: two_digits(True), "Draw with Model.predict": with_predict}
    for fn in variants.values():
        for _ in range(5):
            fn()
    timings = {label: [] for label in variants}
    for _ in range(repeats):
        for label, fn in variants.items():
            started = time.perf_counter()
            fn()
            timings[label].append((time.perf_counter() - started) * 1000)
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
            entry = store.read_manifest(Path(out))["cnn-mnist"]
            rates[n] = entry["train_examples"] / float(np.mean(entry["seconds_per_epoch"][1:]))
    return rates


def big_photo(megabytes: float = 2.0) -> bytes:
    """A phone-sized JPEG (4032×3024) of a digit on paper under lamp light, just under `megabytes` (the upload
    limit): the worst case an upload can be."""
    import io

    from PIL import Image

    from . import photos

    (_, _), (x_test, _) = load_dataset("mnist")
    rng = np.random.default_rng(0)
    small = Image.open(io.BytesIO(photos.render(photos._handwritten(x_test[0], 200), "uneven_light", rng)))
    big = np.asarray(small.convert("RGB").resize((4032, 3024), Image.Resampling.BILINEAR), np.float32)
    big += rng.normal(0, 4, big.shape)  # sensor noise: what makes a real photo's JPEG large
    image = Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))
    for quality in (95, 90, 85, 80, 70, 60):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= megabytes * 1e6:
            return buffer.getvalue()
    return buffer.getvalue()


def photo_latency(repeats: int) -> tuple[int, list[float]]:
    """Seconds for `to_mnist` on a 2 MB phone photo: decoding, finding the paper and the ink, cropping."""
    data = big_photo()
    to_mnist(data)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        to_mnist(data)
        samples.append(time.perf_counter() - started)
    return len(data), samples


def multimnist_training(batches: int, rounds: int = 3) -> dict[str, float]:
    """Training images/s (pairs/s) of capsnet_multi and cnn_multi on the same on-the-fly pairs, interleaved."""
    (x_train, y_train), _ = load_dataset("mnist")
    runs = {}
    for name in ("capsnet_multi", "cnn_multi"):
        model, spec = catalogue.build(name), catalogue.spec(name).first("mnist")
        trainer = model.compile(1e-3)
        data = model.train_dataset(x_train[: batches * spec.batch_size], y_train[: batches * spec.batch_size],
                                   spec.batch_size, seed=0).cache()
        trainer.fit(data.take(2), epochs=1, verbose=0)  # trace and warm up
        runs[name] = (trainer, data, batches * spec.batch_size)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (trainer, data, count) in runs.items():
            started = time.perf_counter()
            trainer.fit(data, epochs=1, verbose=0)
            rates[name].append(count / (time.perf_counter() - started))
    return {name: float(np.median(r)) for name, r in rates.items()}


class _TrainingSpan(keras.callbacks.Callback):
    """Seconds from the first batch's start to the epoch's end, after the other callbacks' epoch-end work: the
    previews taken during and at the end of the epoch count, the one taken before training starts does not."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.started


def preview_overhead(batches: int, rounds: int = 3) -> dict[str, tuple[float, float, int]]:
    """Training images/s of three models without and with the Train page's live previews (as often as the page
    takes them), interleaved in one process: {model: (plain, with previews, previews taken per epoch)}."""
    from .jobs import MetricsCallback, MetricsStore, view_function
    from .training import TrainSettings

    (x_train, y_train), (x_test, _) = load_dataset("mnist")
    out = {}
    for name in ("dcgan", "cnn", "vae"):
        model, spec = catalogue.build(name), catalogue.spec(name).first("mnist")
        trainer = model.compile(spec.learning_rate)
        count = batches * spec.batch_size
        data = model.train_dataset(x_train[:count], y_train[:count], spec.batch_size, seed=0).cache()
        trainer.fit(data.take(2), epochs=1, verbose=0)  # trace and warm up
        view = view_function(model, x_test[:500])
        view()
        plain, previewed, taken = [], [], 0
        for _ in range(rounds):
            for rates, with_view in ((plain, None), (previewed, view)):
                recorder, span = MetricsStore(TrainSettings(model=name).resolved(), "bench", batches), _TrainingSpan()
                trainer.fit(data, epochs=1, verbose=0, callbacks=[MetricsCallback(recorder, batches, with_view), span])
                rates.append(count / span.seconds)
                taken += len(recorder.snapshot().previews) - 1 if with_view else 0  # not the one before training
        out[name] = (float(np.median(plain)), float(np.median(previewed)), taken // rounds)
    return out


def dcgan_digits_share(grid_uint8: np.ndarray, cnn) -> float:
    """Share of a preview grid's samples that the shipped CNN reads as some digit with confidence ≥ 0.9."""
    probs = cnn.classify(grid_uint8.reshape(-1, 28, 28) / 255.0)
    return float(np.mean(probs.max(axis=1) >= 0.9))


def presets(keys: list[str]) -> list[dict]:
    """Each preset through the Train page's own path (a background job into a scratch folder), timed from the
    start to "finished"; for a GAN, when the shipped CNN first reads half the preview samples as confident digits."""
    import tempfile

    from . import jobs
    from .presets import BY_KEY, PRESETS

    cnn = store.load("cnn")
    results = []
    for preset in [BY_KEY[k] for k in keys] if keys else PRESETS:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            job = jobs.start(preset.settings, "bench", out_dir=Path(folder), config=preset.config or None)
            job.thread.join()
            seconds = time.perf_counter() - started
            snap = job.store.snapshot()
            result = {"preset": preset.key, "status": snap.status, "seconds": round(seconds, 1),
                      "previews": len(snap.previews), "preview_share": round(snap.preview_seconds / seconds, 4),
                      "key_metric": {k: v for k, v in snap.after.items() if k == catalogue.spec(
                          preset.settings.model).model_class.key_metric}}
            if preset.settings.model.endswith("gan"):
                shares = [(p.seconds, dcgan_digits_share(p.view, cnn)) for p in snap.previews]
                first = next((t for t, share in shares if share >= 0.5), None)
                result["digits_at_seconds"] = None if first is None else round(first, 1)
                result["digit_share_last_preview"] = round(shares[-1][1], 3)
            results.append(result)
    return results


def run(what: str, args) -> int:
    if what == "capsnet":
        rates = capsnet_training(args.batches)
        shipped = next(iter(rates.values()))
        for label, rate in rates.items():
            print(f"{label:54s} {rate:8.1f} images/s (training, batch 100)   shipped / this: {shipped / rate:5.2f}×")
    elif what == "serve":
        import json

        from . import loadtest

        if args.compare_browser:
            figures = loadtest.compare_browser(app_dir=args.compare or loadtest.ROOT, pin=not args.shared_cores)
            print(json.dumps(figures, indent=2))
        elif args.lesson:
            from . import classload

            print(json.dumps(classload.run(args.sessions, args.duration, args.think), indent=2))
        else:
            print(json.dumps(loadtest.run(args.sessions, args.duration, args.think, url=args.url,
                                          compare=args.compare), indent=2))
    elif what == "inference":
        timings = inference_latency(args.repeats)
        for label, samples in timings.items():
            print(f"{label:28s} {_percentiles(samples)}   ({len(samples)} drawings)")
        p50 = {label: float(np.percentile(samples, 50)) for label, samples in timings.items()}
        for page in ("Draw", "Two digits"):
            added = p50[f"{page}, routing view"] - p50[f"{page}, no routing view"]
            print(f"{'the routing view on ' + page:28s} {added:+6.2f} ms per drawing (p50)")
        print(f"{'Model.predict / direct':28s} {p50['Draw with Model.predict'] / p50['Draw, no routing view']:6.2f}× "
              "(p50)")
    elif what == "photo":
        size, samples = photo_latency(max(3, min(args.repeats, 10)))
        print(f"to_mnist on a {size / 1e6:.2f} MB 4032×3024 JPEG photo: median {np.median(samples):.2f} s, "
              f"max {max(samples):.2f} s over {len(samples)} runs")
    elif what == "multimnist":
        rates = multimnist_training(args.batches)
        for name, rate in rates.items():
            print(f"{name:16s} {rate:8.1f} pairs/s (training)")
        print(f"{'cnn / capsnet':16s} {rates['cnn_multi'] / rates['capsnet_multi']:8.2f}×")
    elif what == "previews":
        for name, (plain, previewed, taken) in preview_overhead(args.batches).items():
            print(f"{name:8s} {plain:8.1f} images/s plain, {previewed:8.1f} with {taken} previews an epoch: "
                  f"{previewed / plain:6.3f}× ({1 - previewed / plain:+.1%} slower)")
    elif what == "presets":
        import json

        for result in presets(args.preset):
            print(json.dumps(result), flush=True)
    elif what == "multiworker":
        rates = multiworker_throughput()
        for n, rate in rates.items():
            print(f"{n} worker{'s' if n > 1 else ' '} (CNN, batch 64 per worker) {rate:8.1f} images/s")
        print(f"{'2 workers / 1 worker':36s} {rates[2] / rates[1]:8.2f}×")
    return 0
