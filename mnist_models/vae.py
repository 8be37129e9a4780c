"""Variational autoencoder (Kingma & Welling), following keras.io's VAE example: a `keras.Model` subclass with
its own `train_step` and metric trackers. The default 2-D latent can be explored with two sliders."""

from __future__ import annotations

import dataclasses
from statistics import NormalDist

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from .base import Config, ModelSpec, Stage, ZooModel, as_images, predict_batches, to_float


@dataclasses.dataclass
class VAEConfig(Config):
    """Defaults: what weights saved before a field existed were trained with (see `Config`); the shipped
    recipes are `SPECS` below."""

    retired = ("dropout", "encoder_shift", "encoder_noise")

    latent_dim: int = 2
    filters: tuple[int, int] = (16, 32)
    dense_units: int = 256
    # > 0: q(z|x) is the encoder's guess moved by this many Adam steps on each image's own loss, the decoder fixed
    # (`refine_posterior`), in encoding, scoring and training (`VAENetwork`). New handwriting is where the encoder
    # loses most (docs/training-notes.md, "VAE"); `evaluate` then reports the loss with the encoder alone as well
    refine_steps: int = 0


@keras.saving.register_keras_serializable("mnist_models")
class Sampling(layers.Layer):
    """z = μ + σ·ε with ε ~ N(0, I): the reparameterisation trick."""

    SEED = 1337

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(self.SEED)

    def restart_noise(self) -> None:
        """Back to the first ε of its own seed: scoring draws the same noise every time, and the process-wide
        random state (which every session of a shared server uses) is left alone."""
        state = self.seed_generator.state
        state.assign(ops.cast(ops.convert_to_tensor([self.SEED, 0]), state.dtype))

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def build_encoder(config: VAEConfig) -> keras.Model:
    f1, f2 = config.filters
    images = keras.Input((28, 28))
    x = layers.Reshape((28, 28, 1))(images)
    x = layers.Conv2D(f1, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(f2, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Dense(config.dense_units, activation="relu")(layers.Flatten()(x))
    z_mean = layers.Dense(config.latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(config.latent_dim, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    return keras.Model(images, [z_mean, z_log_var, z], name="encoder")


def build_decoder(config: VAEConfig) -> keras.Model:
    f1, f2 = config.filters
    z = keras.Input((config.latent_dim,))
    x = layers.Dense(config.dense_units, activation="relu")(z)
    x = layers.Dense(7 * 7 * f2, activation="relu")(x)
    x = layers.Reshape((7, 7, f2))(x)
    x = layers.Conv2DTranspose(f2, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(f1, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(z, layers.Reshape((28, 28))(x), name="decoder")


def vae_losses(images, reconstruction, z_mean, z_log_var):
    """Per-image reconstruction (binary cross-entropy summed over 784 pixels) and KL(q(z|x) ‖ N(0, I))."""
    recon = ops.sum(keras.losses.binary_crossentropy(images[..., None], reconstruction[..., None]), axis=(1, 2))
    kl = -0.5 * ops.sum(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=1)
    return recon, kl


class VAENetwork(keras.Model):
    """With `refine_steps`, trained semi-amortised (Kim et al. 2018): the encoder learns from its own q(z|x), the
    decoder also from q refined by `refine_posterior`, the inference the model is used with."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, refine_steps: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.refine_steps = encoder, decoder, refine_steps
        self.sampler = next(layer for layer in encoder.layers if isinstance(layer, Sampling))
        self.total_tracker = keras.metrics.Mean(name="loss")
        self.recon_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.encoder_tracker = keras.metrics.Mean(name="encoder_loss") if refine_steps else None

    @property
    def metrics(self):
        return [t for t in (self.total_tracker, self.recon_tracker, self.kl_tracker, self.encoder_tracker) if t]

    def call(self, images, training=False):
        z_mean, z_log_var, z = self.encoder(images, training=training)
        return self.decoder(z, training=training), z_mean, z_log_var

    def _update(self, images, training, refined=None):
        z_mean, z_log_var, z = self.encoder(images, training=training)
        recon, kl = vae_losses(images, self.decoder(z, training=training), z_mean, z_log_var)
        loss = recon + kl
        if refined is not None:
            self.encoder_tracker.update_state(ops.mean(loss))
            z_mean, z_log_var = refined
            z = self.sampler([z_mean, z_log_var])
            recon, kl = vae_losses(images, self.decoder(z, training=training), z_mean, z_log_var)
            loss = loss + recon + kl
        self.total_tracker.update_state(ops.mean(recon + kl))
        self.recon_tracker.update_state(ops.mean(recon))
        self.kl_tracker.update_state(ops.mean(kl))
        # averaged over the global batch: under a distribution strategy the replicas' gradients are summed
        return tf.nn.compute_average_loss(loss)

    def train_step(self, images):
        refined = None
        if self.refine_steps:  # outside the tape: only the refined q's value is learnt from, not its making
            mean, log_var, _ = self.encoder(images, training=False)
            # fresh noise for every batch, and never the stream `encode` and `evaluate` refine with (seed 2)
            refined = refine_posterior(self.decoder, images, mean, log_var, self.refine_steps,
                                       seed=self.optimizer.iterations + 1000)
        with tf.GradientTape() as tape:
            total = self._update(images, training=True, refined=refined)
        grads = tape.gradient(total, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, images):
        self._update(images, training=False)
        return {m.name: m.result() for m in self.metrics}


class VAE(ZooModel):
    config_class = VAEConfig
    key_metric = "test_loss"
    metric_help = {
        "loss": "the negative ELBO per image: reconstruction + KL (lower is better)",
        "reconstruction": "binary cross-entropy of the redrawn digit, summed over its 784 pixels",
        "kl": "KL divergence of the encoder's Gaussian from N(0, I): what a smooth, fillable latent space costs",
        "encoder_loss": "the loss with the encoder's own guess of q(z|x), before refining (the other curves use "
                        "the refined q)",
    }

    def build(self) -> None:
        self.encoder, self.decoder = build_encoder(self.config), build_decoder(self.config)
        self.network = VAENetwork(self.encoder, self.decoder, self.config.refine_steps, name="vae")
        self.network(keras.ops.zeros((1, 28, 28)))  # create the weights so they can be loaded
        self.sampler = self.network.sampler
        self._posterior = self.inference_function(self.encoder, call=self._infer_posterior)
        self._decode = self.inference_function(self.decoder)

    def parts(self) -> dict[str, keras.Model]:
        return {"model": self.network}

    def compile(self, learning_rate) -> keras.Model:
        self.network.compile(optimizer=keras.optimizers.Adam(learning_rate))
        return self.network

    def train_dataset(self, x, y, batch_size, seed):
        ds = tf.data.Dataset.from_tensor_slices(to_float(x)).shuffle(len(x), seed=seed)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    # --- inference --------------------------------------------------------------------------------------

    def _infer_posterior(self, images):
        """q(z|x)'s mean and log-variance, and a sample z from it."""
        mean, log_var, z = self.encoder(images, training=False)
        if self.config.refine_steps:
            mean, log_var = refine_posterior(self.decoder, images, mean, log_var, self.config.refine_steps)
            z = self.sampler([mean, log_var])
        return mean, log_var, z

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Latent means μ(x), (N, latent_dim), refined when the config asks for it."""
        with self.lock:
            return self._posterior(tf.convert_to_tensor(as_images(images)))[0].numpy()

    def decode(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float32).reshape(-1, self.config.latent_dim)
        with self.lock:
            return self._decode(tf.convert_to_tensor(z)).numpy()

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(images))

    def preview_images(self, x_uint8):
        if self.config.latent_dim == 2:
            return lambda: self.latent_grid(6)[0]
        z = np.random.default_rng(0).normal(size=(24, self.config.latent_dim)).astype(np.float32)
        return lambda: self.decode(z).reshape(3, 8, 28, 28)

    def latent_grid(self, n: int = 15, span: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Decode an n×n grid of latent quantiles (2-D latents): images (n, n, 28, 28) and the grid values."""
        if self.config.latent_dim != 2:
            raise ValueError("the manifold grid needs a 2-D latent space")
        edge = (1 - span) / 2
        values = np.array([NormalDist().inv_cdf(p) for p in np.linspace(edge, 1 - edge, n)], np.float32)
        zz = np.array([[x, y] for y in values[::-1] for x in values], np.float32)
        return self.decode(zz).reshape(n, n, 28, 28), values

    def encode_dataset(self, x: np.ndarray, y: np.ndarray, limit: int | None = None):
        """The encoder's latent means (not refined: thousands of points in seconds) of (a prefix of) a dataset with
        its labels, for the scatter plot."""
        x, y = (x[:limit], y[:limit]) if limit else (x, y)

        def means(batch):
            with self.lock:
                return (self.encoder(batch, training=False)[0].numpy(),)

        (z,) = predict_batches(means, to_float(x))
        return z, np.asarray(y)

    def interpolate(self, a: np.ndarray, b: np.ndarray, steps: int = 8) -> np.ndarray:
        za, zb = self.encode(a)[0], self.encode(b)[0]
        return self.decode(np.stack([za + t * (zb - za) for t in np.linspace(0, 1, steps)]))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """keras.io's convention: per-image BCE summed over 784 pixels + KL, one posterior sample per image; q(z|x)
        as `encode` infers it, and (`test_loss_encoder`) from the encoder alone when that differs."""
        images = to_float(x)

        def losses(posterior):
            def batch_losses(batch):
                with self.lock:
                    z_mean, z_log_var, z = posterior(tf.convert_to_tensor(batch))
                    reconstruction = self.decoder(z, training=False)
                    return tuple(t.numpy() for t in vae_losses(batch, reconstruction, z_mean, z_log_var))

            with self.lock:
                self.sampler.restart_noise()
            return predict_batches(batch_losses, images)

        recon, kl = losses(self._posterior)
        scores = {"test_loss": float(np.mean(recon + kl)), "test_recon": float(np.mean(recon)),
                  "test_kl": float(np.mean(kl)), "test_examples": int(len(x))}
        if self.config.refine_steps:
            recon, kl = losses(lambda batch: self.encoder(batch, training=False))
            scores["test_loss_encoder"] = float(np.mean(recon + kl))
        return scores


def posterior_losses(decoder: keras.Model, images, mean, log_var, noise):
    """Per-image loss (BCE + KL) averaged over the posterior samples z = μ + σ·`noise`, noise (k, N, latent_dim)."""
    k, latent_dim = noise.shape[0], noise.shape[-1]
    z = tf.reshape(mean[None] + tf.exp(0.5 * log_var)[None] * noise, (-1, latent_dim))
    recon, kl = vae_losses(tf.tile(images, [k, 1, 1]), decoder(z, training=False), tf.tile(mean, [k, 1]),
                           tf.tile(log_var, [k, 1]))
    return tf.reduce_mean(tf.reshape(recon + kl, (k, -1)), axis=0)


def refine_posterior(decoder: keras.Model, images, mean, log_var, steps: int, learning_rate: float = 0.02,
                     samples: int = 1, seed: int = 2):
    """q(z|x) = N(mean, exp(log_var)) moved by `steps` Adam steps on each image's own loss, the decoder fixed
    (stochastic variational inference started from the encoder's guess: semi-amortised inference, Kim et al.
    2018). Deterministic: step i draws its noise from (seed, i); training passes its step number as `seed`."""
    beta1, beta2, epsilon = 0.9, 0.999, 1e-7
    seed = tf.cast(seed, tf.int64)

    def adam_step(i, params, m, v):
        shape = tf.concat([[samples], tf.shape(params[0])], 0)
        noise = tf.random.stateless_normal(shape, seed=tf.stack([seed, tf.cast(i, tf.int64)]))
        with tf.GradientTape() as tape:
            tape.watch(params)
            total = tf.reduce_sum(posterior_losses(decoder, images, *params, noise))
        grads = tape.gradient(total, params)
        m = [beta1 * a + (1 - beta1) * g for a, g in zip(m, grads, strict=True)]
        v = [beta2 * b + (1 - beta2) * tf.square(g) for b, g in zip(v, grads, strict=True)]
        t = tf.cast(i + 1, tf.float32)
        params = [p - learning_rate * (a / (1 - beta1 ** t)) / (tf.sqrt(b / (1 - beta2 ** t)) + epsilon)
                  for p, a, b in zip(params, m, v, strict=True)]
        return i + 1, params, m, v

    params = [tf.convert_to_tensor(mean), tf.convert_to_tensor(log_var)]
    zeros = [tf.zeros_like(p) for p in params]
    # a loop in the graph, not unrolled: tracing (the page's "Loading model…") stays short
    _, params, _, _ = tf.while_loop(lambda i, *_: i < steps, adam_step, [tf.constant(0), params, zeros, zeros])
    return params


# --- the shipped recipes -------------------------------------------------------------------------------------

SPECS = [ModelSpec(
    "vae", VAE, ("mnist", "fashion"), "VAE, 2-D latent",
    recipe=(Stage(30, lr_decay=0.97), Stage(20, 4e-4, 0.95),
            Stage(4, 2e-4, 0.8, config={"refine_steps": 30})),  # semi-amortised: q refined by 30 steps
    recipes={"fashion": (Stage(8, lr_decay=0.97),)})]
