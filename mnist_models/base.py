"""What every model in the zoo shares: a JSON-round-tripping config, Keras networks built from code, and
weights files saved atomically and loaded with `load_weights` (never a deserialized model)."""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


@dataclasses.dataclass
class Config:
    """A small dataclass that round-trips through JSON (tuples come back as tuples).

    A config class's defaults are the behaviour of weights saved before a field existed: `catalogue.build(...,
    saved=True)` fills a field missing from an old manifest with its default, so a default changes only together
    with a migration of the shipped manifests. What the shipped models were trained with are the recipes
    (`SPECS`) at the bottom of each family's module, which override these defaults.

    `retired` names training-only options that were tried and removed (their results are in
    docs/training-notes.md): a config saved with them, such as retrained weights a user kept, still loads."""

    retired: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k not in cls.retired}
        unknown = set(data) - set(fields)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class ZooModel:
    """One model of the zoo: its networks, how to train them, how to score them, and its inference API.

    Subclasses set `config_class`, build their Keras networks in `build`, and return from `parts` the
    networks whose weights are saved (one file each).
    """

    config_class: ClassVar[type[Config]]
    key_metric: ClassVar[str] = "test_loss"
    higher_is_better: ClassVar[bool] = False
    # what each curve of its training means, for the Train page (keys: the names Keras logs)
    metric_help: ClassVar[dict[str, str]] = {}
    needs_scorer: ClassVar[bool] = False  # `evaluate` takes scorers=, shipped classifiers (see store.evaluate)

    def __init__(self, config: Config | None = None, dataset: str = "mnist"):
        self.config = config if config is not None else self.config_class()
        self.dataset = dataset
        self.started_from: dict | None = None  # where its weights came from, when a training started from some
        self.lock = threading.RLock()  # Keras models are shared across Streamlit sessions
        self._inference_functions: list = []
        self.build()

    def build(self) -> None:
        raise NotImplementedError

    def parts(self) -> dict[str, keras.Model]:
        """Networks saved to separate weights files, keyed by a short part name ("model", "generator", …)."""
        raise NotImplementedError

    def compile(self, learning_rate: float) -> keras.Model:
        """Compile and return the Keras model that `fit` trains."""
        raise NotImplementedError

    def train_dataset(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
        raise NotImplementedError

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def preview_images(self, x_uint8: np.ndarray):
        """A function that draws a (rows, cols, 28, 28) grid of what the model makes now of fixed inputs (the Train
        page calls it every couple of seconds while training), or None for models that do not draw."""
        return None

    def forget_history(self) -> None:
        """Drop what loaded weights recorded of their own training (per-epoch samples, loss curves) before a new
        run starts from them."""

    def training_callbacks(self, x_train: np.ndarray) -> list:
        """Keras callbacks the model itself needs while training (e.g. recording per-epoch samples); `x_train` is
        the training images, for those that measure something on real data."""
        return []

    def artifacts(self) -> dict[str, np.ndarray]:
        """Arrays saved beside the weights (one .npz), such as per-epoch sample grids; {} for none."""
        return {}

    def load_artifacts(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def inference_function(self, network: keras.Model, output=lambda outputs: outputs, call=None):
        """`network` in inference mode as one graph for any batch size (its own input signature, batch None);
        `call(inputs)` replaces the single forward pass where inference is more than that.

        `warm_up` traces it ahead of time, so a user's first drawing does not wait for TensorFlow's tracing."""
        specs = [tf.TensorSpec(t.shape, t.dtype) for t in network.inputs]
        # a partial, not a lambda: TensorFlow counts traces per code object and would warn about "retracing"
        # when many models share one lambda, although each of them traces once
        function = tf.function(call or functools.partial(_infer, network, output),
                               input_signature=[specs if len(specs) > 1 else specs[0]])
        self._inference_functions.append(function)
        return function

    def warm_up(self) -> None:
        """Trace and run every inference function once on a batch of zeros (the app does it while showing
        "Loading model…"): tracing and TensorFlow's first-run graph optimisation then cost the user nothing."""
        for function in self._inference_functions:
            zeros = tf.nest.map_structure(lambda spec: tf.zeros([1, *spec.shape[1:]], spec.dtype),
                                          function.input_signature[0])
            function(zeros)

    def load_weights(self, files: dict[str, Path]) -> None:
        """Load each part named in `files` (a part left out keeps its initial weights)."""
        for part, network in self.parts().items():
            if part in files:
                network.load_weights(files[part])


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training run of a shipped recipe. The first stage trains from scratch with `config` over the model
    class's defaults; each later stage continues the weights the stage before left (a new optimizer at its own
    learning rate), with `config` changing what it names (training-only fields, or the architecture of the
    `fresh_parts` it restarts). `max_minutes` > 0 ends the stage after that much training time (equal budgets);
    `front_end_from` names a shipped MNIST model whose layers of the same name and shape a first stage starts
    from (a head start)."""

    epochs: int
    learning_rate: float = 1e-3
    lr_decay: float = 1.0  # multiplied into the learning rate after every epoch
    batch_size: int = 128
    seed: int = 1234
    config: dict = dataclasses.field(default_factory=dict)
    max_minutes: float = 0.0
    fresh_parts: tuple[str, ...] = ()
    front_end_from: str = ""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A zoo model: its name, class, datasets, title, and the recipe its shipped weights were made with, as stages
    (`recipes` gives a dataset its own; every other dataset follows `recipe`). Each family declares its specs at
    the bottom of its own module; `catalogue` collects them."""

    name: str
    model_class: type[ZooModel]
    datasets: tuple[str, ...]
    title: str
    recipe: tuple[Stage, ...]
    recipes: dict[str, tuple[Stage, ...]] = dataclasses.field(default_factory=dict)

    def stages(self, dataset: str) -> tuple[Stage, ...]:
        return self.recipes.get(dataset, self.recipe)

    def config(self, dataset: str, through: int | None = None) -> dict:
        """The config overrides in force after stage `through` (default: the last), over the class's defaults."""
        stages = self.stages(dataset)
        merged: dict = {}
        for stage in stages[:len(stages) if through is None else through + 1]:
            merged.update(stage.config)
        return merged

    def first(self, dataset: str) -> Stage:
        """The recipe's first stage: the defaults of a single training run from scratch (the Train page, `train`
        with settings of its own)."""
        return self.stages(dataset)[0]


def _infer(network: keras.Model, output, inputs):
    return output(network(inputs, training=False))


RANGE_SLACK = 1e-3  # float images this far outside [0, 1] (interpolation round-off) are clipped, not refused


def as_images(images, size: int = 28) -> np.ndarray:
    """The one check at the library's edge: every public method that takes images passes them through here.

    Takes what people pass: uint8 (or other integer) pixels 0–255, as `load_dataset` and `keras.datasets` give
    them, are divided by 255; floats in [0, 1] are used as they are; a single (size, size) image becomes a batch
    of one. Anything else (floats above 1 or below 0, NaN or infinity, another shape) is refused with a
    ValueError that says what is expected. Returns float32 (N, size, size) in [0, 1]."""
    arr = np.asarray(images)
    expected = f"images of shape (N, {size}, {size}) or ({size}, {size})"
    if arr.shape == (size, size):
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (size, size):
        raise ValueError(f"expected {expected}, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"integer pixels must be 0–255 (uint8), got values from {arr.min()} to {arr.max()}")
        return arr.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected {expected} as uint8 0–255 or float 0–1, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or infinite pixels; expected uint8 0–255 or float 0–1")
    low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        hint = " (divide 0–255 floats by 255, or pass them as uint8)" if high <= 255 and low >= 0 else ""
        raise ValueError(f"float pixels must be in [0, 1], got values from {low:g} to {high:g}{hint}")
    return np.clip(arr, 0.0, 1.0)


def to_float(x_uint8: np.ndarray) -> np.ndarray:
    return x_uint8.astype(np.float32) / 255.0


def shift_augment(images: tf.Tensor, seed: tf.Tensor, max_shift: int) -> tf.Tensor:
    """Shift one (28, 28) image by up to `max_shift` pixels each way, deterministically from `seed`."""
    if max_shift <= 0:
        return images
    padded = tf.pad(images, [[max_shift, max_shift], [max_shift, max_shift]])
    return tf.image.stateless_random_crop(padded, [28, 28], seed=seed)


def image_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, max_shift: int,
                   arrange=lambda image, label: (image, label)) -> tf.data.Dataset:
    """Shuffled, shift-augmented batches; `arrange(image, label)` maps to the (inputs, targets) a model wants."""
    ds = tf.data.Dataset.from_tensor_slices((to_float(x), y.astype(np.int32)))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed).batch(2))
    ds = ds.map(lambda pair, s: arrange(shift_augment(pair[0], s, max_shift), pair[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def batch_norm_from_one_batch(norms: list, forward) -> None:
    """Set the moving statistics of the BatchNorm layers `norms` to those of one batch, which `forward()` runs
    through the network in training mode. Averaged weights (an EMA) need this: their layers' moving statistics
    were gathered with the live weights the average replaces (as SWA does, Izmailov et al. 2018)."""
    momenta = [norm.momentum for norm in norms]
    try:
        for norm in norms:
            norm.momentum = 0.0  # the moving statistics become this batch's
        forward()
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum


def predict_batches(fn, x: np.ndarray, batch_size: int = 1000) -> list[np.ndarray]:
    """Run `fn` (numpy batch → tuple of arrays) over `x` in batches and concatenate each output."""
    outs = [fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return [np.concatenate(parts) for parts in zip(*outs, strict=False)]
