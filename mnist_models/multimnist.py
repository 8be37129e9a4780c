"""MultiMNIST (Sabour, Frosst & Hinton 2017, §6): two digits of different classes on top of each other.

Each digit is shifted independently by up to ±4 px inside a 36×36 frame and the two are merged pixel-wise with
`max` (so each digit's own pixels never exceed the merged image's). `capsnet_multi` is the project's CapsNet on
36×36 inputs: margin loss with both labels present, and a decoder that redraws each digit from its own capsule,
scored against that digit alone. `cnn_multi` is a CNN baseline of similar size with ten sigmoid outputs.
Training pairs are made on the fly in `tf.data` (seeded); the test set is a fixed, seeded set of 10,000 pairs.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from .base import Config, ModelSpec, Stage, ZooModel, as_images, predict_batches
from .capsnet import (
    RECONSTRUCTION_WEIGHT,
    CapsNetConfig,
    CapsuleReadout,
    Mask,
    RoutingTrace,
    build_capsule_decoder,
    build_capsule_encoder,
    margin_loss,
)

FRAME = 36
MAX_SHIFT = 4
TEST_PAIRS = 10_000
TEST_SEED = 2017


class Pairs(NamedTuple):
    images: np.ndarray  # (N, 36, 36) float32 in [0, 1]: the merged pair, what a model sees
    digits: np.ndarray  # (N, 2, 36, 36): each digit alone, where it sits in the frame
    labels: np.ndarray  # (N, 2) int64: the two classes, always different


MNIST_CENTRE = MAX_SHIFT + 14  # in the 36×36 frame


def centred_28(images: np.ndarray) -> np.ndarray:
    """(N, 36, 36) single digits → (N, 28, 28), each moved whole pixels so that its centre of mass sits where
    MNIST puts it (pixel 14, 14 of the 28×28), for a classifier of MNIST digits."""
    out = np.zeros((len(images), 28, 28), np.float32)
    rows, cols = np.arange(FRAME)[:, None], np.arange(FRAME)[None, :]
    for i, image in enumerate(images):
        mass = image.sum()
        dy, dx = ((int(round((image * rows).sum() / mass - MNIST_CENTRE)),
                   int(round((image * cols).sum() / mass - MNIST_CENTRE))) if mass > 0 else (0, 0))
        dy, dx = np.clip([dy, dx], -MAX_SHIFT, MAX_SHIFT)
        out[i] = image[MAX_SHIFT + dy:MAX_SHIFT + dy + 28, MAX_SHIFT + dx:MAX_SHIFT + dx + 28]
    return out


def place(digits: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) digits → float32 (N, 36, 36), each moved by its (dy, dx) in [-4, 4] from the centre."""
    if np.abs(shifts).max(initial=0) > MAX_SHIFT:
        raise ValueError(f"a digit moves at most {MAX_SHIFT} px each way, got {shifts.tolist()}")
    out = np.zeros((len(digits), FRAME, FRAME), np.float32)
    for i, (digit, (dy, dx)) in enumerate(zip(digits, shifts, strict=True)):
        top, left = MAX_SHIFT + dy, MAX_SHIFT + dx
        out[i, top:top + 28, left:left + 28] = digit / np.float32(255.0)
    return out


def make_pairs(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> Pairs:
    """`count` pairs of different classes from one split, reproducible from `seed`."""
    if len(np.unique(y)) < 2:
        raise ValueError("MultiMNIST pairs need digits of at least two classes")
    rng = np.random.default_rng(seed)
    first = rng.integers(len(x), size=count)
    second = rng.integers(len(x), size=count)
    while np.any(same := y[first] == y[second]):
        second[same] = rng.integers(len(x), size=int(same.sum()))
    shifts = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(count, 2, 2))
    a, b = place(x[first], shifts[:, 0]), place(x[second], shifts[:, 1])
    return Pairs(np.maximum(a, b), np.stack([a, b], 1), np.stack([y[first], y[second]], 1).astype(np.int64))


def test_pairs(x_test: np.ndarray, y_test: np.ndarray, count: int | None = None) -> Pairs:
    """The fixed test set: the same pairs every time (seed 2017), from the MNIST test split; by default 10,000,
    or as many as the digits given when they are fewer (a quick score on a slice, `TrainSettings.test_size`)."""
    return make_pairs(x_test, y_test, min(TEST_PAIRS, len(x_test)) if count is None else count, TEST_SEED)


