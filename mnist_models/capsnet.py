"""CapsNet (Sabour, Frosst & Hinton 2017, "Dynamic Routing Between Capsules").

conv → primary capsules → digit capsules (16-D, routing by agreement, squash) → lengths as class scores;
a decoder redraws the digit from the masked 16-D pose of one class. Routing is vectorized: every routing
iteration is two batched GEMMs over the flattened input capsules (see `DigitCapsules.routing`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from .base import Config, ModelSpec, ZooModel, as_images, image_pipeline, predict_batches, to_float

RECONSTRUCTION_WEIGHT = 0.0005 * 784  # the paper's 0.0005 on summed squared error, applied to the mean


@dataclasses.dataclass
class CapsNetConfig(Config):
    """Reduced from the paper (256 conv filters, 32×8-D primary types = 1152 capsules) to fit CPU training."""

    conv_filters: int = 32
    primary_types: int = 16
    primary_dim: int = 8
    digit_dim: int = 16
    routings: int = 3
    decoder_units: tuple[int, int] = (512, 1024)
    max_shift: int = 2


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
        """Routing by agreement from input capsules u (B, n_in, d_in) → outputs v (B, n_out, d_out) and coupling
        coefficients c (B, n_in, n_out), which sum to 1 over the output capsules for every input capsule.

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
            if not last:
                back = tf.matmul(v, w_const, transpose_b=True)  # W_ijᵀ v_j, (n_out, B, n_in·d_in)
                agreement = tf.reshape(back, (n_out, -1, self.n_in, self.d_in)) * u_const[None]
                logits = logits + tf.reduce_sum(agreement, -1)
        return tf.transpose(v, (1, 0, 2)), tf.transpose(c, (1, 2, 0))

    def call(self, inputs):
        return self.routing(inputs)[0]

    def get_config(self):
        return {**super().get_config(), "num_capsules": self.num_capsules, "dim": self.dim,
                "routings": self.routings}


@keras.saving.register_keras_serializable("mnist_models")
class TiledDigitCapsules(DigitCapsules):
    """The formulation of the popular Keras CapsNet (XifengGuo/CapsNet-Keras, TF2 branch): tile the inputs once
    per output capsule, map a matmul over the examples, route with broadcast multiply + sum. Same weights and
    maths as DigitCapsules; kept only as the benchmark's reference."""

    def predictions(self, u):
        tiled = tf.tile(u[:, None, :, :, None], (1, self.num_capsules, 1, 1, 1))  # (B, n_out, n_in, d_in, 1)
        w = tf.transpose(tf.reshape(self.W, (self.n_in, self.d_in, self.num_capsules, self.dim)), (2, 0, 3, 1))
        return tf.squeeze(tf.map_fn(lambda x: tf.matmul(w, x), tiled), -1)  # (B, n_out, n_in, d_out)

    def routing(self, u):
        return self.route(self.predictions(u))

    def route(self, u_hat):
        u_hat_const = tf.stop_gradient(u_hat)
        logits = tf.zeros(tf.shape(u_hat)[:3])  # (B, n_out, n_in)
        for i in range(self.routings):
            c = tf.nn.softmax(logits, axis=1)
            last = i == self.routings - 1
            v = squash(tf.reduce_sum(c[..., None] * (u_hat if last else u_hat_const), axis=2))
            if not last:
                logits = logits + tf.reduce_sum(u_hat_const * v[:, :, None, :], axis=-1)
        return v, tf.transpose(c, (0, 2, 1))


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


def build_capsule_encoder(config: CapsNetConfig, capsule_layer=DigitCapsules, size: int = 28) -> keras.Model:
    """image (size, size) → [lengths (10,), poses (10, digit_dim)]; the primary-capsule grid grows with `size`."""
    images = keras.Input((size, size), name="image")
    x = layers.Reshape((size, size, 1))(images)
    x = layers.Conv2D(config.conv_filters, 9, activation="relu", name="conv1")(x)
    x = layers.Conv2D(config.primary_types * config.primary_dim, 9, strides=2, name="primary_conv")(x)
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


class CapsuleOutput(NamedTuple):
    probabilities: np.ndarray  # (N, 10) capsule lengths normalised to sum to 1
    lengths: np.ndarray  # (N, 10) in [0, 1): the network's own per-class evidence
    poses: np.ndarray  # (N, 10, 16)


class CapsNet(ZooModel):
    config_class = CapsNetConfig
    key_metric = "test_accuracy"
    higher_is_better = True
    capsule_layer = DigitCapsules

    def build(self) -> None:
        self.encoder, self.decoder, self.trainer = build_capsnet(self.config, self.capsule_layer)
        self._encode, self._decode = self.inference_function(self.encoder), self.inference_function(self.decoder)

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
            optimizer=keras.optimizers.Adam(learning_rate),
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

    def analyze(self, images: np.ndarray) -> CapsuleOutput:
        batch = as_images(images)
        with self.lock:
            lengths, poses = self._encode(tf.convert_to_tensor(batch))
        lengths, poses = lengths.numpy(), poses.numpy()
        return CapsuleOutput(lengths / lengths.sum(1, keepdims=True), lengths, poses)

    def classify(self, images: np.ndarray) -> np.ndarray:
        return self.analyze(images).probabilities

    def reconstruct(self, poses: np.ndarray, classes) -> np.ndarray:
        """Redraw from the pose of capsule `classes` (one int, or one per image): any class, not only the winner."""
        poses = np.asarray(poses, np.float32).reshape(-1, 10, self.config.digit_dim)
        classes = np.broadcast_to(np.asarray(classes, np.int64), (len(poses),))
        if np.any((classes < 0) | (classes > 9)):
            raise ValueError("class must be between 0 and 9")
        masked = poses * np.eye(10, dtype=np.float32)[classes][:, :, None]
        with self.lock:
            return self._decode(tf.convert_to_tensor(masked.reshape(len(poses), -1))).numpy()

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


class ReferenceCapsNet(CapsNet):
    """Same network with the tiled reference routing: the baseline for `bench capsnet`."""

    capsule_layer = TiledDigitCapsules


# --- the shipped recipes -------------------------------------------------------------------------------------

SPECS = [ModelSpec("capsnet", CapsNet, ("mnist", "fashion"), "CapsNet (dynamic routing)", epochs=10, batch_size=100,
                   lr_decay=0.85)]
