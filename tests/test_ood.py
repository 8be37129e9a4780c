import numpy as np
import pytest

from mnist_models import ood, store


def test_sets_are_seeded_model_inputs_with_the_digits_labels(mnist):
    (_, _), (x_test, y_test) = mnist
    sets = ood.ood_sets(x_test[:20], y_test[:20], seed=3)
    again = ood.ood_sets(x_test[:20], y_test[:20], seed=3)
    assert set(sets) == {"blocky8", "thin", "thick", "templates"}
    for name, (images, labels) in sets.items():
        assert images.shape == (20, 28, 28) and images.dtype == np.float32
        assert 0 <= images.min() and images.max() <= 1 and (images.max((1, 2)) > 0.5).all(), name
        np.testing.assert_array_equal(images, again[name][0])
        expected = np.arange(20) % 10 if name == "templates" else y_test[:20]
        np.testing.assert_array_equal(labels, expected)
    assert not np.array_equal(sets["blocky8"][0], ood.ood_sets(x_test[:20], y_test[:20], seed=4)["blocky8"][0])


def test_pens_change_the_stroke_width(mnist):
    """The thin pen leaves much less ink than MNIST's strokes, the thick one much more."""
    (_, _), (x_test, y_test) = mnist
    sets = ood.ood_sets(x_test[:30], y_test[:30])
    ink = {name: float((images > 0.5).mean()) for name, (images, _) in sets.items()}
    clean = float((x_test[:30] > 127).mean())
    assert ink["thin"] < 0.7 * clean < clean < 0.8 * ink["thick"]


def test_blocky_scan_has_the_8x8_grid_and_17_levels():
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    rng = np.random.default_rng(0)
    scanned = ood.blocky8(digit, rng)
    assert scanned.shape == (28, 28) and scanned.max() > 0.5


@pytest.mark.slow
def test_the_cnn_reads_every_set(mnist):
    """The sets stay digits a good classifier reads (what they test is a model's reach, not noise)."""
    (_, _), (x_test, y_test) = mnist
    cnn = store.load("cnn")
    for name, (images, labels) in ood.ood_sets(x_test[:200], y_test[:200]).items():
        assert np.mean(cnn.classify(images).argmax(1) == labels) >= 0.9, name
