"""CapsNet (Sabour, Frosst & Hinton 2017, "Dynamic Routing Between Capsules").

convolutions → primary capsules on a spatial grid → digit capsules (16-D, routing by agreement, squash) →
lengths as class scores; a decoder redraws the digit from the masked 16-D pose of one class. Routing is
vectorized: every routing iteration is two batched GEMMs over the flattened input capsules
(see `DigitCapsules.routing`).

The front end is Efficient-CapsNet's (Mazzia et al. 2021): four normalised convolutions, three of them with
stride 2, down to a 2×2 map, so there are 64 primary capsules instead of the paper's 1,152 and both the
convolutions and routing are cheap; the paper's one wide 9×9 convolution, and the stack striding later (a 4×4
map), learn less per CPU minute (docs/training-notes.md, "CapsNet front ends"). The MNIST CapsNet normalises with
GroupNorm, per image: BatchNorm's statistics, fixed from MNIST's digits, misscaled drawings that look unlike them
("Handwriting that is not MNIST's").
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from .base import (
    Config,
    ModelSpec,
    Stage,
    ZooModel,
    as_images,
    batch_norm_from_one_batch,
    image_pipeline,
    predict_batches,
    to_float,
)

RECONSTRUCTION_WEIGHT = 0.0005 * 784  # the paper's 0.0005 on summed squared error, applied to the mean


@dataclasses.dataclass
class CapsNetConfig(Config):
    """`front_end` "stack": convolutions of `stack_filters` (5×5, then three 3×3, each with BatchNorm) with
    `stack_strides`, then a 3×3 convolution read as `primary_types` capsules of `primary_dim` at every place of
    the map: strides 1, 2, 2, 2 (the shipped recipes) give 2×2 places on 28×28 inputs and 3×3 on MultiMNIST's
    36×36; 1, 1, 2, 2 (weights saved before) 4×4 and 6×6. "single" (weights saved before the stack existed):
    one 9×9 convolution of `conv_filters`, then a 9×9 stride-2 primary convolution (6×6 places on 28×28)."""

    front_end: str = "single"
    conv_filters: int = 32
    stack_filters: tuple[int, ...] = (32, 64, 64, 128)
    stack_strides: tuple[int, ...] = (1, 1, 2, 2)
    # "batch": BatchNorm after each stack convolution (statistics fixed from MNIST's training digits); "group":
    # GroupNorm (`norm_groups` groups), each image normalised by its own statistics, so a drawing whose strokes
    # look unlike MNIST's (blurred, blocky, another pen) is scaled as MNIST's were (docs/training-notes.md,
    # "Handwriting that is not MNIST's")
    norm: str = "batch"
    norm_groups: int = 8
    primary_types: int = 16
    primary_dim: int = 8
    digit_dim: int = 16
    routings: int = 3
    decoder_units: tuple[int, int] = (512, 1024)
    max_shift: int = 2
    # > 0: the weights kept are the exponential moving average of the training steps' weights (a stage at a
    # constant learning rate then ends at the mean of where it wandered, not wherever its last step landed)
    ema_momentum: float = 0.0


def squash(s, axis=-1):
    """v = |s|² / (1 + |s|²) · s / |s|: keeps direction, maps length into [0, 1)."""
    squared = ops.sum(ops.square(s), axis=axis, keepdims=True)
    return squared / (1.0 + squared) * s / ops.sqrt(squared + keras.backend.epsilon())


@keras.saving.register_keras_serializable("mnist_models")
class Squash(layers.Layer):
    def call(self, inputs):
        return squash(inputs)


@keras.saving.register_keras_serializable("mnist_models")
class DigitCapsules(layers.Layer):
    """Input capsules (B, n_in, d_in) → output capsules (B, n_out, d_out) by dynamic routing."""

    def __init__(self, num_capsules: int, dim: int, routings: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.num_capsules, self.dim, self.routings = num_capsules, dim, routings

    def build(self, input_shape):
        _, self.n_in, self.d_in = input_shape
        self.W = self.add_weight(name="W", shape=(self.n_in, self.d_in, self.num_capsules * self.dim),
                                 initializer=keras.initializers.RandomNormal(stddev=0.01))

    def routing(self, u):
        """Routing by agreement from input capsules u (B, n_in, d_in) → outputs v (B, n_out, d_out) and the last
        iteration's coupling coefficients c (B, n_in, n_out), which sum to 1 over the output capsules."""
        outputs, couplings = self.iterations(u)
        return outputs[-1], couplings[-1]

    def iterations(self, u):
        """Routing by agreement, every iteration kept: the outputs v (B, n_out, d_out) and the coupling
        coefficients c (B, n_in, n_out) each iteration routed with (the first's are uniform: the priors start at
        zero). Training and inference use only the last; `CapsNet.route` shows them all (one code path).

        The prediction vectors û_{j|i} = W_ij u_i (B × n_out × n_in × d_out numbers, transposed twice in the usual
        formulation) are never built: s_j = Σ_i c_ij W_ij u_i = W_j · (c_j ⊙ u) is one GEMM per output capsule over
        the flattened (n_in·d_in) inputs, and the agreement û_{j|i}·v_j = u_i · (W_ijᵀ v_j) is one GEMM back.
        Everything stays in an (n_out, B, …) layout, so no large transpose is needed either way.
        """
        n_out, flat = self.num_capsules, self.n_in * self.d_in
        w = tf.reshape(tf.transpose(tf.reshape(self.W, (self.n_in, self.d_in, n_out, self.dim)), (2, 0, 1, 3)),
                       (n_out, flat, self.dim))
        # as in the reference code, only the last iteration sends gradient; the others route on constants
        u_const, w_const = tf.stop_gradient(u), tf.stop_gradient(w)
        logits = tf.zeros((n_out, tf.shape(u)[0], self.n_in))  # b_ij, laid out (n_out, B, n_in)
        outputs, couplings = [], []
        for i in range(self.routings):
            c = tf.nn.softmax(logits, axis=0)
            last = i == self.routings - 1
            inputs, weights = (u, w) if last else (u_const, w_const)
            if i == 0:  # c is still uniform (1/n_out): one plain GEMM for all output capsules, nothing to weigh
                kernel = self.W if last else tf.stop_gradient(self.W)
                s = tf.matmul(tf.reshape(inputs, (-1, flat)), tf.reshape(kernel, (flat, n_out * self.dim))) / n_out
                s = tf.transpose(tf.reshape(s, (-1, n_out, self.dim)), (1, 0, 2))
            else:
                s = tf.matmul(tf.reshape(c[..., None] * inputs[None], (n_out, -1, flat)), weights)
            v = squash(s)  # (n_out, B, d_out)
            outputs.append(tf.transpose(v, (1, 0, 2)))
            couplings.append(tf.transpose(c, (1, 2, 0)))
            if not last:
                back = tf.matmul(v, w_const, transpose_b=True)  # W_ijᵀ v_j, (n_out, B, n_in·d_in)
                agreement = tf.reshape(back, (n_out, -1, self.n_in, self.d_in)) * u_const[None]
                logits = logits + tf.reduce_sum(agreement, -1)
        return outputs, couplings

    def vote_lengths(self, u):
        """|û_j|i| = |W_ij u_i|, (B, n_in, n_out): how long a vote each input capsule sends each output capsule."""
        votes = tf.einsum("bnd,ndk->bnk", u, self.W)
        return tf.norm(tf.reshape(votes, (-1, self.n_in, self.num_capsules, self.dim)), axis=-1)

    def call(self, inputs):
        return self.routing(inputs)[0]

    def get_config(self):
        return {**super().get_config(), "num_capsules": self.num_capsules, "dim": self.dim,
                "routings": self.routings}


