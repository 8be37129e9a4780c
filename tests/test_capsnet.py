import numpy as np
import pytest
import tensorflow as tf

from mnist_models import registry
from mnist_models.capsnet import (
    CapsNet,
    CapsNetConfig,
    DigitCapsules,
    ReferenceCapsNet,
    TiledDigitCapsules,
    margin_loss,
    squash,
)
from mnist_models.training import TrainSettings, train

TINY = CapsNetConfig(conv_filters=8, primary_types=4, primary_dim=8, digit_dim=16, decoder_units=(32, 64))


def test_squash_keeps_direction_and_maps_length_below_one():
    s = tf.random.normal((64, 10, 16)) * tf.random.uniform((64, 10, 1), 0, 20)
    v = squash(s).numpy()
    lengths = np.linalg.norm(v, axis=-1)
    assert np.all(lengths >= 0) and np.all(lengths < 1)
    cosine = np.sum(v * s.numpy(), -1) / (lengths * np.linalg.norm(s.numpy(), axis=-1) + 1e-9)
    assert np.allclose(cosine[lengths > 1e-3], 1, atol=1e-4)


@pytest.mark.parametrize("routings", [1, 3])
def test_routing_coefficients_sum_to_one_and_outputs_and_gradients_match_reference(routings):
    u = squash(tf.random.normal((5, 36, 8)))
    ours, reference = DigitCapsules(10, 16, routings), TiledDigitCapsules(10, 16, routings)
    ours.build(u.shape)
    reference.build(u.shape)
    ours.W.assign(tf.random.normal(ours.W.shape, stddev=0.3))  # large enough that routing is far from uniform
    reference.W.assign(ours.W)
    results = {}
    for name, layer in [("ours", ours), ("reference", reference)]:
        with tf.GradientTape() as tape:
            tape.watch(u)
            v, c = layer.routing(u)
            loss = tf.reduce_sum(tf.square(v) * tf.range(16, dtype=tf.float32))
        results[name] = (v, c, *tape.gradient(loss, [u, layer.W.value]))
    v, c = results["ours"][:2]
    assert v.shape == (5, 10, 16) and c.shape == (5, 36, 10)
    np.testing.assert_allclose(c.numpy().sum(-1), 1.0, atol=1e-5)
    assert np.all(np.linalg.norm(v.numpy(), axis=-1) < 1)
    assert routings == 1 or c.numpy().max() > 0.15  # routing moved away from the uniform 0.1
    for name, ours_value, reference_value in zip(["v", "c", "du", "dW"], results["ours"], results["reference"],
                                                 strict=True):
        expected = reference_value.numpy()
        assert np.abs(expected).max() > 1e-2, name
        np.testing.assert_allclose(ours_value.numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(),
                                   err_msg=name)


def test_margin_loss_is_zero_for_confident_right_answers():
    onehot = tf.one_hot([3], 10)
    perfect = onehot * 0.95 + (1 - onehot) * 0.05
    wrong = tf.one_hot([4], 10) * 0.95
    assert float(margin_loss(onehot, perfect)[0]) == 0.0
    assert float(margin_loss(onehot, wrong)[0]) > 0.5


def test_shapes_and_reconstruct_any_class(mnist_test_float):
    model = CapsNet(TINY)
    out = model.analyze(mnist_test_float[0][:3])
    assert out.probabilities.shape == (3, 10) and out.poses.shape == (3, 10, 16)
    np.testing.assert_allclose(out.probabilities.sum(1), 1, atol=1e-5)
    recon = model.reconstruct(out.poses, 7)
    assert recon.shape == (3, 28, 28) and recon.min() >= 0 and recon.max() <= 1
    np.testing.assert_allclose(model.reconstruct(out.poses, [7, 7, 7]), recon, atol=1e-6)
    assert model.reconstruct(out.poses, [1, 2, 3]).shape == (3, 28, 28)
    with pytest.raises(ValueError):
        model.reconstruct(out.poses, 10)


def test_tiny_capsnet_learns_and_round_trips(tmp_path, mnist_test_float):
    settings = TrainSettings(model="capsnet", epochs=2, train_size=600, batch_size=50, learning_rate=3e-3)
    result = train(settings, out_dir=tmp_path, config=TINY.to_dict())
    losses = result.history["loss"]
    assert losses[-1] < losses[0]
    loaded = registry.load_from(tmp_path, "capsnet")
    assert loaded.config == TINY
    images = mnist_test_float[0][:8]
    np.testing.assert_allclose(loaded.analyze(images).poses, result.model.analyze(images).poses, atol=1e-6)
    assert "reconstruction_mse" in result.metrics


def test_reference_capsnet_shares_the_architecture():
    ours, reference = CapsNet(TINY), ReferenceCapsNet(TINY)
    assert [w.shape for w in ours.trainer.weights] == [w.shape for w in reference.trainer.weights]


def test_shipped_capsnet_reads_drawn_digits(mnist):
    from mnist_models.preprocess import to_mnist
    from tests.drawings import render

    (_, _), (x_test, y_test) = mnist
    model = registry.load("capsnet")
    rng = np.random.default_rng(3)
    images = np.stack([to_mnist(render(x_test[i], "alpha", rng)) for i in range(20)])
    assert np.mean(model.classify(images).argmax(1) == y_test[:20]) >= 0.9
    assert registry.read_manifest()["capsnet-mnist"]["metrics"]["test_accuracy"] >= 0.994
