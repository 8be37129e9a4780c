"""MultiMNIST: the pair generator (classes differ, shifts within ±4, seeded sets identical), the on-the-fly
training pipeline, and both models on a tiny config: shapes, a training step, the read_pair API, weights round trip."""

import numpy as np
import pytest

from mnist_models import catalogue, store
from mnist_models import multimnist as mm


def digit_box(image: np.ndarray) -> tuple[int, int]:
    """Top-left corner of a placed digit's 28×28 box, found from where its source digit's ink sits."""
    rows, cols = np.nonzero(image)
    return int(rows.min()), int(cols.min())


def test_pairs_differ_in_class_stay_in_frame_and_repeat(mnist):
    (_, _), (x_test, y_test) = mnist
    pairs = mm.make_pairs(x_test, y_test, 500, seed=3)
    assert pairs.images.shape == (500, 36, 36) and pairs.digits.shape == (500, 2, 36, 36)
    assert np.all(pairs.labels[:, 0] != pairs.labels[:, 1])
    assert np.array_equal(pairs.images, pairs.digits.max(1))  # merged with max
    assert pairs.images.min() >= 0 and pairs.images.max() <= 1
    again = mm.make_pairs(x_test, y_test, 500, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(pairs, again, strict=True))
    assert not np.array_equal(pairs.labels, mm.make_pairs(x_test, y_test, 500, seed=4).labels)


def test_shifts_are_within_four_pixels():
    digit = np.zeros((1, 28, 28), np.uint8)
    digit[0, 0, 0] = digit[0, 27, 27] = 255  # marks the corners of the 28×28 box
    for dy in range(-4, 5):
        for dx in (-4, 0, 4):
            placed = mm.place(digit, np.array([[dy, dx]]))[0]
            assert digit_box(placed) == (4 + dy, 4 + dx)
    with pytest.raises(ValueError):
        mm.place(digit, np.array([[5, 0]]))


def test_fixed_test_set_is_the_same_every_time(mnist):
    (_, _), (x_test, y_test) = mnist
    a, b = mm.test_pairs(x_test, y_test, 200), mm.test_pairs(x_test, y_test, 200)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


def test_training_pipeline_makes_valid_pairs(mnist):
    (x_train, y_train), _ = mnist
    marked = np.zeros((1000, 28, 28), np.uint8)
    marked[:, 0, 0] = marked[:, 27, 27] = 255  # the corners of each digit's box show where it was placed

    def arrange(merged, first, second, label_1, label_2):
        return merged, first, second, label_1, label_2
    batch = next(iter(mm.pair_pipeline(marked, y_train[:1000], 64, seed=1, arrange=arrange)))
    merged, first, second, a, b = (t.numpy() for t in batch)
    assert merged.shape == (64, 36, 36) and np.all(a != b)
    assert np.allclose(merged, np.maximum(first, second))
    corners = [digit_box(image) for image in np.concatenate([first, second])]
    assert len(set(corners)) > 20  # shifts vary
    for image in np.concatenate([first, second]):
        top, left = digit_box(image)
        assert 0 <= top <= 8 and 0 <= left <= 8  # the 28×28 box moved at most 4 px from the centre
    again = next(iter(mm.pair_pipeline(marked, y_train[:1000], 64, seed=1, arrange=arrange)))
    assert np.array_equal(merged, again[0].numpy())  # seeded: reproducible


def test_pair_accuracy_metric():
    truth = np.zeros((2, 10), np.float32)
    truth[:, [3, 7]] = 1
    scores = np.full((2, 10), 0.1, np.float32)
    scores[0, [3, 7]] = [0.9, 0.8]
    scores[1, [3, 5]] = [0.9, 0.8]
    assert np.asarray(mm.pair_accuracy(truth, scores)).tolist() == [1.0, 0.0]


TINY = {"capsnet_multi": {"front_end": "stack", "stack_filters": [4, 8, 8, 8], "primary_types": 4,
                          "decoder_units": [32, 64]},
        "cnn_multi": {"filters": [8, 8], "dense_units": 16}}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["capsnet_multi", "cnn_multi"])