@keras.saving.register_keras_serializable("mnist_models")
class Length(layers.Layer):
    def call(self, inputs):
        return ops.sqrt(ops.sum(ops.square(inputs), axis=-1) + keras.backend.epsilon())


@keras.saving.register_keras_serializable("mnist_models")
class Mask(layers.Layer):
    """Keep one capsule's pose (one-hot `mask`), zero the rest, flatten for the decoder."""

    def call(self, inputs):
        poses, mask = inputs
        return ops.reshape(poses * ops.expand_dims(mask, -1), (-1, poses.shape[1] * poses.shape[2]))


def margin_loss(y_true, lengths):
    """L_k = T_k max(0, 0.9 − |v_k|)² + 0.5 (1 − T_k) max(0, |v_k| − 0.1)², summed over classes."""
    y_true = ops.cast(y_true, lengths.dtype)
    loss = y_true * ops.square(ops.relu(0.9 - lengths)) + 0.5 * (1 - y_true) * ops.square(ops.relu(lengths - 0.1))
    return ops.sum(loss, axis=-1)


STACK_KERNELS = (5, 3, 3, 3)  # the kernel size of each front-end convolution


def primary_grid(config: CapsNetConfig, x):
    """The front end: image (B, H, W, 1) → primary-capsule map (B, h, w, types·dim), one place per grid cell."""
    channels = config.primary_types * config.primary_dim
    if config.front_end == "single":
        x = layers.Conv2D(config.conv_filters, 9, activation="relu", name="conv1")(x)
        return layers.Conv2D(channels, 9, strides=2, name="primary_conv")(x)
    if config.front_end != "stack":
        raise ValueError(f"front_end must be 'stack' or 'single', got {config.front_end!r}")
    for field in ("stack_filters", "stack_strides"):
        if len(getattr(config, field)) != len(STACK_KERNELS):
            raise ValueError(f"{field} needs {len(STACK_KERNELS)} sizes, got {list(getattr(config, field))}")
    if config.norm == "batch":
        norm = layers.BatchNormalization
    elif config.norm == "group":
        norm = functools.partial(layers.GroupNormalization, groups=config.norm_groups)
    else:
        raise ValueError(f"norm must be 'batch' or 'group', got {config.norm!r}")
    layout = zip(config.stack_filters, STACK_KERNELS, config.stack_strides, strict=True)
    for i, (filters, kernel, stride) in enumerate(layout):
        x = layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=f"conv{i}")(x)
        x = layers.Activation("relu")(norm(name=f"bn{i}")(x))
    return layers.Conv2D(channels, 3, padding="same", name="primary_conv")(x)


