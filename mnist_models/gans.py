"""GANs: MLP GAN, DCGAN, ACGAN and AE-AC-GAN, one `keras.Model` subclass with a `train_step` for all four.

The kinds differ only in their sub-networks and a few switches (following keras.io's DCGAN and conditional-GAN
examples, and the E/F/MNIST AE-AC-GAN recipe):
- `mlp`: dense generator and discriminator.
- `dcgan`: transposed convolutions up from 7×7; a strided-conv discriminator with LeakyReLU and Dropout. The zoo's
  DCGAN and ACGAN have BatchNorm in their generators (`batch_norm`, as in the DCGAN paper), which learned faster
  here; the MLP GAN and the AE-AC-GAN have none, as the AE-AC-GAN recipe says.
- `acgan`: the same conv nets, the class one-hot joined to the noise, and an auxiliary class head on the
  discriminator; both players also minimise the class cross-entropy. Unlike the ACGAN paper, the head learns
  from real images only: trained on fakes too, it learned the generator's own "handwriting" for each class and
  certified digits that a classifier of real digits calls ambiguous (docs/training-notes.md). The zoo's ACGAN
  adds what the class-conditional GAN literature does: per-class BatchNorm in the generator (`cond_batch_norm`),
  a projection discriminator (`projection`, Miyato & Koyama 2018) and the hinge loss (`adversarial_loss`), each
  measured on its own (docs/training-notes.md).
- `aeacgan`: ACGAN plus an encoder that maps an image to the generator's noise input, so the generator doubles
  as a decoder (MAE reconstruction); uniform [0, 1] noise, labels smoothed to 0.9 / 0.1, Gaussian noise
  (stddev 0.05) on the discriminator's input.
Inside, images are tanh outputs in [-1, 1]; every public method takes and returns float32 [0, 1].
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from . import metrics
from .base import Config, ModelSpec, Stage, ZooModel, as_images, batch_norm_from_one_batch, predict_batches, to_float
from .data import load_dataset

KINDS = ("mlp", "dcgan", "acgan", "aeacgan")
SAMPLE_ROWS, SAMPLE_COLS = 10, 10  # the fixed-noise grid saved after every epoch


@dataclasses.dataclass
class GANConfig(Config):
    """Defaults: what weights saved before a field existed were trained with (see `Config`); the shipped
    recipes are `SPECS` below."""

    retired = ("fake_class_loss", "mode_seeking", "disc_lr_ratio")

    kind: str = "dcgan"
    latent_dim: int = 100
    width: int = 24  # channels of the conv nets' first level (doubled at the next); units/8 of the MLP's
    dropout: float = 0.3
    noise: str = "normal"  # "normal": z ~ N(0, I); "uniform": z ~ U[0, 1] (the AE-AC-GAN recipe)
    real_label: float = 0.9  # one-sided label smoothing by default
    fake_label: float = 0.0
    input_noise: float = 0.0  # stddev of Gaussian noise added to the discriminator's input (training only)
    reconstruction_weight: float = 10.0  # aeacgan: weight of the MAE reconstruction term in the G/E loss
    # > 0: the shipped generator (and encoder) is the exponential moving average of its weights over training
    # steps (Yazıcı et al. 2019), which smooths out the step-to-step wobble of GAN training; 0: the last step's
    ema_momentum: float = 0.0
    # > 0 (aeacgan): the encoder's codes are pulled towards the noise the generator is sampled with, by this weight
    # times the 1-D Wasserstein distance (squared) between each code dimension's batch values and as many noise
    # draws. Left alone, the codes crowd into a corner of the noise cube: reconstruction then shapes the generator
    # only there, and random noise, elsewhere, gets one safe prototype per class
    prior_matching: float = 0.0
    batch_norm: bool = False  # BatchNorm in the conv generator, as in the DCGAN paper (the AE-AC-GAN recipe has none)
    # > 0: a hidden dense layer of this many units on the discriminator's conv features. Without it the real/fake
    # logit is a linear sum of local patch scores, which sees strokes but hardly whether they make a digit
    disc_hidden: int = 0
    # > 0 (unconditional kinds): an InfoGAN categorical code (Chen et al. 2016) of this many values joins the
    # noise, and a discriminator head learns to tell a fake's code back; both players minimise that head's
    # cross-entropy. The generator's input space then falls apart into distinct kinds of image (on MNIST, mostly
    # the digits, found without labels) instead of one connected space whose in-between points draw digits
    # that are none of the ten
    categories: int = 0
    # Class-conditional GANs as in the literature (Miyato & Koyama 2018, BigGAN), each a switch of its own:
    # conditional BatchNorm: with batch_norm, every generator BatchNorm gets a scale and shift per class, so the
    # class steers every layer and not only the input
    cond_batch_norm: bool = False
    # projection discriminator: the real/fake logit gains the inner product of a learned class embedding with the
    # discriminator's features, so it judges "is this a real 7" rather than "is this real" beside a class head
    projection: bool = False
    # "bce": the standard (non-saturating) GAN loss; "hinge": the hinge loss of SAGAN/BigGAN, whose discriminator
    # stops pushing on images it already judges with a margin (label smoothing then does not apply)
    adversarial_loss: str = "bce"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"GAN kind must be one of {KINDS}, got {self.kind!r}")
        if self.noise not in ("normal", "uniform"):
            raise ValueError(f"noise must be 'normal' or 'uniform', got {self.noise!r}")
        if self.prior_matching and self.kind != "aeacgan":
            raise ValueError(f"prior_matching pulls an encoder's codes to the noise: only aeacgan has an encoder, "
                             f"not {self.kind}")
        if self.adversarial_loss not in ("bce", "hinge"):
            raise ValueError(f"adversarial_loss must be 'bce' or 'hinge', got {self.adversarial_loss!r}")
        if (self.cond_batch_norm and not (self.batch_norm and self.conditional)) or (
                self.projection and not self.conditional):
            raise ValueError("cond_batch_norm needs batch_norm and a kind with classes; projection a kind with "
                             f"classes (acgan, aeacgan), got {self.kind}")
        if self.categories and (self.conditional or self.categories < 2):
            raise ValueError("categories (2 or more) is for the unconditional kinds; acgan and aeacgan take the "
                             f"class itself, got {self.categories} for {self.kind}")

    @property
    def conditional(self) -> bool:
        return self.kind in ("acgan", "aeacgan")

    @property
    def codes(self) -> int:
        """How many values the generator's discrete input takes: the 10 classes, the categorical code's, or 0."""
        return 10 if self.conditional else self.categories


@keras.saving.register_keras_serializable("mnist_models")
class ConditionalBatchNorm(layers.Layer):
    """BatchNorm whose scale and shift are looked up per class: [features, class] → normalised features."""

    def __init__(self, classes: int, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.norm = layers.BatchNormalization(center=False, scale=False)

    def build(self, input_shape):
        channels = input_shape[0][-1]
        self.norm.build(input_shape[0])
        self.gamma = self.add_weight(shape=(self.classes, channels), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(self.classes, channels), initializer="zeros", name="beta")

    def call(self, inputs, training=None):
        features, classes = inputs
        normalised = self.norm(features, training=training)
        shape = [-1] + [1] * (len(features.shape) - 2) + [features.shape[-1]]
        gamma = ops.reshape(ops.take(self.gamma, classes, axis=0), shape)
        beta = ops.reshape(ops.take(self.beta, classes, axis=0), shape)
        return normalised * gamma + beta

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


def _generator_inputs(config: GANConfig):
    z = keras.Input((config.latent_dim,), name="z")
    if not config.codes:
        return [z], z, None
    label = keras.Input((), dtype="int32", name="label")
    one_hot = layers.Lambda(lambda t: ops.one_hot(t, config.codes), output_shape=(config.codes,))(label)
    return [z, label], layers.Concatenate()([z, one_hot]), label


def build_generator(config: GANConfig) -> keras.Model:
    """(z[, label]) → image (28, 28) in [-1, 1]."""
    inputs, x, label = _generator_inputs(config)
    if config.kind == "mlp":
        for units in (config.width * 8, config.width * 16, config.width * 32):
            x = layers.LeakyReLU(0.2)(layers.Dense(units)(x))
        x = layers.Dense(784, activation="tanh")(x)
    else:
        w = config.width

        def activate(h):
            if config.cond_batch_norm:
                h = ConditionalBatchNorm(config.codes)([h, label])
            elif config.batch_norm:
                h = layers.BatchNormalization()(h)
            return layers.LeakyReLU(0.2)(h)
        x = layers.Reshape((7, 7, 4 * w))(activate(layers.Dense(7 * 7 * 4 * w)(x)))
        x = activate(layers.Conv2DTranspose(2 * w, 4, strides=2, padding="same")(x))
        x = activate(layers.Conv2DTranspose(w, 4, strides=2, padding="same")(x))
        x = layers.Conv2D(1, 3, padding="same", activation="tanh")(x)
    return keras.Model(inputs, layers.Reshape((28, 28))(x), name="generator")


def _image_features(config: GANConfig, name: str, dropout: bool = True):
    """Shared trunk of the discriminator and the encoder: image (28, 28) → flat features."""
    image = keras.Input((28, 28), name="image")
    x = layers.Reshape((28, 28, 1))(image)
    if config.input_noise and name == "discriminator":
        x = layers.GaussianNoise(config.input_noise)(x)
    if config.kind == "mlp":
        x = layers.Flatten()(x)
        for units in (config.width * 16, config.width * 8):
            x = layers.LeakyReLU(0.2)(layers.Dense(units)(x))
            x = layers.Dropout(config.dropout)(x) if dropout else x
        return image, x
    for filters in (2 * config.width, 4 * config.width):
        x = layers.LeakyReLU(0.2)(layers.Conv2D(filters, 4, strides=2, padding="same")(x))
        x = layers.Dropout(config.dropout)(x) if dropout else x
    return image, layers.Flatten()(x)


def build_discriminator(config: GANConfig) -> keras.Model:
    """image (and, with projection, the class it is meant to show) → real/fake logit (and 10 class logits for the
    conditional kinds, or the categorical code's)."""
    image, features = _image_features(config, "discriminator")
    if config.disc_hidden:
        features = layers.Dropout(config.dropout)(layers.LeakyReLU(0.2)(layers.Dense(config.disc_hidden)(features)))
    real_fake = layers.Dense(1, name="real_fake")(features)
    inputs = image
    if config.projection:
        label = keras.Input((), dtype="int32", name="label")
        embedded = layers.Embedding(config.codes, features.shape[-1], name="class_embedding")(label)
        projected = layers.Lambda(lambda t: ops.sum(t[0] * t[1], axis=-1, keepdims=True),
                                  output_shape=(1,))([embedded, features])
        real_fake, inputs = layers.Add()([real_fake, projected]), [image, label]
    outputs = [real_fake]
    if config.codes:
        outputs.append(layers.Dense(config.codes, name="class" if config.conditional else "code")(features))
    return keras.Model(inputs, outputs, name="discriminator")


def build_encoder(config: GANConfig) -> keras.Model:
    """image → the generator's noise input (sigmoid: uniform noise lives in [0, 1])."""
    image, features = _image_features(config, "encoder", dropout=False)
    activation = "sigmoid" if config.noise == "uniform" else None
    return keras.Model(image, layers.Dense(config.latent_dim, activation=activation)(features), name="encoder")


def sample_noise(config: GANConfig, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if config.noise == "uniform":
        return rng.uniform(size=(n, config.latent_dim)).astype(np.float32)
    return rng.normal(size=(n, config.latent_dim)).astype(np.float32)


def prior_gap(codes, noise):
    """Mean squared gap between the sorted batch values of each code dimension and those of noise draws: the
    squared 1-D Wasserstein distance per dimension, 0 when each dimension's values spread as the noise's do."""
    return ops.mean(ops.square(ops.sort(ops.transpose(codes)) - ops.sort(ops.transpose(noise))))


class AdversarialNetwork(keras.Model):
    """Trains generator and discriminator (and encoder) with two Adam optimizers, one step each per batch."""

    def __init__(self, config: GANConfig, generator, discriminator, encoder=None, **kwargs):
        super().__init__(**kwargs)
        self.config, self.generator, self.discriminator, self.encoder = config, generator, discriminator, encoder
        self.seed_generator = keras.random.SeedGenerator(7)
        names = ["d_loss", "g_loss", "d_real", "d_fake"]
        if config.codes:  # how often the discriminator's head names the asked class (or tells the code back)
            names.append("class_accuracy" if config.conditional else "code_accuracy")
        if encoder is not None:
            names.append("reconstruction_mae")
        if config.prior_matching and encoder is not None:
            names.append("prior_gap")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, learning_rate):
        super().compile()
        self.d_optimizer = keras.optimizers.Adam(learning_rate, beta_1=0.5)
        self.g_optimizer = keras.optimizers.Adam(learning_rate, beta_1=0.5, use_ema=self.config.ema_momentum > 0,
                                                 ema_momentum=self.config.ema_momentum)
        # built now, so that a backup (BackupAndRestore) can be restored into them before the first step
        self.d_optimizer.build(self.discriminator.trainable_weights)
        self.g_optimizer.build(self._generator_side_weights())

    def _generator_side_weights(self):
        return self.generator.trainable_weights + (self.encoder.trainable_weights if self.encoder else [])

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def use_averaged_generator(self, encoded=None):
        """Replace the generator's (and encoder's) weights by their moving average, if training kept one."""
        if self.g_optimizer.use_ema:
            self.g_optimizer.finalize_variable_values(self._generator_side_weights())
            self.recalibrate_batch_norm(encoded)

    def recalibrate_batch_norm(self, encoded=None, samples: int = 4096):
        """Set the generator's BatchNorm statistics to those of one large batch of its own activations: the moving
        statistics were gathered with the live weights, not with the averaged ones that replace them.

        `encoded(n)` (AE-AC-GAN) gives the codes and classes of n real digits; they make half the batch, as the
        reconstructions do in the generator's training step."""
        norms = [layer.norm if isinstance(layer, ConditionalBatchNorm) else layer for layer in self.generator.layers
                 if isinstance(layer, (layers.BatchNormalization, ConditionalBatchNorm))]
        if not norms:
            return
        inputs = self._generator_inputs(samples)[0]
        if encoded is not None:
            codes, classes = encoded(samples // 2)
            inputs = [ops.concatenate([inputs[0][:samples - len(codes)], codes], axis=0),
                      ops.concatenate([inputs[1][:samples - len(codes)], classes], axis=0)]
        batch_norm_from_one_batch(norms, lambda: self.generator(inputs, training=True))

    def _noise(self, batch):
        shape = (batch, self.config.latent_dim)
        if self.config.noise == "uniform":
            return keras.random.uniform(shape, seed=self.seed_generator)
        return keras.random.normal(shape, seed=self.seed_generator)

    def _generator_inputs(self, batch):
        """Random generator inputs for a batch, and the classes (or codes) asked for; None without either."""
        if not self.config.codes:
            return self._noise(batch), None
        classes = keras.random.randint((batch,), 0, self.config.codes, seed=self.seed_generator)
        return [self._noise(batch), classes], classes

    def _discriminate(self, images, classes=None):
        inputs = [images, classes] if self.config.projection else images
        outputs = self.discriminator(inputs, training=True)
        return outputs if self.config.codes else (outputs, None)

    def _discriminator_loss(self, real_logit, fake_logit):
        cfg = self.config
        if cfg.adversarial_loss == "hinge":
            return ops.mean(ops.relu(1.0 - real_logit)) + ops.mean(ops.relu(1.0 + fake_logit))
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        return (bce(ops.full_like(real_logit, cfg.real_label), real_logit)
                + bce(ops.full_like(fake_logit, cfg.fake_label), fake_logit))

    def _generator_loss(self, fake_logit):
        if self.config.adversarial_loss == "hinge":
            return -ops.mean(fake_logit)
        return keras.losses.BinaryCrossentropy(from_logits=True)(ops.ones_like(fake_logit), fake_logit)

    def train_step(self, data):
        images, labels = data  # images in [-1, 1]
        batch = ops.shape(images)[0]
        cfg = self.config
        cce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        gen_inputs, fake_classes = self._generator_inputs(batch)

        with tf.GradientTape() as tape:
            fakes = self.generator(gen_inputs, training=True)
            real_logit, real_class = self._discriminate(images, labels)
            fake_logit, fake_class = self._discriminate(fakes, fake_classes)
            d_loss = self._discriminator_loss(real_logit, fake_logit)
            if cfg.conditional:
                d_loss += cce(labels, real_class)  # real images only (see the module's docstring)
            elif cfg.categories:
                d_loss += cce(fake_classes, fake_class)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights, strict=True))

        g_weights = self._generator_side_weights()
        with tf.GradientTape() as tape:
            if self.encoder is not None:
                # fakes and reconstructions in one pass: BatchNorm then normalises both with the same statistics,
                # as at inference. In two passes, each with its own batch's, the generator learnt to redraw
                # through statistics of encoded digits only, which inference (one image, moving statistics)
                # does not have: the redrawings' error doubled.
                codes = self.encoder(images, training=True)
                both = self.generator([ops.concatenate([gen_inputs[0], codes], axis=0),
                                       ops.concatenate([fake_classes, labels], axis=0)], training=True)
                fakes, reconstruction = both[:batch], both[batch:]
            else:
                fakes = self.generator(gen_inputs, training=True)
            fake_logit, fake_class = self._discriminate(fakes, fake_classes)
            g_loss = self._generator_loss(fake_logit)
            if cfg.codes:
                g_loss += cce(fake_classes, fake_class)
            if self.encoder is not None:
                per_image = ops.mean(ops.abs(reconstruction - images), axis=(1, 2))
                # averaged over the global batch, so that replicas' summed gradients are the mean's
                g_loss += cfg.reconstruction_weight * tf.nn.compute_average_loss(per_image)
                if cfg.prior_matching:
                    gap = prior_gap(codes, self._noise(batch))
                    g_loss += cfg.prior_matching * gap
                    self.trackers["prior_gap"].update_state(gap)
                self.trackers["reconstruction_mae"].update_state(ops.mean(per_image) / 2)  # [0, 1] pixel units
        grads = tape.gradient(g_loss, g_weights)
        self.g_optimizer.apply_gradients(zip(grads, g_weights, strict=True))

        self.trackers["d_loss"].update_state(d_loss)
        self.trackers["g_loss"].update_state(g_loss)
        self.trackers["d_real"].update_state(ops.mean(ops.sigmoid(real_logit)))
        self.trackers["d_fake"].update_state(ops.mean(ops.sigmoid(fake_logit)))
        if cfg.codes:
            hits = ops.cast(ops.equal(ops.argmax(fake_class, axis=-1), fake_classes), "float32")
            self.trackers["class_accuracy" if cfg.conditional else "code_accuracy"].update_state(ops.mean(hits))
        return {name: tracker.result() for name, tracker in self.trackers.items()}


