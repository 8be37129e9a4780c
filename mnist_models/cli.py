"""`python -m mnist_models fetch-data | train | evaluate | bench | list`: thin wrappers over the library."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import data


def _fetch(args) -> int:
    names = data.DATASETS if args.dataset == "all" else (args.dataset,)
    for name in names:
        if args.force:
            data.clear_cache(name)
        started = time.perf_counter()
        (x_train, _), (x_test, _) = data.load_dataset(name, progress=lambda m: print(f"  {m}", flush=True))
        print(f"{name}: {len(x_train)} train + {len(x_test)} test images ready in "
              f"{time.perf_counter() - started:.2f} s ({data.cache_path(name)})", flush=True)
    return 0


def _train(args) -> int:
    from . import registry, training

    settings = training.TrainSettings(
        model=args.model, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, lr_decay=args.lr_decay, train_size=args.train_size, seed=args.seed,
        strategy=args.strategy, max_minutes=args.max_minutes, init=args.init, init_dataset=args.init_dataset or "",
    ).resolved()
    out = Path(args.out) if args.out else registry.WEIGHTS_DIR
    if args.logical_cpus:
        training.split_cpu(args.logical_cpus)
    progress = training.TerminalProgress()
    print(f"Training {settings.model} on {settings.dataset}: {settings.to_dict()}", flush=True)
    stop = threading.Event()

    def stop_gracefully(signum, frame):
        if stop.is_set():
            # a second signal abandons the run at once: an exception raised here would leave TensorFlow's threads
            # running and the process alive
            print("\nAbandoned: nothing was saved.", flush=True)
            os._exit(130)
        stop.set()  # before the message: a second press that answers the message must find it set
        print("\nStopping after this batch; the model is scored and saved. Press Ctrl-C again to abandon it.",
              flush=True)

    signal.signal(signal.SIGINT, stop_gracefully)
    signal.signal(signal.SIGTERM, stop_gracefully)
    result = training.train(settings, out_dir=out, callbacks=[progress], stop_event=stop, resume=args.resume,
                            config=_config_overrides(args.set),
                            backup_dir=Path(args.backup_dir) if args.backup_dir else None,
                            fresh_parts=tuple(args.fresh))
    print(json.dumps({"metrics": result.metrics, "seconds": round(result.seconds, 1),
                      "epochs_completed": result.epochs_completed, "replicas": len(result.devices),
                      "devices": list(result.devices),
                      "files": [str(p) for p in result.files.values()]}, indent=2))
    return 0


def _config_overrides(pairs: list[str]) -> dict:
    """["max_shift=0", "filters=[32,64]"] → {"max_shift": 0, "filters": [32, 64]} (values are JSON, else text)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


def _evaluate(args) -> int:
    from . import registry

    if args.model == "robustness":
        return _evaluate_robustness(args)
    if args.model == "photos":
        return _evaluate_photos(args)
    folder = Path(args.weights) if args.weights else registry.WEIGHTS_DIR
    model = registry.load_from(folder, args.model, args.dataset)
    (_, _), (x_test, y_test) = data.load_dataset(args.dataset)
    started = time.perf_counter()
    metrics = registry.evaluate(model, x_test, y_test)
    seconds = round(time.perf_counter() - started, 2)
    if args.record:
        registry.record_metrics(args.model, args.dataset, metrics, folder)
    print(json.dumps({**metrics, "evaluate_seconds": seconds}, indent=None if args.json else 2))
    return 0


def _classifiers_and_test_set(args):
    """The CNN and the CapsNet from `--weights` (default: the shipped ones), and the MNIST test set."""
    from . import registry

    folder = Path(args.weights) if args.weights else registry.WEIGHTS_DIR
    models = {name: registry.load_from(folder, name, "mnist") for name in ("cnn", "capsnet")}
    (_, _), (x_test, y_test) = data.load_dataset("mnist")
    return models, x_test, y_test