def build_capsule_encoder(config: CapsNetConfig, capsule_layer=DigitCapsules, size: int = 28) -> keras.Model:
    """image (size, size) → [lengths (10,), poses (10, digit_dim)]; the primary-capsule grid grows with `size`
    (row-major over the grid, `primary_types` capsules per place)."""
    images = keras.Input((size, size), name="image")
    x = primary_grid(config, layers.Reshape((size, size, 1))(images))
    x = layers.Reshape((-1, config.primary_dim), name="primary_capsules")(x)
    primary = Squash(name="primary_squash")(x)
    poses = capsule_layer(10, config.digit_dim, config.routings, name="digit_capsules")(primary)
    lengths = Length(name="lengths")(poses)
    return keras.Model(images, [lengths, poses], name="capsnet_encoder")


def build_capsule_decoder(config: CapsNetConfig, size: int = 28) -> keras.Model:
    """masked poses (10·digit_dim,) → image (size, size): the fully connected decoder of the paper."""
    flat_pose = keras.Input((10 * config.digit_dim,), name="masked_pose")
    h = flat_pose
    for i, units in enumerate(config.decoder_units):
        h = layers.Dense(units, activation="relu", name=f"decoder_{i}")(h)
    h = layers.Dense(size * size, activation="sigmoid", name="decoder_out")(h)
    return keras.Model(flat_pose, layers.Reshape((size, size))(h), name="capsnet_decoder")


