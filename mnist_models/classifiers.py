"""CNN classifier: two conv blocks and a dense feature layer; the features also drive the GAN metrics."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from .base import Config, ModelSpec, Stage, ZooModel, as_images, image_pipeline, predict_batches, to_float


@dataclasses.dataclass
class CNNConfig(Config):
    """Defaults: what weights saved before a field existed were trained with (see `Config`); the shipped
    recipes are `SPECS` below."""

    filters: tuple[int, int] = (32, 64)
    convs_per_block: tuple[int, int] = (1, 2)
    dense_units: int = 128
    dropout: float = 0.4
    max_shift: int = 2


def build_cnn(config: CNNConfig) -> keras.Model:
    """image (28, 28) → [class probabilities (10,), penultimate features (dense_units,)]."""
    images = keras.Input((28, 28), name="image")
    x = layers.Reshape((28, 28, 1))(images)
    for block, (filters, convs) in enumerate(zip(config.filters, config.convs_per_block, strict=False)):
        for conv in range(convs):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}_{conv}")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(config.dropout / 2)(x)
    x = layers.Flatten()(x)
    features = layers.Dense(config.dense_units, activation="relu", name="features")(x)
    x = layers.Dropout(config.dropout)(features)
    probs = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(images, [probs, features], name="cnn")


class CNNClassifier(ZooModel):
    config_class = CNNConfig
    key_metric = "test_accuracy"
    higher_is_better = True
    metric_help = {
        "loss": "cross-entropy: how little probability the model gives the right digit (0: sure and right)",
        "accuracy": "share of the training images read right so far this epoch (on augmented images, so a little "
                    "below the test accuracy)",
    }

    build_network = staticmethod(build_cnn)

    def build(self) -> None:
        self.network = self.build_network(self.config)
        self.classifier = keras.Model(self.network.input, self.network.outputs[0], name="cnn_probs")
        self._infer = self.inference_function(self.network)

    def parts(self) -> dict[str, keras.Model]:
        return {"model": self.network}

    def compile(self, learning_rate: float) -> keras.Model:
        self.classifier.compile(optimizer=keras.optimizers.Adam(learning_rate),
                                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return self.classifier

    def train_dataset(self, x, y, batch_size, seed):
        return image_pipeline(x, y, batch_size, seed, self.config.max_shift)

    def classify_with_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N, 10) and penultimate features (N, dense_units)."""
        batch = as_images(images)
        with self.lock:
            probs, features = self._infer(tf.convert_to_tensor(batch))
        return probs.numpy(), features.numpy()

    def classify(self, images: np.ndarray) -> np.ndarray:
        return self.classify_with_features(images)[0]

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        (probs,) = predict_batches(lambda b: (self.classify(b),), to_float(x))
        return {"test_accuracy": float(np.mean(probs.argmax(1) == y)), "test_examples": int(len(y))}


# --- the shipped recipes -------------------------------------------------------------------------------------

SPECS = [ModelSpec(
    "cnn", CNNClassifier, ("mnist", "fashion"), "CNN classifier",
    # the CapsNet's schedule and augmentation (shifts of ±2 px), so the two are compared on equal terms
    recipe=(Stage(20, lr_decay=0.9, batch_size=100),),
    recipes={"fashion": (  # three runs with shifts, then one without: shifting clothes cost accuracy
        Stage(10, lr_decay=0.8), Stage(5, 3e-4, 0.8, seed=99), Stage(4, 2e-4, 0.7, seed=7),
        Stage(4, 3e-4, 0.7, config={"max_shift": 0}))})]