def _evaluate_robustness(args) -> int:
    from . import transforms
    from .base import to_float

    models, x_test, y_test = _classifiers_and_test_set(args)
    images = x_test[: args.limit] if args.limit else x_test
    result = transforms.robustness(models, to_float(images), y_test[: len(images)])
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _evaluate_photos(args) -> int:
    from . import photos
    from .preprocess import to_mnist

    models, x_test, y_test = _classifiers_and_test_set(args)
    started = time.perf_counter()
    result = photos.accuracy_by_condition(models, photos.photo_set(x_test, y_test, args.limit or 100), to_mnist)
    result["fonts"] = len(photos.fonts())
    result["evaluate_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _bench(args) -> int:
    from . import bench

    return bench.run(args.what, args)


def _import_weights(args) -> int:
    from . import registry

    folder = Path(args.into) if args.into else registry.USER_WEIGHTS_DIR
    key = registry.import_zip(Path(args.file), folder)
    entry = registry.read_manifest(folder)[key]
    print(f"installed {key} into {folder} (checked: manifest, sha256 of every file, every tensor's shape)")
    print(f"its metrics: {json.dumps(entry['metrics'])}")
    if not args.into and not args.no_use:
        registry.choose_user_weights(entry["model"], entry["dataset"], True)
        print("every page of the studio now uses it; the Train page's “Restore shipped” goes back")
    return 0


def _list(args) -> int:
    from . import registry

    for e in registry.zoo():
        shipped = json.dumps(e.metrics) if e.metrics else f"not trained yet: {e.rebuild}"
        print(f"{e.name:14s} {e.dataset:8s} {e.title:48s} {shipped}")
    return 0


def parser() -> argparse.ArgumentParser:
    from .registry import SPECS
    from .training import STRATEGIES

    p = argparse.ArgumentParser(prog="python -m mnist_models", description=__doc__)
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ start-up and log lines")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fetch-data", help="download and cache the datasets (offline sources, sha256-checked)")
    f.add_argument("--dataset", choices=[*data.DATASETS, "all"], default="mnist")
    f.add_argument("--force", action="store_true", help="rebuild the cache even if present")
    f.set_defaults(func=_fetch)

    t = sub.add_parser("train", help="train a model and write its weights + manifest entry")
    t.add_argument("model", choices=list(SPECS))
    t.add_argument("--dataset", choices=data.DATASETS, default="mnist")
    t.add_argument("--epochs", type=int, default=0, help="0: the model's default")
    t.add_argument("--batch-size", type=int, default=0, help="0: the model's default")
    t.add_argument("--lr", type=float, default=0.0, help="0: the model's default")
    t.add_argument("--train-size", type=int, default=0, help="use a random subset of this size (0: all)")
    t.add_argument("--seed", type=int, default=1234)
    t.add_argument("--lr-decay", type=float, default=0.0, help="per-epoch learning-rate factor (0: default)")
    t.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop after this much training time, then score and save (0: no limit)")
    t.add_argument("--init", default="scratch", metavar="shipped|in_use|scratch|DIR",
                   help="start from these weights instead of from scratch: the shipped ones, those the app uses, "
                        "or a weights folder (its manifest is checked); e.g. fine-tune on Fashion from MNIST with "
                        "--dataset fashion --init shipped --init-dataset mnist")
    t.add_argument("--init-dataset", choices=data.DATASETS,
                   help="with --init: the dataset of the weights to start from (default: --dataset)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the weights already in the output folder, e.g. with a lower --lr")
    t.add_argument("--fresh", action="append", default=[], metavar="PART",
                   help="with --resume: start this part anew (e.g. discriminator) while the others continue; "
                        "--set may then change its architecture (repeatable)")
    t.add_argument("--out", help="weights folder (default: weights/)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set max_shift=0 (repeatable; with --resume only "
                        "training-only fields such as augmentation may change)")
    t.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute: mirrored over local devices, multiworker over the TF_CONFIG cluster; "
                        "--batch-size is then per replica")
    t.add_argument("--backup-dir", help="back up every epoch here; a restarted run resumes from it "
                                        "(a folder every worker can read; only the chief writes)")
    t.add_argument("--logical-cpus", type=int, default=0,
                   help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="score the shipped weights on the full test set")
    e.add_argument("model", choices=[*SPECS, "robustness", "photos"],
                   help="a model; 'robustness': shipped CNN and CapsNet on seeded affine test sets; 'photos': the same "
                        "two on synthetic photos of digits on paper, per condition")
    e.add_argument("--dataset", choices=data.DATASETS, default="mnist")
    e.add_argument("--limit", type=int, default=0,
                   help="robustness: score the first N test images; photos: N MNIST digits per condition (100)")
    e.add_argument("--weights", help="weights folder (default: weights/)")
    e.add_argument("--json", action="store_true", help="one JSON object on one line")
    e.add_argument("--record", action="store_true",
                   help="also write these metrics into the weights folder's manifest entry (e.g. the judge's "
                        "figures for weights trained before the judge existed)")
    e.set_defaults(func=_evaluate)

    b = sub.add_parser("bench", help="print performance figures")
    b.add_argument("what", choices=["capsnet", "inference", "multiworker", "photo", "multimnist", "previews",
                                    "presets"])
    b.add_argument("--preset", action="append", default=[], help="presets: only this one (repeatable)")
    b.add_argument("--batches", type=int, default=20)
    b.add_argument("--repeats", type=int, default=200)
    b.set_defaults(func=_bench)

    i = sub.add_parser("import-weights", help="install a weights .zip from the Train page (checked) as user weights")
    i.add_argument("file", help="the .zip downloaded from the Train page")
    i.add_argument("--into", help="weights folder to install into (default: user_weights/)")
    i.add_argument("--no-use", action="store_true", help="install it, but keep the app on the weights it uses")
    i.set_defaults(func=_import_weights)

    sub.add_parser("list", help="the zoo and its shipped metrics").set_defaults(func=_list)
    return p


def _start_tensorflow(verbose: bool) -> None:
    """Import TensorFlow now, quietly unless `verbose`. Its C++ start-up lines (oneDNN, cpu_feature_guard, absl) go
    to file descriptor 2 while its libraries load, before TF_CPP_MIN_LOG_LEVEL can reach all of them, so
    descriptor 2 points at /dev/null for the import alone; an import error is still shown."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        import tensorflow  # noqa: F401
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _start_tensorflow("--verbose" in argv)  # before the parser, whose model choices come from the registry
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (data.DataUnavailableError, ValueError, FloatingPointError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # WeightsError and friends: already say what to do
        print(f"error: {err}", file=sys.stderr)
        return 2