def build_capsnet(config: CapsNetConfig, capsule_layer=DigitCapsules):
    """Returns (encoder: image → [lengths, poses], decoder: masked poses → image, trainer)."""
    encoder, decoder = build_capsule_encoder(config, capsule_layer), build_capsule_decoder(config)
    images, onehot = keras.Input((28, 28), name="image"), keras.Input((10,), name="label")
    lengths_t, poses_t = encoder(images)
    recon = decoder(Mask()([poses_t, onehot]))
    trainer = keras.Model([images, onehot], {"lengths": lengths_t, "reconstruction": recon}, name="capsnet")
    return encoder, decoder, trainer


@dataclasses.dataclass
class RoutingTrace:
    """What routing by agreement did for a batch of images, iteration by iteration (indexed from 0), and for two
    digit capsules per image (`mapped`), which input pixels it came from."""

    coupling: np.ndarray  # (B, iterations, n_primary, 10): c_ij at each iteration; rows sum to 1
    votes: np.ndarray  # (B, n_primary, 10): |û_j|i|, the length of each primary capsule's vote for each digit
    lengths: np.ndarray  # (B, iterations, 10): digit-capsule lengths after each iteration (the last: the output)
    poses: np.ndarray  # (B, 10, 16): the digit capsules after the last iteration, as `analyze` gives them
    mapped: np.ndarray  # (B, 2): the digit capsules `maps` are for (by default the two longest)
    maps: np.ndarray  # (B, 2, iterations, H, W): see `pixel_map`

    @property
    def iterations(self) -> int:
        return self.coupling.shape[1]

    def sent(self, digit, iteration: int) -> np.ndarray:
        """(B, n_primary): c_ij · |û_j|i|, how strongly each primary capsule sends its vote to capsule `digit`
        (one int, or one per image) at `iteration`."""
        digits = np.broadcast_to(np.asarray(digit, np.int64), (len(self.coupling),))
        rows = np.arange(len(digits))
        return self.coupling[rows, iteration, :, digits] * self.votes[rows, :, digits]

    def pixel_map(self, digit, iteration: int) -> np.ndarray:
        """(B, H, W): each input pixel's share of what reaches capsule `digit` (one int, or one per image; one of
        `mapped`) at `iteration`, from `pixel_maps`: positive where the pixel adds to the agreement."""
        digits = np.broadcast_to(np.asarray(digit, np.int64), (len(self.mapped),))
        hit = self.mapped == digits[:, None]
        if not hit.any(1).all():
            raise ValueError(f"no pixel map for capsule(s) {sorted(set(digits[~hit.any(1)].tolist()))}: "
                             "route with digits= naming them")
        return self.maps[np.arange(len(digits)), hit.argmax(1), iteration]


def trace_routing(primary: keras.Model, capsules: DigitCapsules, images):
    """The routing the model runs (`DigitCapsules.iterations`), with every iteration's couplings and lengths, the
    votes' lengths and the final poses: (coupling (B, it, n_in, 10), votes (B, n_in, 10), lengths (B, it, 10),
    poses (B, 10, d))."""
    u = primary(images, training=False)
    outputs, couplings = capsules.iterations(u)
    lengths = [ops.sqrt(ops.sum(ops.square(v), axis=-1) + keras.backend.epsilon()) for v in outputs]  # as Length
    return tf.stack(couplings, 1), capsules.vote_lengths(u), tf.stack(lengths, 1), outputs[-1]