def pair_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, arrange) -> tf.data.Dataset:
    """Training pairs made on the fly: every training digit once per epoch as the first digit, a partner of
    another class drawn at random, both shifted; `arrange(merged, first, second, label_1, label_2)` gives a
    model's (inputs, targets). Seeded, so a run is reproducible."""
    y = y.astype(np.int32)
    by_class = [np.flatnonzero(y == c) for c in range(10)]
    counts = tf.constant([len(idx) for idx in by_class], tf.int64)
    if min(len(idx) for idx in by_class) == 0:
        raise ValueError("MultiMNIST training needs examples of all ten classes")
    table = tf.constant(np.stack([np.resize(idx, max(map(len, by_class))) for idx in by_class]), tf.int64)
    pixels = tf.constant(x)

    def frame(digit, shift):
        top, left = MAX_SHIFT + shift[0], MAX_SHIFT + shift[1]
        padded = tf.pad(tf.cast(digit, tf.float32) / 255.0,
                        [[top, FRAME - 28 - top], [left, FRAME - 28 - left]])
        return tf.ensure_shape(padded, (FRAME, FRAME))

    def make(pair, randoms):
        index, label = pair
        partner_class = (tf.cast(label, tf.int64) + 1 + randoms[0] % 9) % 10
        partner = table[partner_class, randoms[1] % counts[partner_class]]
        shifts = tf.reshape(randoms[2:6] % (2 * MAX_SHIFT + 1) - MAX_SHIFT, (2, 2))
        first, second = frame(pixels[index], shifts[0]), frame(pixels[partner], shifts[1])
        return arrange(tf.maximum(first, second), first, second, label, tf.cast(partner_class, tf.int32))

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(x)), y)).shuffle(len(x), seed=seed,
                                                                                reshuffle_each_iteration=True)
    randoms = tf.data.Dataset.random(seed=seed).map(lambda r: tf.abs(r)).batch(6)
    ds = tf.data.Dataset.zip(ds, randoms).map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def pair_accuracy(y_true, scores):
    """1 when the two highest scores are exactly the two digits present (the paper's measure), else 0."""
    top2 = ops.sum(ops.one_hot(ops.top_k(scores, 2)[1], 10), axis=1)
    return ops.cast(ops.all(ops.equal(top2, ops.cast(y_true, top2.dtype)), axis=-1), "float32")


def as_pairs(images) -> np.ndarray:
    """`as_images` for 36×36 frames: uint8 0–255 or float 0–1, one frame or a batch."""
    return as_images(images, size=FRAME)


class PairReading(NamedTuple):
    digits: np.ndarray  # (B, 2) the two most active outputs, most active first
    lengths: np.ndarray  # (B, 10) capsule lengths (CapsNet) or sigmoid outputs (CNN)
    redrawn: np.ndarray | None  # (B, 2, 36, 36) each digit redrawn from its own capsule (CapsNet only)


def pen_order(redrawn: np.ndarray, pens: np.ndarray) -> tuple[int, int]:
    """The order of two redrawings (2, H, W) that puts each on the pen (2, H, W: each pen's own strokes) whose
    strokes it overlaps most: (0, 1), or (1, 0) when the first redrawing belongs to the second pen."""
    overlap = np.einsum("khw,jhw->kj", np.asarray(redrawn, np.float64), np.asarray(pens, np.float64))
    return (0, 1) if overlap[0, 0] + overlap[1, 1] >= overlap[0, 1] + overlap[1, 0] else (1, 0)


def in_order_of(digits, reference) -> list[int]:
    """Two digits (a baseline's answers) in the order of `reference` (another model's, in pen order) where they
    name the same digits: a digit both name goes to its place in `reference`; the rest keep their order."""
    digits, reference = [int(d) for d in digits], [int(d) for d in reference]
    if digits[1] in reference and digits[0] not in reference:
        placed = reference.index(digits[1])
        return [digits[1], digits[0]] if placed == 0 else digits
    if digits[0] in reference and reference.index(digits[0]) == 1:
        return [digits[1], digits[0]]
    return digits


def _top_two(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :2]


