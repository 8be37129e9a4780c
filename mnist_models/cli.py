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


ONE_RUN_OPTIONS = ("epochs", "batch_size", "lr", "lr_decay", "train_size", "test_size", "seed", "max_minutes",
                   "init", "init_dataset", "resume", "fresh", "set", "strategy", "front_end_from", "logical_cpus",
                   "extra_data")


def _train(args) -> int:
    from . import distribute, store, training

    out = Path(args.out) if args.out else store.WEIGHTS_DIR
    one_run = [name for name in ONE_RUN_OPTIONS if getattr(args, name) not in (None, False, [])]
    if not one_run:
        lines = training.describe_recipe(args.model, args.dataset)
        print(f"The shipped recipe of {args.model} on {args.dataset}, into {out}:", *lines, sep="\n  ", flush=True)
        if args.dry_run:
            return 0
    elif args.dry_run:
        raise ValueError("--dry-run prints the shipped recipe: leave out " +
                         ", ".join("--" + name.replace("_", "-") for name in one_run))
    settings = None
    if one_run:
        settings = training.TrainSettings(
            model=args.model, dataset=args.dataset, epochs=args.epochs or 0, batch_size=args.batch_size or 0,
            learning_rate=args.lr or 0.0, lr_decay=args.lr_decay or 0.0, train_size=args.train_size or 0,
            test_size=args.test_size or 0, seed=1234 if args.seed is None else args.seed,
            strategy=args.strategy or "default", max_minutes=args.max_minutes or 0.0, init=args.init or "scratch",
            init_dataset=args.init_dataset or "", front_end_from=args.front_end_from or "",
            extra_data=args.extra_data or "").resolved()
        print(f"Training {settings.model} on {settings.dataset} (one run, not the shipped recipe): "
              f"{settings.to_dict()}", flush=True)
    if args.logical_cpus:
        distribute.split_cpu(args.logical_cpus)
    progress = training.TerminalProgress()
    stop = threading.Event()
    started_at = training.run_stamp()

    def stop_gracefully(signum, frame):
        if stop.is_set():
            # a second signal abandons the run at once: an exception raised here would leave TensorFlow's threads
            # running and the process alive
            print("\nAbandoned: " + _what_was_saved(out, args.model, args.dataset, started_at), flush=True)
            os._exit(130)
        stop.set()  # before the message: a second press that answers the message must find it set
        print("\nStopping after this batch; the model is scored and saved. Press Ctrl-C again to abandon it.",
              flush=True)

    signal.signal(signal.SIGINT, stop_gracefully)
    signal.signal(signal.SIGTERM, stop_gracefully)
    backup = Path(args.backup_dir) if args.backup_dir else None
    if settings is None:
        results = training.rebuild(args.model, args.dataset, out, callbacks=[progress], stop_event=stop,
                                   backup_dir=backup)
    else:
        results = [training.train(settings, out_dir=out, callbacks=[progress], stop_event=stop,
                                  resume=bool(args.resume), config=_config_overrides(args.set or []),
                                  backup_dir=backup, fresh_parts=tuple(args.fresh or ()))]
    for result in results:
        print(json.dumps({"metrics": result.metrics, "seconds": round(result.seconds, 1),
                          "epochs_completed": result.epochs_completed, "replicas": len(result.devices),
                          "devices": list(result.devices),
                          "files": [str(p) for p in result.files.values()]}, indent=2))
    if settings is None and stop.is_set():
        print("Stopped part-way through the recipe: run the same command again to go on from where it stopped"
              + (f" (the backup in {backup} keeps its last epoch)." if backup else "."), flush=True)
    return 0


def _what_was_saved(out: Path, model: str, dataset: str, since: str) -> str:
    """The weights are saved before they are scored, so a run abandoned while scoring has saved them."""
    from . import catalogue, store, training

    entry = store.read_manifest(out).get(catalogue.stem(model, dataset), {})
    if entry.get("trained_at", "") < since:
        return "nothing was saved."
    if entry.get("metrics"):
        return f"the weights were saved and scored before that, in {out}."
    return (f"the weights were saved in {out} before that, but not scored; score them with: "
            f"{training.scoring_command(model, dataset, out)}")


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
    from . import store

    if args.model == "robustness":
        return _evaluate_robustness(args)
    if args.model == "photos":
        return _evaluate_photos(args)
    folder = Path(args.weights) if args.weights else store.WEIGHTS_DIR
    model = store.load_from(folder, args.model, args.dataset)
    (_, _), (x_test, y_test) = data.load_dataset(args.dataset)
    started = time.perf_counter()
    metrics = store.evaluate(model, x_test, y_test)
    seconds = round(time.perf_counter() - started, 2)
    if args.record:
        store.record_metrics(args.model, args.dataset, metrics, folder)
    print(json.dumps({**metrics, "evaluate_seconds": seconds}, indent=None if args.json else 2))
    return 0


