import numpy as np
import pytest

from mnist_models import store, transforms
from mnist_models.transforms import Transform


def test_identity_changes_nothing(mnist_test_float):
    images = mnist_test_float[0][:10]
    np.testing.assert_array_equal(transforms.apply(images, Transform()), images)


@pytest.mark.parametrize("t", [Transform(rotation=33), Transform(scale=0.6), Transform(shift_x=-5, shift_y=3),
                               Transform(shear=0.3), Transform(thickness=2), Transform(thickness=-1)])
def test_transforms_keep_shape_and_range(mnist_test_float, t):
    images = mnist_test_float[0][:5]
    out = transforms.apply(images, t)
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1 and not np.array_equal(out, images)


def test_geometry_is_right():
    bar = np.zeros((1, 28, 28), np.float32)
    bar[0, 14, 6:22] = 1  # a horizontal bar
    vertical = transforms.apply(bar, Transform(rotation=90))[0]
    assert vertical[6:21, 13].min() > 0.5 and vertical[14, :].sum() < 2
    shifted = transforms.apply(bar, Transform(shift_x=3))[0]
    np.testing.assert_allclose(shifted[14, 9:25], 1, atol=1e-5)
    thick = transforms.apply(bar, Transform(thickness=1))[0]
    assert thick[13:16, 7:21].min() == 1


def test_benchmark_sets_are_deterministic_under_a_seed(mnist_test_float):
    images = mnist_test_float[0][:20]
    a, b = transforms.benchmark_sets(images, seed=3), transforms.benchmark_sets(images, seed=3)
    assert list(a) == ["clean", "rot15", "rot30", "scale0.8", "scale1.2", "shift4", "affine", "affnist"]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other = transforms.benchmark_sets(images, seed=4)
    assert not np.array_equal(other["affine"], a["affine"]) and not np.array_equal(other["affnist"], a["affnist"])


def test_stretch_scales_one_axis():
    bar = np.zeros((1, 28, 28), np.float32)
    bar[0, 14, 10:18], bar[0, 10:18, 14] = 1, 1  # a plus sign, 8 px each way
    wide = transforms.apply(bar, Transform(stretch_x=1.5))[0]
    assert (wide[14] > 0.5).sum() >= 11 and (wide[:, 14] > 0.5).sum() <= 9


def test_sweep_is_one_batch(mnist_test_float):
    values, batch = transforms.sweep(mnist_test_float[0][0], "rotation")
    assert batch.shape == (len(values), 28, 28) and values[0] == -60 and values[-1] == 60


def test_a_one_turned_on_its_side_is_no_longer_a_confident_one(mnist):
    (_, _), (x_test, y_test) = mnist
    ones = x_test[y_test == 1][:20].astype(np.float32) / 255
    cnn = store.load("cnn")
    assert np.mean(cnn.classify(ones).argmax(1) == 1) == 1.0
    turned = cnn.classify(transforms.apply(ones, Transform(rotation=90)))
    assert np.mean(turned[:, 1] > 0.9) < 0.2