def _scores(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    top = _top_two(scores)
    found = (top[:, :, None] == labels[:, None, :]).any(1)  # (N, 2): each true digit among the top two
    return {"pair_accuracy": float(np.mean(found.all(1))), "digit_accuracy": float(np.mean(found)),
            "test_examples": int(len(labels))}


def routing_attribution(trace: RoutingTrace, digits: np.ndarray, labels: np.ndarray, iteration: int) -> np.ndarray:
    """(N, 2): the share of each digit's ink (its own image, (N, 2, H, W), as weight) that lies where its capsule's
    routing heat map is higher than the other digit's capsule's, at `iteration`: how well routing separates the
    strokes of the two digits (`trace` mapped for `labels`)."""
    heat = np.stack([trace.pixel_map(labels[:, k], iteration) for k in range(2)], 1)  # (N, 2, H, W)
    mine = heat > heat[:, ::-1]
    ink = digits.reshape(*digits.shape[:2], -1)
    return (ink * mine.reshape(ink.shape)).sum(-1) / np.maximum(ink.sum(-1), 1e-8)


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of images (…, H, W) → (…)."""
    a = a.reshape(*a.shape[:-2], -1) - a.mean((-2, -1))[..., None]
    b = b.reshape(*b.shape[:-2], -1) - b.mean((-2, -1))[..., None]
    return (a * b).sum(-1) / np.maximum(np.sqrt((a * a).sum(-1) * (b * b).sum(-1)), 1e-8)


@dataclasses.dataclass
class MultiCapsNetConfig(CapsNetConfig):
    """The project's CapsNet, unchanged, on 36×36 frames: its front end makes a 3×3 grid of primary-capsule
    places (144 capsules) where the MNIST CapsNet has 2×2."""


class MultiCapsNet(CapsuleReadout, ZooModel):
    config_class = MultiCapsNetConfig
    size = FRAME
    metric_help = {
        "loss": "margin loss with both digits present + the two redrawings' squared error (scaled)",
        "lengths_loss": "margin loss: both present digits' capsules longer than 0.9, the other eight shorter than 0.1",
        "first_loss": "squared error of the redrawing of the first digit from its capsule, against that digit alone",
        "second_loss": "the same for the second digit",
        "lengths_pair_accuracy": "share of the training pairs whose two longest capsules are exactly the two digits",
    }
    key_metric = "pair_accuracy"
    higher_is_better = True

    def build(self) -> None:
        self.encoder = build_capsule_encoder(self.config, size=FRAME)
        self.decoder = build_capsule_decoder(self.config, size=FRAME)
        images = keras.Input((FRAME, FRAME), name="image")
        first, second = keras.Input((10,), name="first_label"), keras.Input((10,), name="second_label")
        lengths, poses = self.encoder(images)
        mask = Mask()
        self.trainer = keras.Model([images, first, second], {
            "lengths": lengths, "first": self.decoder(mask([poses, first])),
            "second": self.decoder(mask([poses, second]))}, name="capsnet_multi")
        self._read_out(self.encoder, self.decoder)

    def parts(self) -> dict[str, keras.Model]:
        return {"model": self.trainer}

    @staticmethod
    def as_input(images) -> np.ndarray:
        return as_pairs(images)

    def compile(self, learning_rate: float) -> keras.Model:
        weight = RECONSTRUCTION_WEIGHT / 784 * FRAME * FRAME  # the paper's 0.0005 on each summed squared error
        self.trainer.compile(optimizer=keras.optimizers.Adam(learning_rate),
                             loss={"lengths": margin_loss, "first": "mse", "second": "mse"},
                             loss_weights={"lengths": 1.0, "first": weight, "second": weight},
                             metrics={"lengths": [pair_accuracy]})
        return self.trainer

    def train_dataset(self, x, y, batch_size, seed):
        def arrange(merged, first, second, label_1, label_2):
            a, b = tf.one_hot(label_1, 10), tf.one_hot(label_2, 10)
            return (merged, a, b), {"lengths": a + b, "first": first, "second": second}
        return pair_pipeline(x, y, batch_size, seed, arrange)

    def read_pair(self, images: np.ndarray) -> PairReading:
        """Name the two digits (the two longest capsules) and redraw each from its own capsule."""
        return self._reading(*self._encoded(images))

    def read_routed(self, images: np.ndarray) -> tuple[PairReading, RoutingTrace]:
        """`read_pair` and `route` from one pass through the capsules (the Two digits page shows both)."""
        trace = self.route(images)
        return self._reading(trace.lengths[:, -1], trace.poses), trace

    def _reading(self, lengths: np.ndarray, poses: np.ndarray) -> PairReading:
        digits = _top_two(lengths)
        return PairReading(digits, lengths, self.redraw_each(poses, digits))

    def redraw_each(self, poses: np.ndarray, digits: np.ndarray) -> np.ndarray:
        """Each of two digits (B, 2) redrawn from its own capsule, in one pass through the decoder: (B, 2, H, W)."""
        redrawn = self.reconstruct(np.repeat(poses, 2, axis=0), np.asarray(digits).reshape(-1))
        return redrawn.reshape(len(poses), 2, *redrawn.shape[1:])

    needs_scorer = True

    def evaluate(self, x: np.ndarray, y: np.ndarray, scorers: dict | None = None) -> dict[str, float]:
        """On the fixed 10,000 test pairs: both digits named, and each redrawn from its true capsule against
        that digit alone. With `scorers` ({suffix: MNIST classifier}, see `store.evaluate`), also how often
        each reads a redrawing as its digit (`redraw_read{suffix}`), beside the same for the digits themselves
        (`redraw_read{suffix}_real`, the ceiling): a separation judged by a model that never saw a pair."""
        pairs = test_pairs(x, y)

        def run(index):
            trace = self.route(pairs.images[index], pairs.labels[index])  # the answer and the routing, one pass
            attribution = [routing_attribution(trace, pairs.digits[index], pairs.labels[index], it)
                           for it in (0, trace.iterations - 1)]
            return trace.lengths[:, -1], self.redraw_each(trace.poses, pairs.labels[index]), *attribution
        lengths, redrawn, first, last = predict_batches(run, np.arange(len(pairs.labels)), 500)
        corr = correlation(redrawn, pairs.digits)
        result = {**_scores(lengths, pairs.labels), "redraw_mse": float(np.mean((redrawn - pairs.digits) ** 2)),
                  "redraw_correlation": float(corr.mean()),
                  "routing_attribution_first": float(first.mean()), "routing_attribution_last": float(last.mean())}
        truth = pairs.labels.reshape(-1)
        for suffix, scorer in (scorers or {}).items():
            for name, images in (("", redrawn), ("_real", pairs.digits)):
                (probs,) = predict_batches(lambda b, s=scorer: (s.classify(centred_28(b)),),
                                           images.reshape(-1, FRAME, FRAME))
                result[f"redraw_read{suffix}{name}"] = float(np.mean(probs.argmax(1) == truth))
        return result


@dataclasses.dataclass
class MultiCNNConfig(Config):
    """The MNIST CNN's convolutions (`filters`, `convs_per_block`; same layer names, so it can start from them),
    then a dense layer and ten sigmoid outputs."""

    filters: tuple[int, ...] = (32, 64)
    convs_per_block: tuple[int, ...] = (1, 2)
    dense_units: int = 768
    dropout: float = 0.3


class MultiCNN(ZooModel):
    config_class = MultiCNNConfig
    metric_help = {
        "loss": "binary cross-entropy of the ten sigmoid outputs against the two digits present",
        "pair_accuracy": "share of the training pairs whose two highest outputs are exactly the two digits",
    }
    key_metric = "pair_accuracy"
    higher_is_better = True

    def build(self) -> None:
        c = self.config
        images = keras.Input((FRAME, FRAME), name="image")
        h = layers.Reshape((FRAME, FRAME, 1))(images)
        for block, (filters, convs) in enumerate(zip(c.filters, c.convs_per_block, strict=True)):
            for conv in range(convs):
                h = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}_{conv}")(h)
            h = layers.Dropout(c.dropout / 2)(layers.MaxPooling2D()(h))
        h = layers.Dropout(c.dropout)(layers.Dense(c.dense_units, activation="relu", name="dense")(
            layers.Flatten()(h)))
        self.network = keras.Model(images, layers.Dense(10, activation="sigmoid", name="present")(h),
                                   name="cnn_multi")
        self._infer = self.inference_function(self.network)

    def parts(self) -> dict[str, keras.Model]:
        return {"model": self.network}

    def compile(self, learning_rate: float) -> keras.Model:
        self.network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                             metrics=[pair_accuracy])
        return self.network

    def train_dataset(self, x, y, batch_size, seed):
        return pair_pipeline(x, y, batch_size, seed,
                             lambda merged, first, second, a, b: (merged, tf.one_hot(a, 10) + tf.one_hot(b, 10)))

    def _present(self, images: np.ndarray) -> np.ndarray:
        with self.lock:
            return self._infer(tf.convert_to_tensor(as_pairs(images))).numpy()

    def read_pair(self, images: np.ndarray) -> PairReading:
        scores = self._present(images)
        return PairReading(_top_two(scores), scores, None)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        pairs = test_pairs(x, y)
        (scores,) = predict_batches(lambda b: (self._present(b),), pairs.images, 1000)
        return _scores(scores, pairs.labels)


# --- the shipped recipes -------------------------------------------------------------------------------------

# Both start from their MNIST model's convolutions (the layers of the same name and shape) and train side by side
# for the same wall-clock budget (one core each), in the same three stages: the first decays the learning rate to
# about a tenth, the second restarts it at 3e-4 and the third at 2e-4, each decaying it to about a fifth (210
# minutes in all: capsnet_multi 89.3 → 90.7 → 90.8 %, cnn_multi 90.7 → 91.2 → 91.5 %). On the strided CapsNet
# design both train about as many pairs a second (`bench multimnist`), so both run about as many epochs.
BUDGET_MINUTES = 75


def budgeted_recipe(front_end_from: str, config: dict | None = None) -> tuple[Stage, ...]:
    """The one recipe both MultiMNIST models train with, from the MNIST model `front_end_from`."""
    return (Stage(100, lr_decay=0.94, batch_size=100, max_minutes=BUDGET_MINUTES, front_end_from=front_end_from,
                  config=dict(config or {})),
            Stage(100, 3e-4, 0.95, batch_size=100, max_minutes=BUDGET_MINUTES),
            Stage(100, 2e-4, 0.95, batch_size=100, max_minutes=60))


# The MNIST CapsNet's early-striding stack on BatchNorm, as it shipped before that CapsNet moved to GroupNorm
# (`capsnet.CAPSNET_DESIGN`); the shipped weights started from that BatchNorm CapsNet. Retrained from today's
# CapsNet, the head start takes its convolutions (layers of the same name and shape), not its GroupNorm.
MULTI_DESIGN = {"front_end": "stack", "stack_strides": (1, 2, 2, 2)}
SPECS = [
    ModelSpec("capsnet_multi", MultiCapsNet, ("mnist",), "CapsNet on MultiMNIST (two overlapping digits)",
              recipe=budgeted_recipe("capsnet", MULTI_DESIGN)),
    ModelSpec("cnn_multi", MultiCNN, ("mnist",), "CNN baseline on MultiMNIST", recipe=budgeted_recipe("cnn")),
]


def pen_inks(rgba: np.ndarray) -> np.ndarray:
    """A canvas picture drawn with the red and the green pen (H, W, 3+) → each pen's ink, (2, H, W) in [0, 1]:
    a pixel is one pen's where its channel clearly leads the other's (where the strokes cross, the later pen)."""
    red, green = (rgba[..., c].astype(np.float32) / 255 for c in (0, 1))
    return np.stack([np.where(red > green + 0.15, red, 0), np.where(green > red + 0.15, green, 0)])


def to_multimnist(inks: np.ndarray, min_ink: float = 0.15) -> np.ndarray:
    """The ink of each of two pens of one drawing, (2, H, W) in [0, 1] → (2, 36, 36), placed as MultiMNIST digits
    sit: both scaled by one factor that brings the larger digit's longer side to 20 px (as MNIST scales a digit),
    keeping where they are relative to each other, their union centred by mass in the 36×36 frame. The merged
    image the models see is the pixel-wise max of the two."""
    from PIL import Image

    from .preprocess import FIT, BlankDrawingError

    inks = np.clip(np.nan_to_num(np.asarray(inks, np.float32)), 0, 1)
    present = [k for k in range(len(inks)) if inks[k].max(initial=0) >= min_ink]
    if not present:
        raise BlankDrawingError("nothing is drawn yet: draw two digits over each other, one with each pen")
    inks = np.where(inks >= min_ink * 0.5, inks, 0.0)

    def box(ink):
        rows, cols = np.nonzero(ink.any(1))[0], np.nonzero(ink.any(0))[0]
        return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    scale = FIT / max(max(b[1] - b[0], b[3] - b[2]) for b in (box(inks[k]) for k in present))
    top, bottom, left, right = box(inks.max(0))
    height, width = bottom - top, right - left
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.stack([np.asarray(Image.fromarray(ink[top:bottom, left:right], mode="F").resize(
        size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR)) for ink in inks])
    small = np.clip(small, 0, 1)[:, :FRAME, :FRAME]
    merged = small.max(0)
    rows, cols = np.arange(merged.shape[0]), np.arange(merged.shape[1])
    com_r = (merged.sum(1) * rows).sum() / merged.sum()
    com_c = (merged.sum(0) * cols).sum() / merged.sum()
    at_r = int(np.clip(round(FRAME / 2 - com_r), 0, FRAME - merged.shape[0]))
    at_c = int(np.clip(round(FRAME / 2 - com_c), 0, FRAME - merged.shape[1]))
    out = np.zeros((len(inks), FRAME, FRAME), np.float32)
    out[:, at_r:at_r + merged.shape[0], at_c:at_c + merged.shape[1]] = small
    return out
