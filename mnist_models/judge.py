"""The judge: a second classifier, used only to score generated images (FID, inception score, drawn-as-asked).

The project's CNN also picks which GAN checkpoints and recipes ship, so figures from it alone could flatter what
was tuned against it. The judge differs from it in every way that matters for that: architecture family (a small
ResNet with BatchNorm and global average pooling, against plain convolutions, dropout and a dense feature layer),
augmentation (random rotation, zoom and shift, against shifts only) and seed. Nothing trains, stops or selects on
it.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from .base import Config, ModelSpec, Stage, to_float
from .classifiers import CNNClassifier


@dataclasses.dataclass
class JudgeConfig(Config):
    widths: tuple[int, ...] = (32, 64, 128)  # one residual block per stage; every stage after the first halves
    dropout: float = 0.2
    max_rotation_deg: float = 12.0
    max_zoom: float = 0.1
    max_shift: int = 3


def _residual_block(x, width: int, stride: int, name: str):
    shortcut = x
    if stride != 1 or x.shape[-1] != width:
        shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False, name=f"{name}_project")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_project_bn")(shortcut)
    y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.ReLU()(layers.BatchNormalization(name=f"{name}_bn1")(y))
    y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    return layers.ReLU()(layers.Add()([shortcut, y]))


def build_judge(config: JudgeConfig) -> keras.Model:
    """image (28, 28) → [class probabilities (10,), pooled features (widths[-1],)]."""
    images = keras.Input((28, 28), name="image")
    x = layers.Reshape((28, 28, 1))(images)
    x = layers.Conv2D(config.widths[0], 3, padding="same", use_bias=False, name="stem")(x)
    x = layers.ReLU()(layers.BatchNormalization(name="stem_bn")(x))
    for stage, width in enumerate(config.widths):
        x = _residual_block(x, width, 1 if stage == 0 else 2, f"stage{stage}")
    features = layers.GlobalAveragePooling2D(name="features")(x)
    probs = layers.Dense(10, activation="softmax", name="probs")(layers.Dropout(config.dropout)(features))
    return keras.Model(images, [probs, features], name="judge")


class JudgeClassifier(CNNClassifier):
    """Everything but the network and the augmentation is the CNN's: same outputs, so it scores the same way."""

    config_class = JudgeConfig
    build_network = staticmethod(build_judge)

    def train_dataset(self, x, y, batch_size, seed):
        cfg = self.config
        augment = keras.Sequential([
            layers.RandomRotation(cfg.max_rotation_deg / 360, fill_mode="constant", seed=seed),
            layers.RandomZoom(cfg.max_zoom, fill_mode="constant", seed=seed + 1),
            layers.RandomTranslation(cfg.max_shift / 28, cfg.max_shift / 28, fill_mode="constant", seed=seed + 2),
        ], name="augment")
        ds = tf.data.Dataset.from_tensor_slices((to_float(x), y.astype(np.int32)))
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
        ds = ds.map(lambda images, labels: (augment(images[..., None], training=True)[..., 0], labels),
                    num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)


# --- the shipped recipes -------------------------------------------------------------------------------------

SPECS = [ModelSpec("judge", JudgeClassifier, ("mnist", "fashion"), "Judge (ResNet classifier, scores only)",
                   recipe=(Stage(8, lr_decay=0.8, seed=2718),))]
