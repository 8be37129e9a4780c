import numpy as np

from mnist_models import registry
from mnist_models.classifiers import CNNClassifier, CNNConfig
from mnist_models.preprocess import to_mnist
from mnist_models.training import TrainSettings, train
from tests.drawings import render

TINY = CNNConfig(filters=(4, 8), convs_per_block=(1, 1), dense_units=16)


def test_shapes(mnist_test_float):
    model = CNNClassifier(TINY)
    probs, features = model.classify_with_features(mnist_test_float[0][:5])
    assert probs.shape == (5, 10) and features.shape == (5, 16)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert model.classify(mnist_test_float[0][0]).shape == (1, 10)  # a single image is a batch of one


def test_tiny_cnn_learns_and_round_trips(tmp_path, mnist_test_float):
    result = train(TrainSettings(model="cnn", epochs=2, train_size=1000, batch_size=50, learning_rate=3e-3),
                   out_dir=tmp_path, config=TINY.to_dict())
    assert result.history["loss"][-1] < result.history["loss"][0]
    loaded = registry.load_from(tmp_path, "cnn")
    images = mnist_test_float[0][:16]
    np.testing.assert_array_equal(loaded.classify(images), result.model.classify(images))
    entry = registry.read_manifest(tmp_path)["cnn-mnist"]
    assert CNNConfig.from_dict(entry["config"]) == TINY
    assert set(entry) >= {"metrics", "weights", "versions", "seconds_per_epoch", "training"}


def test_shipped_cnns_reach_their_targets_and_read_drawings(mnist):
    manifest = registry.read_manifest()
    assert manifest["cnn-mnist"]["metrics"]["test_accuracy"] >= 0.994
    assert manifest["cnn-fashion"]["metrics"]["test_accuracy"] >= 0.92
    (_, _), (x_test, y_test) = mnist
    rng = np.random.default_rng(11)
    images = np.stack([to_mnist(render(x_test[i], style, rng))
                       for i in range(30) for style in ("alpha", "paper")])
    labels = np.repeat(y_test[:30], 2)
    assert np.mean(registry.load("cnn").classify(images).argmax(1) == labels) >= 0.95
