"""Autoencoders from the Keras blog's "Building Autoencoders in Keras": vanilla (one hidden layer), multilayer,
convolutional, sparse (L1 activity penalty) and denoising (noisy → clean), plus the noise functions.

All share one class; `AEConfig.kind` picks the encoder/decoder pair. Images are float32 (N, 28, 28) in [0, 1].
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from .base import Config, ModelSpec, Stage, ZooModel, as_images, predict_batches, to_float
from .metrics import psnr, ssim

NOISE_KINDS = ("gaussian", "salt_pepper", "masking")


def noise_tf(images: tf.Tensor, kind: str, amount: float, seed: tf.Tensor) -> tf.Tensor:
    """Corrupt images (…, 28, 28) in [0, 1] deterministically from a stateless `seed` (shape [2]).

    gaussian: add N(0, amount²) and clip; salt_pepper: a fraction `amount` of pixels set to 0 or 1 (half each);
    masking: a fraction `amount` of pixels set to 0.
    """
    shape = tf.shape(images)
    if kind == "gaussian":
        return tf.clip_by_value(images + amount * tf.random.stateless_normal(shape, seed), 0.0, 1.0)
    hit = tf.random.stateless_uniform(shape, seed) < amount
    if kind == "masking":
        return tf.where(hit, 0.0, images)
    if kind == "salt_pepper":
        salt = tf.random.stateless_uniform(shape, seed + 1) < 0.5
        return tf.where(hit, tf.cast(salt, images.dtype), images)
    raise ValueError(f"unknown noise kind {kind!r}; choose one of {', '.join(NOISE_KINDS)}")


def add_noise(images: np.ndarray, kind: str, amount: float, seed: int = 0) -> np.ndarray:
    """numpy in, numpy out; the same seed gives the same noise; values stay in [0, 1]."""
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"noise amount must be between 0 and 1, got {amount}")
    batch = as_images(images)
    return noise_tf(tf.constant(batch), kind, float(amount), tf.constant([seed, 0], tf.int64)).numpy()


@dataclasses.dataclass
class AEConfig(Config):
    """Defaults: what weights saved before a field existed were trained with (see `Config`); the shipped
    recipes are `SPECS` below."""

    kind: str = "vanilla"  # vanilla | multilayer | conv | sparse | denoising
    code_size: int = 32
    hidden: tuple[int, ...] = (128, 64)  # multilayer only
    l1: float = 1e-5  # sparse only: activity penalty on the code
    filters: tuple[int, ...] = (16, 32)  # conv: two; denoising: one per resolution (28, 14, 7)
    max_noise: float = 0.5  # denoising: train on every noise kind at amounts up to this
    noise_shares: tuple[float, ...] = (1.0, 1.0, 1.0)  # denoising: how often each of NOISE_KINDS is drawn (relative)
    loss: str = "binary_crossentropy"  # or "mean_squared_error", the error PSNR measures (a fine-tune's last step)

    def __post_init__(self):
        shares = self.noise_shares
        if len(shares) != len(NOISE_KINDS) or min(shares) < 0 or sum(shares) <= 0:
            raise ValueError(f"noise_shares: one weight ≥ 0 for each of {', '.join(NOISE_KINDS)}, not all 0; "
                             f"got {shares}")


def _dense_pair(config: AEConfig):
    hidden = config.hidden if config.kind == "multilayer" else ()
    regularizer = keras.regularizers.L1(config.l1) if config.kind == "sparse" else None
    images = keras.Input((28, 28))
    x = layers.Flatten()(images)
    for units in hidden:
        x = layers.Dense(units, activation="relu")(x)
    code = layers.Dense(config.code_size, activation="relu", activity_regularizer=regularizer, name="code")(x)
    encoder = keras.Model(images, code, name="encoder")

    code_in = keras.Input((config.code_size,))
    x = code_in
    for units in reversed(hidden):
        x = layers.Dense(units, activation="relu")(x)
    x = layers.Dense(784, activation="sigmoid")(x)
    decoder = keras.Model(code_in, layers.Reshape((28, 28))(x), name="decoder")
    return encoder, decoder


def _conv_pair(config: AEConfig):
    """Strided convolutions down to a dense `code_size` bottleneck (as small as the vanilla AE's), and back."""
    f1, f2 = config.filters
    images = keras.Input((28, 28))
    x = layers.Reshape((28, 28, 1))(images)
    x = layers.Conv2D(f1, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(f2, 3, strides=2, padding="same", activation="relu")(x)
    code = layers.Dense(config.code_size, activation="relu", name="code")(layers.Flatten()(x))
    encoder = keras.Model(images, code, name="encoder")

    code_in = keras.Input((config.code_size,))
    x = layers.Dense(7 * 7 * f2, activation="relu")(code_in)
    x = layers.Reshape((7, 7, f2))(x)
    x = layers.Conv2DTranspose(f2, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(f1, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    decoder = keras.Model(code_in, layers.Reshape((28, 28))(x), name="decoder")
    return encoder, decoder


def _denoiser_pair(config: AEConfig):
    """A fully convolutional U-Net: each filter count after the first halves the resolution (28 → 14 → 7), and
    the decoder gets the encoder's features of every resolution back through skips, so stroke detail survives
    while the noise is removed."""
    images = keras.Input((28, 28))
    x = layers.Conv2D(config.filters[0], 3, padding="same", activation="relu")(layers.Reshape((28, 28, 1))(images))
    skips = []
    for width in config.filters[1:]:
        skips.append(x)
        x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    code = layers.Conv2D(config.filters[-1], 3, padding="same", activation="relu", name="code")(x)
    encoder = keras.Model(images, [code, *reversed(skips)], name="encoder")

    code_in = keras.Input(code.shape[1:])
    skips_in = [keras.Input(skip.shape[1:]) for skip in reversed(skips)]
    x = code_in
    for skip in skips_in:
        x = layers.Conv2DTranspose(skip.shape[-1], 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Concatenate()([x, skip])
        x = layers.Conv2D(skip.shape[-1], 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    decoder = keras.Model([code_in, *skips_in], layers.Reshape((28, 28))(x), name="decoder")
    return encoder, decoder


BUILDERS = {"vanilla": _dense_pair, "multilayer": _dense_pair, "sparse": _dense_pair, "conv": _conv_pair,
            "denoising": _denoiser_pair}


class Autoencoder(ZooModel):
    config_class = AEConfig
    key_metric = "test_mse"
    metric_help = {"loss": "binary cross-entropy (or, if the config says so, squared error) between the output and "
                           "the clean digit, averaged over the pixels (cross-entropy is never 0: MNIST's grey edge "
                           "pixels are not pure black or white)"}

    def build(self) -> None:
        if self.config.kind not in BUILDERS:
            raise ValueError(f"unknown autoencoder kind {self.config.kind!r}; choose one of {', '.join(BUILDERS)}")
        self.encoder, self.decoder = BUILDERS[self.config.kind](self.config)
        images = keras.Input((28, 28))
        self.autoencoder = keras.Model(images, self.decoder(self.encoder(images)), name=f"ae_{self.config.kind}")
        self._run = self.inference_function(self.autoencoder)

    def parts(self) -> dict[str, keras.Model]:
        return {"model": self.autoencoder}

    def compile(self, learning_rate) -> keras.Model:
        self.autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=self.config.loss)
        return self.autoencoder

    def train_dataset(self, x, y, batch_size, seed):
        ds = tf.data.Dataset.from_tensor_slices(to_float(x)).shuffle(len(x), seed=seed)
        if self.config.kind == "denoising":
            seeds = tf.data.Dataset.random(seed=seed).batch(3)
            ds = tf.data.Dataset.zip(ds, seeds).map(self._corrupt, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda image: (image, image))
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def _corrupt(self, image, seeds):
        """Training pairs for the denoiser: a random noise kind at a random amount → the clean image."""
        shares = np.asarray(self.config.noise_shares, np.float64)
        bounds = tf.constant(np.cumsum(shares / shares.sum())[:-1], tf.float32)
        draw = tf.cast(seeds[2] % 1_000_000, tf.float32) / 1_000_000.0
        kind = tf.reduce_sum(tf.cast(draw >= bounds, tf.int32))
        amount = tf.random.stateless_uniform((), seeds[:2], 0.0, self.config.max_noise)
        branches = [lambda k=k: noise_tf(image, k, amount, seeds[:2] + 7) for k in NOISE_KINDS]
        return tf.switch_case(kind, branches), image

    # --- inference --------------------------------------------------------------------------------------

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        batch = as_images(images)
        with self.lock:
            return self._run(tf.convert_to_tensor(batch)).numpy()

    def encode(self, images: np.ndarray) -> np.ndarray:
        with self.lock:
            code = self.encoder(as_images(images), training=False)
        return (code[0] if isinstance(code, (list, tuple)) else code).numpy()

    def decode(self, codes: np.ndarray) -> np.ndarray:
        if self.config.kind == "denoising":
            raise ValueError("the denoising AE's decoder also needs the encoder's skip features; use reconstruct")
        with self.lock:
            return self.decoder(np.asarray(codes, np.float32), training=False).numpy()

    add_noise = staticmethod(add_noise)

    def preview_images(self, x_uint8):
        clean = to_float(x_uint8)
        inputs = add_noise(clean, "salt_pepper", 0.2, seed=0) if self.config.kind == "denoising" else clean
        return lambda: np.stack([inputs, self.reconstruct(inputs)])

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        images = to_float(x)
        (recon,) = predict_batches(lambda b: (self.reconstruct(b),), images)
        metrics = {"test_mse": float(np.mean((recon - images) ** 2)), "psnr": psnr(recon, images),
                   "test_examples": int(len(x))}
        if self.config.kind == "sparse":
            (codes,) = predict_batches(lambda b: (self.encode(b),), images)
            metrics["mean_code_activation"] = float(codes.mean())
            metrics["fraction_of_code_units_active"] = float(np.mean(codes > 1e-3))
        if self.config.kind == "denoising":
            for label, kind, amount in [("sp10", "salt_pepper", 0.1), ("gauss03", "gaussian", 0.3)]:
                noisy = add_noise(images, kind, amount, seed=2024)
                (clean,) = predict_batches(lambda b: (self.reconstruct(b),), noisy)
                metrics |= {f"psnr_{label}": psnr(clean, images), f"ssim_{label}": ssim(clean, images),
                            f"noisy_psnr_{label}": psnr(noisy, images), f"noisy_ssim_{label}": ssim(noisy, images)}
        return metrics


# --- the shipped recipes -------------------------------------------------------------------------------------

SPECS = [
    ModelSpec("ae_vanilla", Autoencoder, ("mnist",), "Vanilla autoencoder (784-32-784)",
              recipe=(Stage(15, batch_size=256, config={"kind": "vanilla"}),)),
    ModelSpec("ae_multilayer", Autoencoder, ("mnist",), "Multilayer autoencoder",
              recipe=(Stage(15, batch_size=256, config={"kind": "multilayer"}),)),
    ModelSpec("ae_conv", Autoencoder, ("mnist",), "Convolutional autoencoder",
              recipe=(Stage(10, config={"kind": "conv"}),)),
    ModelSpec("ae_sparse", Autoencoder, ("mnist",), "Sparse autoencoder (L1 code penalty)",
              recipe=(Stage(15, batch_size=256, config={"kind": "sparse", "code_size": 64, "l1": 1e-3}),)),
    ModelSpec("ae_denoising", Autoencoder, ("mnist",), "Denoising autoencoder (U-Net)", recipe=(
        Stage(20, lr_decay=0.88, config={"kind": "denoising", "filters": (32, 64, 128)}),
        Stage(6, 2e-4, 0.8),
        Stage(6, 2e-4, 0.8, config={"loss": "mean_squared_error"}),  # the error PSNR measures
        Stage(8, 2e-4, 0.85, seed=7, config={"noise_shares": (2, 1, 1)}),  # half the images Gaussian
    )),
]