def test_tiny_model_trains_reads_pairs_and_round_trips(name, mnist, tmp_path):
    (x_train, y_train), (x_test, y_test) = mnist
    model = catalogue.build(name, config=TINY[name])
    history = model.compile(1e-3).fit(model.train_dataset(x_train[:256], y_train[:256], 32, 0), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    pairs = mm.test_pairs(x_test, y_test, 8)
    reading = model.read_pair(pairs.images)
    assert reading.digits.shape == (8, 2) and reading.lengths.shape == (8, 10)
    assert np.all(reading.digits[:, 0] != reading.digits[:, 1])
    scores = model.evaluate(x_test[:200], y_test[:200])
    assert 0 <= scores["pair_accuracy"] <= scores["digit_accuracy"] <= 1
    assert scores["test_examples"] == 200  # a slice of the test digits makes as many pairs
    if name == "capsnet_multi":
        judged = model.evaluate(x_test[:200], y_test[:200], scorers={"_cnn": store.load("cnn")})
        assert 0 <= judged["redraw_read_cnn"] <= 1 and judged["redraw_read_cnn_real"] >= 0.95  # real digits: ceiling
        assert reading.redrawn.shape == (8, 2, 36, 36)
        poses = model.route(pairs.images).poses
        assert model.reconstruct(poses, 4).shape == (8, 36, 36)
        assert -1 <= scores["redraw_correlation"] <= 1 and scores["redraw_mse"] >= 0
        assert 0 <= scores["routing_attribution_first"] <= 1 and 0 <= scores["routing_attribution_last"] <= 1
        with pytest.raises(ValueError, match="between 0 and 9"):
            model.reconstruct(poses, 10)
    else:
        assert reading.redrawn is None
    with pytest.raises(ValueError, match="36, 36"):
        model.read_pair(np.zeros((2, 28, 28)))

    store.save(model, tmp_path, {"model": name, "dataset": "mnist", "config": model.config.to_dict()})
    loaded = store.load_from(tmp_path, name)
    assert np.allclose(loaded.read_pair(pairs.images).lengths, reading.lengths, atol=1e-5)


def test_to_multimnist_places_two_pens_like_a_pair(mnist):
    """Two digits drawn big on a 280-px canvas, offset: scaled so the larger is 20 px, offset kept, centred."""
    (_, _), (x_test, y_test) = mnist
    inks = np.zeros((2, 280, 280), np.float32)
    inks[0, 20:244, 20:244] = np.kron(x_test[0], np.ones((8, 8))) / 255
    inks[1, 50:274, 40:264] = np.kron(x_test[1], np.ones((8, 8))) / 255
    placed = mm.to_multimnist(inks)
    assert placed.shape == (2, 36, 36) and placed.max() <= 1
    for k in range(2):
        rows, cols = np.nonzero(placed[k] > 0.1)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21
    merged = placed.max(0)
    com = [(merged.sum(axis=a) * np.arange(36)).sum() / merged.sum() for a in (1, 0)]
    assert all(abs(c - 18) <= 1 for c in com)
    with pytest.raises(ValueError, match="draw two digits"):
        mm.to_multimnist(np.zeros((2, 50, 50)))


def test_a_digit_placed_in_the_frame_comes_back_centred_for_a_classifier(mnist):
    (_, _), (x_test, _) = mnist
    shifts = np.random.default_rng(3).integers(-4, 5, size=(50, 2))
    back = mm.centred_28(mm.place(x_test[:50], shifts))
    same = [np.array_equal(b, d / np.float32(255)) for b, d in zip(back, x_test[:50], strict=True)]
    assert np.mean(same) >= 0.8  # MNIST centres its digits by their centre of mass too (up to a pixel's rounding)


@pytest.mark.slow
def test_pen_order_puts_each_redrawing_on_its_own_pens_strokes(mnist):
    """On test pairs the shipped CapsNet reads right, ordering its redrawings by overlap with each digit alone
    gives the digits in the order they were drawn (red first), whatever order the capsules came in."""
    _, (x_test, y_test) = mnist
    pairs = mm.test_pairs(x_test, y_test, 40)
    reading = store.load("capsnet_multi").read_pair(pairs.images)
    right = [i for i in range(40) if set(reading.digits[i]) == set(pairs.labels[i])]
    assert len(right) >= 30
    for i in right:
        order = mm.pen_order(reading.redrawn[i], pairs.digits[i])
        assert reading.digits[i][list(order)].tolist() == pairs.labels[i].tolist()
        swapped = mm.pen_order(reading.redrawn[i][::-1], pairs.digits[i])
        assert reading.digits[i][::-1][list(swapped)].tolist() == pairs.labels[i].tolist()


@pytest.mark.parametrize(("digits", "reference", "expected"), [
    ([0, 4], [4, 0], [4, 0]), ([4, 7], [4, 0], [4, 7]), ([7, 4], [4, 0], [4, 7]), ([7, 0], [4, 0], [7, 0]),
    ([0, 7], [4, 0], [7, 0]), ([1, 2], [4, 0], [1, 2])])
def test_baseline_answers_follow_the_pen_order(digits, reference, expected):
    assert mm.in_order_of(digits, reference) == expected


def test_routing_attribution_is_the_share_of_each_digits_ink_its_capsule_claims():
    """A made-up trace whose pixel maps are the two digits themselves gives each digit all its ink; swapped, none."""
    from mnist_models.capsnet import RoutingTrace

    size = 4
    digits = np.zeros((1, 2, size, size), np.float32)
    digits[0, 0, :2], digits[0, 1, 2:] = 1.0, 0.5
    maps = digits[:, :, None]  # (1, 2 mapped capsules, 1 iteration, H, W)
    trace = RoutingTrace(np.full((1, 1, 4, 10), 0.1, np.float32), np.zeros((1, 4, 10), np.float32),
                         np.zeros((1, 1, 10)), np.zeros((1, 10, 16)), np.array([[3, 8]]), maps)
    np.testing.assert_allclose(mm.routing_attribution(trace, digits, np.array([[3, 8]]), 0), [[1.0, 1.0]])
    np.testing.assert_allclose(mm.routing_attribution(trace, digits, np.array([[8, 3]]), 0), [[0.0, 0.0]])