def _classifiers_and_test_set(args):
    """The CNN and the CapsNet from `--weights` (default: the shipped ones), and the MNIST test set."""
    from . import store

    folder = Path(args.weights) if args.weights else store.WEIGHTS_DIR
    models = {name: store.load_from(folder, name, "mnist") for name in ("cnn", "capsnet")}
    (_, _), (x_test, y_test) = data.load_dataset("mnist")
    return models, x_test, y_test


def _evaluate_robustness(args) -> int:
    from . import transforms

    models, x_test, y_test = _classifiers_and_test_set(args)
    images = x_test[: args.limit] if args.limit else x_test
    result = transforms.robustness(models, images, y_test[: len(images)])
    if args.record:
        _record_ood(args, result)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _record_ood(args, result: dict) -> None:
    """The out-of-distribution accuracies into the CNN's and the CapsNet's manifest entries (the Model zoo and the
    README show them beside the MNIST ones): only from the full test set, the sets' fixed definition."""
    from . import ood, store

    if args.limit:
        raise SystemExit("--record scores the full test set: leave out --limit")
    folder = Path(args.weights) if args.weights else store.WEIGHTS_DIR
    for name, scores in result.items():
        store.record_metrics(name, "mnist", {ood.METRIC_PREFIX + s: scores[s] for s in ood.SETS}, folder)


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
    from . import store, transfer

    folder = Path(args.into) if args.into else store.USER_WEIGHTS_DIR
    key = transfer.import_zip(Path(args.file), folder)
    entry = store.read_manifest(folder)[key]
    print(f"installed {key} into {folder} (checked: manifest, sha256 of every file, every tensor's shape)")
    print(f"its metrics: {json.dumps(entry['metrics'])}")
    if not args.into and not args.no_use:
        store.choose_user_weights(entry["model"], entry["dataset"], True)
        print("every page of the studio now uses it; the Train page's “Restore shipped” goes back")
    return 0


def _list(args) -> int:
    from . import store

    for e in store.zoo():
        shipped = json.dumps(e.metrics) if e.metrics else f"not trained yet: {e.rebuild}"
        print(f"{e.name:14s} {e.dataset:8s} {e.title:48s} {shipped}")
    return 0