class EvolutionRecorder(keras.callbacks.Callback):
    """After every epoch, draws the fixed-noise grid (what the originals saved as per-epoch PNGs / GIFs)."""

    def __init__(self, gan: GAN):
        super().__init__()
        self.gan = gan

    def on_epoch_end(self, epoch, logs=None):
        grid = self.gan.sample_grid()
        self.gan.evolution.append(np.round(grid * 255).astype(np.uint8))


class GAN(ZooModel):
    config_class = GANConfig
    key_metric = "fid"
    higher_is_better = False
    metric_help = {
        "d_loss": "discriminator: how badly it tells real from generated images (about 1.4 = 2·ln 2 when it "
                  "cannot tell them apart; 2 with the hinge loss)",
        "g_loss": "generator: how badly it fools the discriminator; it falls while the generator is winning",
        "d_real": "the discriminator's mean probability that a real image is real",
        "d_fake": "its mean probability that a generated image is real (both near 0.5: a standoff)",
        "class_accuracy": "how often the discriminator's class head reads the class the generator was asked for",
        "code_accuracy": "how often the discriminator tells back the categorical code a sample was drawn with",
        "reconstruction_mae": "encoder → generator round trip on real images: mean absolute error per pixel",
        "prior_gap": "how far the encoder's codes are spread unlike the noise the generator is sampled with "
                     "(squared gap between sorted values, per code dimension; 0: spread alike)",
    }

    def build(self) -> None:
        cfg = self.config
        self.generator, self.discriminator = build_generator(cfg), build_discriminator(cfg)
        self.encoder = build_encoder(cfg) if cfg.kind == "aeacgan" else None
        self.network = AdversarialNetwork(cfg, self.generator, self.discriminator, self.encoder, name=cfg.kind)
        self.network.built = True  # its sub-networks are built functional models
        self._generate = self.inference_function(self.generator)
        self._discriminate = self.inference_function(self.discriminator)
        if self.encoder is not None:
            self._encode = self.inference_function(self.encoder)
        self.evolution: list[np.ndarray] = []  # uint8 fixed-noise grids, one per trained epoch
        self.code_prior: np.ndarray | None = None  # the categorical code's rates in real data (None: uniform)
        self.loss_history: dict[str, list[float]] = {}

    def parts(self) -> dict[str, keras.Model]:
        parts = {"generator": self.generator, "discriminator": self.discriminator}
        if self.encoder is not None:
            parts["encoder"] = self.encoder
        return parts

    def compile(self, learning_rate) -> keras.Model:
        self.network.compile(learning_rate)
        return self.network

    def train_dataset(self, x, y, batch_size, seed):
        images = to_float(x) * 2.0 - 1.0
        ds = tf.data.Dataset.from_tensor_slices((images, y.astype(np.int32))).shuffle(len(x), seed=seed)
        return ds.batch(batch_size, drop_remainder=len(x) >= batch_size).prefetch(tf.data.AUTOTUNE)

    def training_callbacks(self, x_train: np.ndarray) -> list[keras.callbacks.Callback]:
        callbacks = [EvolutionRecorder(self), BatchLossRecorder(self), AveragedGenerator(self, x_train)]
        return callbacks + ([CodePrior(self, x_train)] if self.config.categories else [])

    def artifacts(self) -> dict[str, np.ndarray]:
        """Saved beside the weights: the per-epoch sample grids and the per-batch loss curves."""
        out = {f"loss_{k}": np.asarray(v, np.float32) for k, v in self.loss_history.items()}
        if self.evolution:
            out["evolution"] = np.stack(self.evolution)
        if self.code_prior is not None:
            out["code_prior"] = self.code_prior.astype(np.float32)
        return out

    def load_artifacts(self, arrays: dict[str, np.ndarray]) -> None:
        self.evolution = list(arrays.get("evolution", []))
        prior = arrays.get("code_prior")
        self.code_prior = None if prior is None else np.asarray(prior, np.float64) / np.sum(prior)
        self.loss_history = {k[5:]: v.tolist() for k, v in arrays.items() if k.startswith("loss_")}

    def forget_history(self) -> None:
        self.evolution, self.loss_history = [], {}

    def preview_images(self, x_uint8):
        return lambda: self.sample_grid()[:4]

    # --- inference --------------------------------------------------------------------------------------

    def _run_generator(self, z: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        inputs = tf.convert_to_tensor(z, tf.float32)
        if self.config.codes:  # every caller passes the classes (or codes) it wants
            inputs = [inputs, tf.convert_to_tensor(np.asarray(classes, np.int32))]
        with self.lock:
            images = self._generate(inputs).numpy()
        return np.clip((images + 1.0) / 2.0, 0.0, 1.0)

    def generate(self, n: int, seed: int = 0) -> np.ndarray:
        """n images (n, 28, 28) in [0, 1]; conditional models draw their classes uniformly from the seed, models
        with a categorical code their codes at the rates `fit_code_prior` measured."""
        if not 1 <= n <= 10000:
            raise ValueError(f"n must be 1–10000, got {n}")
        return self._run_generator(sample_noise(self.config, n, seed), self._random_codes(n, seed))

    def _random_codes(self, n: int, seed: int) -> np.ndarray | None:
        """The classes (or codes) `generate` draws for a seed: uniformly, or codes at their rates in real data once
        `fit_code_prior` measured them; None for models without either."""
        codes, rng = self.config.codes, np.random.default_rng(seed + 1)
        if not codes:
            return None
        return rng.integers(0, codes, n) if self.code_prior is None else rng.choice(codes, n, p=self.code_prior)

    def fit_code_prior(self, x_uint8: np.ndarray) -> None:
        """Measure how often each value of the categorical code occurs in real data, as the discriminator's code
        head reads real images (no labels needed). InfoGAN may give two code values to one digit (often the 1s)
        and none to a rarer one; drawn uniformly, such codes would over-draw the first digit."""
        (probs,) = predict_batches(lambda b: (self._head_probabilities(b),), to_float(x_uint8))
        self.code_prior = probs.mean(axis=0, dtype=np.float64)
        self.code_prior /= self.code_prior.sum()

    def generate_class(self, classes, seed: int = 0) -> np.ndarray:
        """One image per requested class (0–9), each with its own noise from `seed`."""
        self._require_conditional()
        classes = np.asarray(classes, np.int64).reshape(-1)
        if classes.size == 0 or classes.min() < 0 or classes.max() > 9:
            raise ValueError("classes must be integers 0–9")
        return self._run_generator(sample_noise(self.config, len(classes), seed), classes)

    def class_sweep(self, seed: int = 0) -> np.ndarray:
        """The same noise vector drawn as each class (or each value of the categorical code, which the model
        gave its own meaning): style stays, class changes."""
        if not self.config.codes:
            self._require_conditional()
        z = np.repeat(sample_noise(self.config, 1, seed), self.config.codes, axis=0)
        return self._run_generator(z, np.arange(self.config.codes))

    def interpolate(self, a: int, b: int, steps: int = 8, label: int | None = None) -> np.ndarray:
        """Images along the straight line between the noise vectors of seeds `a` and `b` (same class)."""
        za, zb = sample_noise(self.config, 1, a)[0], sample_noise(self.config, 1, b)[0]
        z = np.stack([za + t * (zb - za) for t in np.linspace(0.0, 1.0, steps)]).astype(np.float32)
        if not self.config.codes:
            return self._run_generator(z)
        label = int(self._random_codes(1, a)[0]) if label is None else int(label)
        return self._run_generator(z, np.full(steps, label))

    def render_number(self, text: str, seed: int = 0) -> np.ndarray:
        """A typed number written as one row of generated handwriting: (28, 28·len) in [0, 1]."""
        self._require_conditional()
        digits = str(text).strip()
        if not digits or not digits.isdigit() or not digits.isascii() or len(digits) > 40:
            raise ValueError("type 1–40 digits (0–9), e.g. 2026")
        images = self.generate_class([int(c) for c in digits], seed)
        return np.concatenate(list(images), axis=1)

    def sample_grid(self) -> np.ndarray:
        """The fixed-noise grid (10, 10, 28, 28): for models with classes (or codes), row r is noise r, column c
        class (or code) c."""
        if self.config.codes:
            z = np.repeat(sample_noise(self.config, SAMPLE_ROWS, 2024), SAMPLE_COLS, axis=0)
            images = self._run_generator(z, np.tile(np.arange(SAMPLE_COLS) % self.config.codes, SAMPLE_ROWS))
        else:
            images = self._run_generator(sample_noise(self.config, SAMPLE_ROWS * SAMPLE_COLS, 2024))
        return images.reshape(SAMPLE_ROWS, SAMPLE_COLS, 28, 28)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """The discriminator's class head (conditional models): probabilities (N, 10)."""
        self._require_conditional()
        return self._head_probabilities(images)

    def _head_probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax of the discriminator's class (or code) head."""
        inputs = tf.convert_to_tensor(as_images(images) * 2.0 - 1.0)
        if self.config.projection:  # the class head does not depend on the class given to the projection
            inputs = [inputs, tf.zeros((inputs.shape[0],), tf.int32)]
        with self.lock:
            _, logits = self._discriminate(inputs)
        return tf.nn.softmax(logits).numpy()

    def encoded_digits(self, x_uint8: np.ndarray):
        """AE-AC-GAN: a function giving the codes and discriminator's classes of n digits drawn from `x_uint8`."""
        def encoded(n: int):
            images = to_float(x_uint8[np.random.default_rng(0).choice(len(x_uint8), n, replace=n > len(x_uint8))])
            classes = self._head_probabilities(images).argmax(axis=1).astype(np.int32)
            with self.lock:
                codes = self._encode(tf.convert_to_tensor(images * 2.0 - 1.0))
            return codes, tf.convert_to_tensor(classes)
        return encoded

    def autoencode(self, images: np.ndarray, classes=None) -> np.ndarray:
        """AE-AC-GAN: encode to the generator's noise input and draw it back, as the discriminator's class (or
        the given one)."""
        if self.encoder is None:
            raise ValueError(f"{self.config.kind} has no encoder; autoencode needs the AE-AC-GAN")
        batch = as_images(images)
        if classes is None:
            classes = self.classify(batch).argmax(axis=1)
        with self.lock:
            codes = self._encode(tf.convert_to_tensor(batch * 2.0 - 1.0)).numpy()
        return self._run_generator(codes, np.broadcast_to(np.asarray(classes), (len(batch),)))

    def _require_conditional(self) -> None:
        if not self.config.conditional:
            raise ValueError(f"the {self.config.kind} GAN is unconditional: it cannot be asked for a class")

    # --- scoring ----------------------------------------------------------------------------------------

    needs_scorer = True

    def evaluate(self, x: np.ndarray, y: np.ndarray, n: int = 10000, scorers: dict | None = None) -> dict:
        """Classifier-based FID / inception score of n samples against the test set, with the real-data floor
        (training images vs test images) beside them, under each of `scorers`: {suffix: classifier} of the same
        dataset with `classify_with_features`, whose metrics get the suffix (`store.evaluate` passes the
        shipped CNN as "" and the judge as "_judge"). The samples are drawn once and shown to every scorer; this
        module never loads a classifier."""
        if not scorers:
            raise ValueError("a GAN is scored by classifiers: pass scorers= (store.evaluate does)")
        n = min(n, len(x))  # as many samples as real test images (a small test set scores quickly)
        (x_train, _), _ = load_dataset(self.dataset)
        real_test, real_train = to_float(x[:n]), to_float(x_train[:n])
        fakes, fake_codes = self.generate(n, seed=99), self._random_codes(n, seed=99)
        asked = np.arange(n) % 10
        if self.config.conditional:
            (asked_fakes,) = predict_batches(
                lambda idx: (self.generate_class(asked[idx], seed=5 + int(idx[0])),), np.arange(n))
        result = {"samples": int(n)}
        for suffix, scorer in scorers.items():
            result |= {name + suffix: value for name, value in
                       self._scores(scorer, real_test, real_train, fakes, fake_codes).items()}
            if self.config.conditional:
                (probs,) = predict_batches(lambda b, s=scorer: (s.classify(b),), asked_fakes)
                result["class_accuracy" + suffix] = float(np.mean(probs.argmax(axis=1) == asked))
        if self.encoder is not None:
            (recon,) = predict_batches(lambda b: (self.autoencode(b),), real_test)
            result["reconstruction_mae"] = float(np.mean(np.abs(recon - real_test)))
        return result

    def _scores(self, scorer, real_test, real_train, fakes, fake_codes) -> dict[str, float]:
        test_probs, test_features = predict_batches(scorer.classify_with_features, real_test)
        _, train_features = predict_batches(scorer.classify_with_features, real_train)
        fake_probs, fake_features = predict_batches(scorer.classify_with_features, fakes)
        fake_classes = fake_probs.argmax(axis=1)
        counts = np.bincount(fake_classes, minlength=10) / len(fake_probs)
        scores = {
            "fid": metrics.frechet_distance(fake_features, test_features),
            "fid_real": metrics.frechet_distance(train_features, test_features),
            "inception_score": metrics.inception_score(fake_probs),
            "inception_score_real": metrics.inception_score(test_probs),
            "class_fraction_min": float(counts.min()),
            "class_fraction_max": float(counts.max()),
            "class_diversity": metrics.class_diversity(fake_features, fake_classes, test_features,
                                                       test_probs.argmax(axis=1)),
        }
        if self.config.categories:
            scores["code_purity"] = metrics.code_purity(fake_codes, fake_classes)
        return scores


class AveragedGenerator(keras.callbacks.Callback):
    """At the end of training (also a stopped one), the generator takes its averaged weights before scoring."""

    def __init__(self, gan: GAN, x_train: np.ndarray):
        super().__init__()
        self.gan, self.x_train = gan, x_train

    def on_train_end(self, logs=None):
        self.gan.network.use_averaged_generator(self.gan.encoded_digits(self.x_train) if self.gan.encoder else None)


class CodePrior(keras.callbacks.Callback):
    """At the end of training (also a stopped one), measures the categorical code's rates in the training images."""

    def __init__(self, gan: GAN, x_train: np.ndarray):
        super().__init__()
        self.gan, self.x_train = gan, x_train

    def on_train_end(self, logs=None):
        self.gan.fit_code_prior(self.x_train)


class BatchLossRecorder(keras.callbacks.Callback):
    """Keeps the running losses every 20 batches: the learning curves the originals plotted."""

    EVERY = 20

    def __init__(self, gan: GAN):
        super().__init__()
        self.gan = gan

    def on_train_batch_end(self, batch, logs=None):
        if batch % self.EVERY == 0 and logs:
            for key in ("d_loss", "g_loss"):
                if key in logs:
                    self.gan.loss_history.setdefault(key, []).append(float(logs[key]))


# --- the shipped recipes -------------------------------------------------------------------------------------

AEACGAN = {"kind": "aeacgan", "noise": "uniform", "real_label": 0.9, "fake_label": 0.1, "input_noise": 0.05,
           "ema_momentum": 0.999, "prior_matching": 10.0, "batch_norm": True, "disc_hidden": 256,
           "cond_batch_norm": True, "projection": True}

SPECS = [
    ModelSpec("gan_mlp", GAN, ("mnist",), "MLP GAN", recipe=(
        Stage(20, 2e-4, config={"kind": "mlp"}),
        Stage(20, 2e-4, 0.95, config={"ema_momentum": 0.999}))),  # the moving average: FID 77.0 → 29.4
    ModelSpec("dcgan", GAN, ("mnist",), "DCGAN (with an InfoGAN code)", recipe=(
        Stage(20, 2e-4, 0.97, config={"kind": "dcgan", "batch_norm": True, "disc_hidden": 256, "categories": 10,
                                      "ema_momentum": 0.999}),
        Stage(23, 1.12e-4, 0.97))),  # where the first stage's schedule had reached
    ModelSpec("acgan", GAN, ("mnist",), "ACGAN (noise + class)", recipe=(
        Stage(10, 2e-4, config={"kind": "acgan", "ema_momentum": 0.999, "batch_norm": True, "disc_hidden": 256,
                                "cond_batch_norm": True, "projection": True, "adversarial_loss": "hinge"}),
        Stage(20, 2e-4, 0.93))),
    ModelSpec("aeacgan", GAN, ("mnist", "fashion"), "AE-AC-GAN (autoencoder + ACGAN)",
              recipe=(Stage(10, 2e-4, seed=5, config=AEACGAN),),
              recipes={"fashion": (Stage(10, 2e-4, seed=5, config=AEACGAN), Stage(10, 2e-4, 0.85, seed=5),
                                   Stage(30, 1.5e-4, 0.95, seed=5), Stage(10, 6e-5, 0.93, seed=6))}),
]
