"""The light visitor of `bench serve` sends what Chromium's canvas sends, and its drawings read as their digits."""

import json
import random

import numpy as np

from mnist_models import loadtest, multimnist, store
from mnist_models.preprocess import clean


def test_a_stroke_is_a_fabric_path_with_a_point_per_mouse_move_and_an_antialiased_picture():
    strokes = loadtest.handwritten(loadtest.STROKES[4], random.Random(1))
    state = json.loads(loadtest.canvas_state(strokes))
    paths = state["drawing"]["raw"]["objects"]
    assert [p["type"] for p in paths] == ["Path", "Path"] and state["drawing"]["raw"]["version"] == "7.4.0"
    for path, stroke in zip(paths, strokes, strict=True):
        commands = [c[0] for c in path["path"]]
        assert commands[0] == "M" and commands[-1] == "L" and set(commands[1:-1]) == {"Q"}
        assert len(commands) == (len(stroke) - 1) * loadtest.MOUSE_STEPS + 1  # as Fabric's pencil records it
    grey = loadtest.canvas_picture(loadtest.canvas_state(strokes))[..., 0]
    assert grey.shape == (loadtest.CANVAS, loadtest.CANVAS)
    assert len(np.unique(grey)) > 10  # soft edges, as a browser's canvas draws them, not two levels


def test_no_two_handwritten_drawings_are_the_same_picture_and_each_reads_as_its_digit():
    rng = random.Random(0)
    cnn = store.load("cnn")
    pictures = []
    for digit, strokes in loadtest.STROKES.items():
        picture = loadtest.canvas_picture(loadtest.canvas_state(loadtest.handwritten(strokes, rng)))
        pictures.append(picture.tobytes())
        assert int(cnn.classify(clean(picture).digit[None]).argmax()) == digit
    assert len(set(pictures)) == len(pictures)


def test_the_warm_up_draws_none_of_the_drawings_a_measured_run_draws():
    """The warm-up fills the app's cache of drawings: a measured run that drew the same would read its strokes from
    it (the warm-up's seed was -1, and Python seeds a Random with abs(seed): it drew what seed 1 drew)."""
    def first_strokes(seed):
        rng = random.Random(seed)
        return [tuple(map(tuple, loadtest.handwritten(strokes, rng)[0])) for strokes in loadtest.STROKES.values()]

    warm_up = set(first_strokes(loadtest.WARM_UP_SEED))
    for seed in range(-50, 1050):  # compare-browser's sides, bench serve's visitors and rounds, the class bench
        assert warm_up.isdisjoint(first_strokes(seed)), seed


def test_the_two_pens_inks_come_apart_where_they_cross():
    red, green = loadtest.pair_strokes((3, 7))
    state = loadtest.canvas_state(red + green, [loadtest.PENS[0]] * len(red) + [loadtest.PENS[1]] * len(green))
    inks = multimnist.pen_inks(loadtest.canvas_picture(state))
    assert inks.shape == (2, loadtest.CANVAS, loadtest.CANVAS)
    assert inks[0].sum() > 0 and inks[1].sum() > 0 and not np.any((inks[0] > 0) & (inks[1] > 0))
    pair = store.load("capsnet_multi").read_pair(multimnist.to_multimnist(inks).max(0)[None])
    assert sorted(pair.digits[0].tolist()) == [3, 7]


def test_an_answer_that_is_not_the_drawings_own_is_caught():
    state = loadtest.canvas_state(loadtest.STROKES[7])
    record = loadtest.Record(drawings=[("stroke", 0, state, "### CNN says **7** (99%) · CapsNet says **7** (98%)"),
                                       ("stroke", 1, state, "### CNN says **1** (60%) · CapsNet says **7** (98%)")])
    loadtest.check_drawings(record)
    assert len(record.crossed) == 1 and record.crossed[0].startswith("visitor 1: stroke")