def parser() -> argparse.ArgumentParser:
    from .catalogue import SPECS
    from .distribute import STRATEGIES

    p = argparse.ArgumentParser(prog="python -m mnist_models", description=__doc__)
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's C++ start-up and log lines")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fetch-data", help="download and cache the datasets (offline sources, sha256-checked)")
    f.add_argument("--dataset", choices=[*data.DATASETS, "all"], default="mnist")
    f.add_argument("--force", action="store_true", help="rebuild the cache even if present")
    f.set_defaults(func=_fetch)

    t = sub.add_parser("train", help="run a model's shipped recipe, every stage (or one run of your settings)",
                       description="With no option but --dataset, --out and --backup-dir: the shipped recipe, every "
                                   "stage, from scratch (a recipe stopped between stages goes on from the next one). "
                                   "Any other option makes it one run of those settings, the rest from the recipe's "
                                   "first stage.")
    t.add_argument("model", choices=list(SPECS))
    t.add_argument("--dataset", choices=data.DATASETS, default="mnist")
    t.add_argument("--dry-run", action="store_true", help="print the shipped recipe and stop")
    t.add_argument("--out", help="weights folder (default: weights/)")
    t.add_argument("--backup-dir", help="back up every epoch here; a restarted run resumes from it "
                                        "(a folder every worker can read; only the chief writes)")
    one = t.add_argument_group("one run of your own settings (instead of the recipe)")
    one.add_argument("--epochs", type=int, help="default: the recipe's first stage")
    one.add_argument("--batch-size", type=int, help="default: the recipe's first stage")
    one.add_argument("--lr", type=float, help="default: the recipe's first stage")
    one.add_argument("--lr-decay", type=float,
                     help="per-epoch learning-rate factor (default: the recipe's first stage)")
    one.add_argument("--train-size", type=int, help="use a random subset of this size (0: all)")
    one.add_argument("--test-size", type=int,
                     help="score on the first this many test examples (a quick check; 0: all)")
    one.add_argument("--seed", type=int, help="default 1234")
    one.add_argument("--max-minutes", type=float,
                     help="stop after this much training time, then score and save (0: no limit)")
    one.add_argument("--init", metavar="shipped|in_use|scratch|DIR",
                     help="start from these weights instead of from scratch: the shipped ones, those the app uses, "
                          "or a weights folder (its manifest is checked); e.g. fine-tune on Fashion from MNIST with "
                          "--dataset fashion --init shipped --init-dataset mnist")
    one.add_argument("--init-dataset", choices=data.DATASETS,
                     help="with --init: the dataset of the weights to start from (default: --dataset)")
    one.add_argument("--front-end-from", choices=list(SPECS),
                     help="start a new model from the layers of this shipped MNIST model that fit (same name, shape)")
    one.add_argument("--extra-data", metavar="FILE.npz",
                     help="mix these labelled digits into every epoch (a tenth of it, repeated as needed), e.g. a "
                          "class's drawings from the Class page: --init shipped --extra-data class-K7QW3M.npz "
                          "--epochs 2 --lr 1e-4 fine-tunes the shipped CNN on the class's handwriting")
    one.add_argument("--resume", action="store_true",
                     help="continue from the weights already in the output folder, e.g. with a lower --lr")
    one.add_argument("--fresh", action="append", metavar="PART",
                     help="with --resume: start this part anew (e.g. discriminator) while the others continue; "
                          "--set may then change its architecture (repeatable)")
    one.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a config field, e.g. --set max_shift=0 (repeatable; with --resume only "
                          "training-only fields such as augmentation may change)")
    one.add_argument("--strategy", choices=STRATEGIES,
                     help="tf.distribute: mirrored over local devices, multiworker over the TF_CONFIG cluster; "
                          "--batch-size is then per replica")
    one.add_argument("--logical-cpus", type=int,
                     help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="score the shipped weights on the full test set")
    e.add_argument("model", choices=[*SPECS, "robustness", "photos"],
                   help="a model; 'robustness': shipped CNN and CapsNet on seeded affine test sets and on "
                        "out-of-distribution sets drawn through the canvas path (the first 2,000 test digits); "
                        "'photos': the same two on synthetic photos of digits on paper, per condition")
    e.add_argument("--dataset", choices=data.DATASETS, default="mnist")
    e.add_argument("--limit", type=int, default=0,
                   help="robustness: score the first N test images; photos: N MNIST digits per condition (100)")
    e.add_argument("--weights", help="weights folder (default: weights/)")
    e.add_argument("--json", action="store_true", help="one JSON object on one line")
    e.add_argument("--record", action="store_true",
                   help="also write these metrics into the weights folder's manifest entry (e.g. the judge's "
                        "figures for weights trained before the judge existed; robustness: the CNN's and the "
                        "CapsNet's out-of-distribution accuracies)")
    e.set_defaults(func=_evaluate)

    b = sub.add_parser("bench", help="print performance figures")
    b.add_argument("what", choices=["capsnet", "inference", "multiworker", "photo", "multimnist", "previews",
                                    "presets", "serve"])
    b.add_argument("--preset", action="append", default=[], help="presets: only this one (repeatable)")
    b.add_argument("--batches", type=int, default=20)
    b.add_argument("--repeats", type=int, default=200)
    b.add_argument("--sessions", type=int, default=10, help="serve: visitors at once")
    b.add_argument("--duration", type=float, default=60, help="serve: seconds the visitors stay")
    b.add_argument("--think", type=float, default=1.0,
                   help="serve: seconds a visitor pauses between actions, on average (strokes: half of it)")
    b.add_argument("--url", help="serve: a running app to visit instead of starting one (no CPU figures then)")
    b.add_argument("--compare", metavar="DIR",
                   help="serve: another checkout of the app (e.g. a git worktree of an older commit): each action's "
                        "CPU alone is measured on both in alternating rounds and given as a ratio")
    b.add_argument("--compare-browser", action="store_true",
                   help="serve: one real Chromium (Playwright, requirements-dev.txt) and one light visitor draw the "
                        "same ten digits and five pairs on one app; the server CPU per stroke of each side by side")
    b.add_argument("--shared-cores", action="store_true",
                   help="serve --compare-browser: let the app share its cores with Chromium (by default the app has "
                        "a core of its own, as a server whose visitors' browsers run on their own machines)")
    b.add_argument("--class", dest="lesson", action="store_true",
                   help="serve: a lesson: --sessions students join a class, draw and send for --duration seconds, "
                        "the teacher's board refreshing on its own timer; send-to-board latency, CPU per send and per "
                        "board refresh, and whether every sent drawing reached the store and the board")
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
