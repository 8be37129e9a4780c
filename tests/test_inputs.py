"""Every public method that takes images takes what people pass: uint8 0–255 as the dataset loader gives it, or
float 0–1; anything else is refused with a message that says what is expected (one check: `base.as_images`)."""

import dataclasses

import numpy as np
import pytest

from mnist_models import multimnist, store
from mnist_models.base import as_images

# (model, method, extra arguments): every image-taking public method of the shipped zoo
METHODS = [
    ("cnn", "classify", ()), ("cnn", "classify_with_features", ()), ("judge", "classify", ()),
    ("capsnet", "analyze", ()), ("capsnet", "classify", ()), ("capsnet", "route", ()),
    ("ae_vanilla", "reconstruct", ()), ("ae_conv", "encode", ()), ("ae_denoising", "reconstruct", ()),
    ("vae", "encode", ()), ("vae", "reconstruct", ()),
    ("acgan", "classify", ()), ("aeacgan", "autoencode", ()),
]
PAIR_METHODS = [("capsnet_multi", "read_pair", ()), ("capsnet_multi", "read_routed", ()),
                ("cnn_multi", "read_pair", ())]


def outputs(value):
    """The arrays a method returned, flattened (NamedTuples, tuples, dataclasses and single arrays alike)."""
    if isinstance(value, np.ndarray):
        return [value]
    if dataclasses.is_dataclass(value):
        value = [getattr(value, field.name) for field in dataclasses.fields(value)]
    return [a for item in value if item is not None and not np.isscalar(item) for a in outputs(item)]


def assert_same_answers(method, uint8_images, extra):
    from_uint8 = outputs(method(uint8_images, *extra))
    from_float = outputs(method(uint8_images.astype(np.float32) / 255.0, *extra))
    for a, b in zip(from_uint8, from_float, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "method", "extra"), METHODS, ids=[f"{n}.{m}" for n, m, _ in METHODS])
def test_uint8_and_float_digits_give_the_same_answers(name, method, extra, mnist):
    _, (x_test, _) = mnist
    assert_same_answers(getattr(store.load(name), method), x_test[:16], extra)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "method", "extra"), PAIR_METHODS, ids=[f"{n}.{m}" for n, m, _ in PAIR_METHODS])
def test_uint8_and_float_pairs_give_the_same_answers(name, method, extra, mnist):
    _, (x_test, y_test) = mnist
    pairs = multimnist.test_pairs(x_test, y_test, 8).images
    assert_same_answers(getattr(store.load(name), method), np.round(pairs * 255).astype(np.uint8), extra)


@pytest.mark.slow
def test_the_loaders_uint8_test_set_is_read_as_well_as_floats(mnist):
    """The newcomer's case from the issue: `classify(x)` on the loader's uint8 test digits, no division."""
    _, (x_test, y_test) = mnist
    cnn = store.load("cnn")
    assert np.mean(cnn.classify(x_test[:2000]).argmax(1) == y_test[:2000]) == np.mean(
        cnn.classify(x_test[:2000] / 255.0).argmax(1) == y_test[:2000])


BAD = {  # what is wrong → (the images, for a frame of `size`; what the message must say)
    "above one": (lambda size: np.full((2, size, size), 2.0), r"float pixels must be in \[0, 1\].*divide 0–255"),
    "below zero": (lambda size: np.full((2, size, size), -0.5), r"float pixels must be in \[0, 1\]"),
    "NaN": (lambda size: np.full((2, size, size), np.nan), "NaN"),
    "another size": (lambda size: np.zeros((2, size + 4, size + 4)), r"shape \(N, {size}, {size}\)"),
    "colour": (lambda size: np.zeros((size, size, 3)), r"shape \(N, {size}, {size}\)"),
    "above 255": (lambda size: np.full((1, size, size), 300), "0–255"),
    "text": (lambda size: np.array([["a"] * size] * size), "dtype"),
}


@pytest.mark.parametrize("problem", list(BAD))
def test_bad_images_are_refused_with_what_is_expected(problem):
    make, message = BAD[problem]
    for size, check in ((28, as_images), (36, multimnist.as_pairs)):
        with pytest.raises(ValueError, match=message.format(size=size)):
            check(make(size))


def test_round_off_outside_zero_one_is_clipped_not_refused():
    images = np.full((1, 28, 28), 1.0004, np.float32)
    assert as_images(images).max() == 1.0