def pixel_maps(primary: keras.Model, capsules: DigitCapsules, inputs):
    """(B, 2, iterations, H, W): for digit capsule j (two per image) and iteration t, gradient × input of
    Σ_i c_ij(t) ⟨û_j|i, v_j⟩, the agreement that reaches capsule j: the couplings c_ij of that iteration (as
    `trace_routing` returned them) and the final pose v_j are held fixed, and the votes û_j|i = W_ij u_i are
    followed back through the front end to each input pixel. Since ⟨û_j|i, v_j⟩ = u_i · W_ijᵀ v_j, the 2 ×
    iterations agreements of an image are linear in its primary capsules u: one pass forward, and one vectorised
    pass back for all of them (`batch_jacobian`; a tiled batch that ran the front end forward once per map cost
    the Draw page 1.4 ms more per drawing, docs/training-notes.md, "Pixel maps")."""
    images, digits, coupling, poses = inputs
    batch, iterations = tf.shape(images)[0], coupling.shape[1]
    n_in, d_in, dim = capsules.n_in, capsules.d_in, capsules.dim
    weights = tf.reshape(capsules.W, (n_in, d_in, capsules.num_capsules, dim))
    chosen_poses = tf.gather(poses, digits, batch_dims=1)  # (B, 2, d)
    chosen_weights = tf.gather(weights, digits, axis=2)  # (n_in, d_in, B, 2, d)
    back = tf.einsum("nebkd,bkd->bkne", chosen_weights, chosen_poses)  # W_ijᵀ v_j, (B, 2, n_in, d_in)
    chosen_coupling = tf.transpose(tf.gather(coupling, digits, axis=3, batch_dims=1), (0, 3, 1, 2))  # (B, 2, it, n)
    cotangent = chosen_coupling[..., None] * back[:, :, None]  # (B, 2, it, n_in, d_in)
    with tf.GradientTape() as tape:  # batch_jacobian needs each image's u to depend on that image alone: true at
        tape.watch(images)  # inference (GroupNorm is per image, BatchNorm uses its moving statistics)
        u = primary(images, training=False)  # (B, n_in, d_in)
        agreements = tf.einsum("bne,bktne->bkt", u, cotangent)  # (B, 2, iterations)
    maps = tape.batch_jacobian(agreements, images) * images[:, None, None]
    return tf.reshape(maps, (batch, 2, iterations, *images.shape[1:]))


def routing_functions(model: ZooModel, encoder: keras.Model):
    """`trace_routing` and `pixel_maps` for `encoder` as two of `model`'s inference functions (traced at
    warm-up)."""
    primary = keras.Model(encoder.inputs, encoder.get_layer("primary_squash").output)
    capsules = encoder.get_layer("digit_capsules")
    route = model.inference_function(encoder, call=functools.partial(trace_routing, primary, capsules))
    image = encoder.inputs[0]
    iterations, n_in = capsules.routings, capsules.n_in
    signature = (tf.TensorSpec(image.shape, image.dtype), tf.TensorSpec((None, 2), tf.int32),
                 tf.TensorSpec((None, iterations, n_in, capsules.num_capsules), tf.float32),
                 tf.TensorSpec((None, capsules.num_capsules, capsules.dim), tf.float32))
    maps = tf.function(functools.partial(pixel_maps, primary, capsules), input_signature=[signature])
    model._inference_functions.append(maps)
    return route, maps


class CapsuleOutput(NamedTuple):
    probabilities: np.ndarray  # (N, 10) capsule lengths normalised to sum to 1
    lengths: np.ndarray  # (N, 10) in [0, 1): the network's own per-class evidence
    poses: np.ndarray  # (N, 10, 16)


