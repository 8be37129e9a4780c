import numpy as np
import pytest
from keras import layers

from mnist_models import store
from mnist_models.classifiers import CNNClassifier, CNNConfig
from mnist_models.gans import GAN, GANConfig
from mnist_models.judge import JudgeClassifier, JudgeConfig
from mnist_models.training import TrainSettings, train

TINY = JudgeConfig(widths=(4, 8))


def test_shapes_and_a_different_family_from_the_cnn(mnist_test_float):
    judge = JudgeClassifier(TINY)
    probs, features = judge.classify_with_features(mnist_test_float[0][:5])
    assert probs.shape == (5, 10) and features.shape == (5, 8)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    kinds = {type(layer) for layer in judge.network.layers}
    assert {layers.BatchNormalization, layers.Add, layers.GlobalAveragePooling2D} <= kinds
    assert not kinds & {type(layer) for layer in CNNClassifier(CNNConfig()).network.layers if
                        isinstance(layer, (layers.MaxPooling2D, layers.Flatten))}


def test_augmentation_moves_the_digits_and_keeps_labels_and_range(mnist):
    (x_train, y_train), _ = mnist
    judge = JudgeClassifier(TINY)
    images, labels = next(iter(judge.train_dataset(x_train[:256], y_train[:256], 256, seed=1)))
    images, labels = images.numpy(), labels.numpy()
    assert images.shape == (256, 28, 28) and images.min() >= 0 and images.max() <= 1.0001
    assert sorted(labels.tolist()) == sorted(y_train[:256].tolist())
    originals = x_train[:256] / 255.0
    moved = [np.abs(image - originals).sum(axis=(1, 2)).min() > 1.0 for image in images[:32]]
    assert np.mean(moved) > 0.8  # almost every image differs from every original: rotated, zoomed or shifted


@pytest.mark.slow
def test_tiny_judge_learns_and_round_trips(tmp_path, mnist_test_float):
    result = train(TrainSettings(model="judge", epochs=2, test_size=500,
                                 train_size=1000, batch_size=50, learning_rate=3e-3),
                   out_dir=tmp_path, config=TINY.to_dict())
    assert result.history["loss"][-1] < result.history["loss"][0]
    loaded = store.load_from(tmp_path, "judge")
    images = mnist_test_float[0][:16]
    np.testing.assert_allclose(loaded.classify(images), result.model.classify(images), atol=1e-6)


def test_a_gan_is_scored_under_every_scorer_with_its_suffix(mnist):
    (_, _), (x_test, y_test) = mnist
    gan = GAN(GANConfig(kind="acgan", latent_dim=8, width=4))
    scores = gan.evaluate(x_test, y_test, n=200,
                          scorers={"": CNNClassifier(CNNConfig(filters=(4, 8), dense_units=16)),
                                   "_judge": JudgeClassifier(TINY)})
    for name in ("fid", "fid_real", "inception_score", "class_diversity", "class_accuracy"):
        assert np.isfinite(scores[name]) and np.isfinite(scores[name + "_judge"])
    assert scores["fid"] != scores["fid_judge"]  # two different feature spaces