class CapsuleReadout:
    """What both CapsNets (one digit, `CapsNet`; a pair, `multimnist.MultiCapsNet`) offer once built: how the
    capsules routed, and a redrawing from any digit capsule's pose."""

    size: int  # the input frame's side
    lock: threading.Lock

    @staticmethod
    def as_input(images) -> np.ndarray:
        return as_images(images)

    def _read_out(self, encoder: keras.Model, decoder: keras.Model) -> None:
        """Set up the inference functions (call at the end of `build`)."""
        self._encode, self._decode = self.inference_function(encoder), self.inference_function(decoder)
        self._route, self._pixel_maps = routing_functions(self, encoder)

    def _encoded(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(lengths (N, 10), poses (N, 10, digit_dim)) of the digit capsules."""
        with self.lock:
            lengths, poses = self._encode(tf.convert_to_tensor(self.as_input(images)))
        return lengths.numpy(), poses.numpy()

    def route(self, images, digits=None) -> RoutingTrace:
        """How the primary capsules routed their votes to the digit capsules, iteration by iteration, and the
        pixel maps of two digit capsules per image: `digits` (B, 2), by default the two longest."""
        batch = tf.convert_to_tensor(self.as_input(images))
        with self.lock:
            coupling, votes, lengths, poses = self._route(batch)
            if digits is None:
                digits = tf.math.top_k(lengths[:, -1], 2).indices
            digits = tf.cast(tf.reshape(digits, (-1, 2)), tf.int32)
            maps = self._pixel_maps((batch, digits, coupling, poses))
        return RoutingTrace(coupling.numpy(), votes.numpy(), lengths.numpy(), poses.numpy(), digits.numpy(),
                            maps.numpy())

    def reconstruct(self, poses: np.ndarray, classes, at_length: float | None = None) -> np.ndarray:
        """Redraw from the pose of capsule `classes` (one int, or one per image): any class, not only the winner.
        A losing capsule is short, and the decoder draws a short capsule faintly; `at_length` first scales the
        chosen capsule to that length, keeping its direction (what it holds, drawn as strongly as a winner)."""
        poses = np.asarray(poses, np.float32).reshape(-1, 10, self.config.digit_dim)
        classes = np.broadcast_to(np.asarray(classes, np.int64), (len(poses),))
        if np.any((classes < 0) | (classes > 9)):
            raise ValueError("class must be between 0 and 9")
        masked = poses * np.eye(10, dtype=np.float32)[classes][:, :, None]
        if at_length is not None:
            masked *= at_length / np.maximum(np.linalg.norm(masked, axis=(1, 2), keepdims=True), 1e-12)
        with self.lock:
            return self._decode(tf.convert_to_tensor(masked.reshape(len(poses), -1))).numpy()


class CapsNet(CapsuleReadout, ZooModel):
    config_class = CapsNetConfig
    key_metric = "test_accuracy"
    higher_is_better = True
    capsule_layer = DigitCapsules
    size = 28

    def build(self) -> None:
        self.encoder, self.decoder, self.trainer = build_capsnet(self.config, self.capsule_layer)
        self._read_out(self.encoder, self.decoder)

    def parts(self) -> dict[str, keras.Model]:
        return {"model": self.trainer}

    metric_help = {
        "loss": "the paper's total: margin loss + 0.0005 × reconstruction error",
        "lengths_loss": "margin loss: the right digit's capsule should be longer than 0.9, every other one "
                        "shorter than 0.1",
        "reconstruction_loss": "how far the decoder's redrawing of the digit from its capsule is from the input "
                               "(mean squared error per pixel)",
        "lengths_categorical_accuracy": "share of the training images whose longest capsule is the right digit",
    }

    def compile(self, learning_rate: float) -> keras.Model:
        self.trainer.compile(
            optimizer=keras.optimizers.Adam(learning_rate, use_ema=self.config.ema_momentum > 0,
                                            ema_momentum=self.config.ema_momentum),
            loss={"lengths": margin_loss, "reconstruction": "mse"},
            loss_weights={"lengths": 1.0, "reconstruction": RECONSTRUCTION_WEIGHT},
            metrics={"lengths": "categorical_accuracy"},
        )
        return self.trainer

    def train_dataset(self, x, y, batch_size, seed):
        def arrange(image, label):
            onehot = tf.one_hot(label, 10)
            return (image, onehot), {"lengths": onehot, "reconstruction": image}
        return image_pipeline(x, y, batch_size, seed, self.config.max_shift, arrange)

    def training_callbacks(self, x_train: np.ndarray) -> list[keras.callbacks.Callback]:
        return [AveragedBatchNorm(self, x_train)] if self.config.ema_momentum > 0 else []

    def recalibrate_batch_norm(self, x_train: np.ndarray, samples: int = 4096, seed: int = 0) -> None:
        """Set the front end's BatchNorm statistics to those of one batch of `samples` training digits, shifted
        as in training (seeded): after the averaged weights replace the live ones, the statistics gathered with
        the live ones no longer fit them."""
        norms = [layer for layer in self.encoder.layers if isinstance(layer, layers.BatchNormalization)]
        if not norms:
            return
        picked = np.random.default_rng(seed).choice(len(x_train), min(samples, len(x_train)), replace=False)
        images = next(iter(image_pipeline(x_train[picked], np.zeros(len(picked)), len(picked), seed,
                                          self.config.max_shift)))[0]
        batch_norm_from_one_batch(norms, lambda: self.encoder(images, training=True))

    def analyze(self, images: np.ndarray) -> CapsuleOutput:
        lengths, poses = self._encoded(images)
        return CapsuleOutput(lengths / lengths.sum(1, keepdims=True), lengths, poses)

    def classify(self, images: np.ndarray) -> np.ndarray:
        return self.analyze(images).probabilities

    def preview_images(self, x_uint8):
        images = to_float(x_uint8)

        def redraw():
            out = self.analyze(images)
            return np.stack([images, self.reconstruct(out.poses, out.lengths.argmax(1))])
        return redraw

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        def run(batch):
            out = self.analyze(batch)
            return out.lengths, self.reconstruct(out.poses, out.lengths.argmax(1))
        images = to_float(x)
        lengths, recon = predict_batches(run, images, 500)
        return {"test_accuracy": float(np.mean(lengths.argmax(1) == y)),
                "reconstruction_mse": float(np.mean((recon - images) ** 2)), "test_examples": int(len(y))}


class AveragedBatchNorm(keras.callbacks.Callback):
    """At the end of a stage whose weights are averaged (also a stopped one; Keras has swapped the average in
    by then), the BatchNorm statistics are gathered afresh for the averaged weights."""

    def __init__(self, capsnet: CapsNet, x_train: np.ndarray):
        super().__init__()
        self.capsnet, self.x_train = capsnet, x_train

    def on_train_end(self, logs=None):
        self.capsnet.recalibrate_batch_norm(self.x_train)


# --- the shipped recipes -------------------------------------------------------------------------------------

# The design the MNIST CapsNet ships with: striding early keeps the convolutions' maps small and leaves 64 primary
# capsules to route (`bench capsnet` compares it with the designs before it); GroupNorm normalises each drawing by
# its own statistics. With BatchNorm (statistics fixed from MNIST's training digits) the same design read 88.7 %
# of blocky 8×8 scans where the CNN reads 97.7 %; with GroupNorm 97.8 % (docs/training-notes.md, "Handwriting that
# is not MNIST's"). The MultiMNIST CapsNet still ships on the BatchNorm front end (`multimnist.MULTI_DESIGN`).
CAPSNET_DESIGN = {"front_end": "stack", "stack_strides": (1, 2, 2, 2), "norm": "group"}
# MNIST only: a Fashion-MNIST CapsNet was listed but never trained; it comes back with shipped weights
# 20 epochs at a falling rate, then 8 at a constant one whose weights are averaged over the steps (99.58 % → 99.60 %
# on GroupNorm; on BatchNorm, whose statistics were then gathered again for the averaged weights,
# `AveragedBatchNorm`, 99.63 % → 99.63 %; docs/training-notes.md)
SPECS = [ModelSpec("capsnet", CapsNet, ("mnist",), "CapsNet (dynamic routing)",
                   recipe=(Stage(20, lr_decay=0.9, batch_size=100, config=CAPSNET_DESIGN),
                           Stage(8, 2e-4, batch_size=100, config={"ema_momentum": 0.9995})))]
