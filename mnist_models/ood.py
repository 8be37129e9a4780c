"""Handwriting that is not MNIST's: seeded out-of-distribution test sets, each made the way a drawing reaches
the models (a 280×280 canvas picture through `preprocess.to_mnist`).

MNIST's digits were scanned, anti-aliased and written with one kind of pen. A visitor's digit is drawn with a
mouse at some stroke width, or comes from a coarse scan. These sets pull the test digits away from MNIST's look
in one way each, so a model that only learnt MNIST's look shows where it breaks:

- `blocky8`: each test digit shrunk to 8×8 with 17 grey levels (the look of the UCI/scikit-learn 8×8 scans) and
  enlarged back onto the canvas, nearest-neighbour (blocky, then blurred by the resize to 20×20);
- `thin` / `thick`: each test digit's skeleton redrawn with a pen much thinner / thicker than MNIST's;
- `templates`: digits drawn stroke by stroke from hand-made templates (several styles per digit), jittered,
  at the canvas's stroke widths (8–40 px), as a mouse draws them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from skimage.morphology import skeletonize

from .preprocess import to_mnist

CANVAS = 280
SCAN_SIDE, SCAN_LEVELS = 8, 16  # the UCI digits: 8×8 pixels, values 0–16
THIN_PEN, THICK_PEN = 7, 40  # canvas pixels; MNIST's strokes are about 22 at this scale (the canvas's default)
PEN_WIDTHS = (8, 40)  # the Draw page's stroke-width slider

# Each digit's strokes in a unit box (x right, y down), several ways of writing it. Points are joined in order;
# each list is one stroke (pen down … pen up).
TEMPLATES: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [[[(.5, 0), (.2, .15), (.08, .5), (.2, .85), (.5, 1), (.8, .85), (.92, .5), (.8, .15), (.5, 0)]],
        [[(.55, .02), (.25, .1), (.15, .5), (.3, .92), (.6, .98), (.85, .7), (.85, .3), (.6, .05), (.45, .05)]]],
    1: [[[(.5, 0), (.5, 1)]],
        [[(.3, .2), (.55, 0), (.55, 1)]],
        [[(.3, .2), (.55, 0), (.55, 1)], [(.3, 1), (.8, 1)]]],
    2: [[[(.1, .25), (.3, .03), (.65, 0), (.88, .2), (.8, .45), (.1, 1), (.95, 1)]],
        [[(.15, .2), (.5, 0), (.85, .2), (.7, .5), (.15, .95), (.5, .85), (.95, .98)]]],
    3: [[[(.1, .1), (.5, 0), (.85, .15), (.8, .38), (.4, .48), (.85, .6), (.9, .85), (.5, 1), (.1, .9)]],
        [[(.1, 0), (.85, 0), (.4, .42), (.85, .6), (.85, .85), (.5, 1), (.1, .9)]]],
    4: [[[(.65, 0), (.05, .68), (.95, .68)], [(.7, .3), (.7, 1)]],
        [[(.15, 0), (.1, .55), (.9, .55)], [(.75, 0), (.75, 1)]],
        [[(.7, 1), (.7, 0), (.05, .65), (.95, .65)]]],
    5: [[[(.85, 0), (.2, 0), (.15, .42), (.55, .38), (.88, .6), (.8, .9), (.45, 1), (.1, .88)]],
        [[(.2, 0), (.15, .45), (.6, .4), (.88, .65), (.75, .92), (.4, 1), (.1, .85)], [(.2, 0), (.85, 0)]]],
    6: [[[(.75, 0), (.35, .3), (.12, .7), (.3, .98), (.65, .98), (.85, .75), (.6, .52), (.3, .58), (.15, .75)]],
        [[(.7, 0), (.25, .4), (.15, .75), (.45, 1), (.8, .85), (.75, .6), (.4, .55), (.18, .68)]]],
    7: [[[(.05, 0), (.95, 0), (.4, 1)]],
        [[(.05, 0), (.95, 0), (.4, 1)], [(.3, .5), (.85, .5)]],
        [[(.05, .15), (.1, 0), (.95, 0), (.55, .5), (.45, 1)]]],
    8: [[[(.85, .2), (.5, 0), (.15, .2), (.5, .48), (.88, .75), (.5, 1), (.12, .75), (.5, .48), (.85, .2)]],
        [[(.5, .48), (.2, .25), (.5, 0), (.8, .25), (.5, .48), (.15, .75), (.5, 1), (.85, .75), (.5, .48)]]],
    9: [[[(.85, .25), (.55, 0), (.18, .15), (.2, .42), (.55, .5), (.85, .3), (.85, 0), (.8, 1)]],
        [[(.85, .3), (.5, 0), (.15, .2), (.3, .48), (.7, .45), (.85, .25), (.75, .7), (.45, 1)]]],
}


def _canvas_to_input(canvas: np.ndarray) -> np.ndarray:
    """A white-on-black canvas picture, as the Draw page receives it, → the 28×28 model input."""
    return to_mnist(np.dstack([canvas, canvas, canvas, np.full_like(canvas, 255)]))


def _placed(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An ink picture (h, w), uint8, pasted somewhere on a black canvas, as big as a visitor draws it."""
    side = int(rng.integers(150, 241))
    picture = Image.fromarray(ink).resize((side, side), Image.Resampling.NEAREST)
    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    top, left = (int(v) for v in rng.integers(0, CANVAS - side + 1, size=2))
    canvas[top:top + side, left:left + side] = np.asarray(picture)
    return canvas


def blocky8(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uint8 (28, 28) digit as an 8×8 scan with 17 grey levels, enlarged back as the canvas shows it."""
    box = np.argwhere(digit > 0)
    (top, left), (bottom, right) = box.min(0), box.max(0) + 1
    side = max(bottom - top, right - left)  # the scans fill their 8×8 frame: crop to a square around the ink
    cy, cx = (top + bottom) // 2, (left + right) // 2
    padded, half = np.pad(digit, side), side // 2
    crop = padded[cy + side - half: cy + 2 * side - half, cx + side - half: cx + 2 * side - half]
    small = np.asarray(Image.fromarray(crop).resize((SCAN_SIDE, SCAN_SIDE), Image.Resampling.BOX), np.float64)
    levels = np.round(small / max(small.max(), 1) * SCAN_LEVELS) / SCAN_LEVELS
    return _canvas_to_input(_placed((levels * 255).astype(np.uint8), rng))


def redrawn_skeleton(digit: np.ndarray, pen: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 (28, 28) digit's centre line (its skeleton), redrawn on the canvas with a round pen `pen` px wide."""
    scale = 8
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)) > 100
    rows, cols = np.nonzero(skeletonize(big))
    box = np.array([rows.min(), cols.min(), rows.max(), cols.max()], float)
    side = int(rng.integers(150, CANVAS - 2 * pen + 1))
    factor = side / max(box[2] - box[0], box[3] - box[1], 1)
    top, left = (int(v) for v in rng.integers(pen, CANVAS - side - pen + 1, size=2))
    canvas = Image.new("L", (CANVAS, CANVAS))
    draw, radius = ImageDraw.Draw(canvas), pen / 2
    for y, x in zip((rows - box[0]) * factor + top, (cols - box[1]) * factor + left, strict=True):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    return _canvas_to_input(np.asarray(canvas))


def template_drawing(label: int, rng: np.random.Generator) -> np.ndarray:
    """One of `label`'s templates, jittered (slant, size, aspect, each point), drawn stroke by stroke with a
    round pen of a width from the canvas's slider, as the canvas's freedraw paints a mouse path."""
    strokes = TEMPLATES[label][int(rng.integers(len(TEMPLATES[label])))]
    pen = int(rng.integers(PEN_WIDTHS[0], PEN_WIDTHS[1] + 1))
    height = float(rng.uniform(140, CANVAS - 2 * pen - 20))
    width = height * float(rng.uniform(0.55, 0.85))
    slant = float(rng.uniform(-0.25, 0.25))
    paths = []
    for stroke in strokes:
        points = np.array(stroke) + rng.normal(0, 0.03, (len(stroke), 2))
        paths.append(_smooth(np.stack([points[:, 0] * width + slant * (1 - points[:, 1]) * height,
                                       points[:, 1] * height], 1)))
    low, high = np.concatenate(paths).min(0), np.concatenate(paths).max(0)
    room = np.maximum(CANVAS - pen - (high - low), pen + 1)
    offset = rng.uniform(pen, room) - low
    canvas = Image.new("L", (CANVAS, CANVAS))
    draw = ImageDraw.Draw(canvas)
    for path in paths:
        path = path + offset
        draw.line([tuple(p) for p in path], fill=255, width=pen, joint="curve")
        for x, y in path[[0, -1]]:  # round caps, as the canvas draws them
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    return _canvas_to_input(np.asarray(canvas))


def _smooth(points: np.ndarray, steps: int = 8) -> np.ndarray:
    """A polyline through `points` rounded by Chaikin corner cutting (a hand does not draw sharp corners)."""
    for _ in range(2 if len(points) > 2 else 0):
        q, r = 0.75 * points[:-1] + 0.25 * points[1:], 0.25 * points[:-1] + 0.75 * points[1:]
        points = np.concatenate([points[:1], np.stack([q, r], 1).reshape(-1, 2), points[-1:]])
    return points if len(points) > 2 else np.linspace(points[0], points[-1], steps)


SETS = ("blocky8", "thin", "thick", "templates")
METRIC_PREFIX = "ood_"  # how `evaluate robustness --record` names their accuracies in the manifest


def ood_sets(digits: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (images (N, 28, 28) float32, labels (N,))}: the sets above from uint8 test `digits`, seeded (each
    set its own stream, so one set does not change when another does)."""
    def made(name: int, make) -> np.ndarray:
        rng = np.random.default_rng([seed, name])
        return np.stack([make(d, rng) for d in digits])

    template_labels = np.arange(len(digits)) % 10
    template_rng = np.random.default_rng([seed, 4])
    return {
        "blocky8": (made(1, blocky8), labels),
        "thin": (made(2, lambda d, r: redrawn_skeleton(d, THIN_PEN, r)), labels),
        "thick": (made(3, lambda d, r: redrawn_skeleton(d, THICK_PEN, r)), labels),
        "templates": (np.stack([template_drawing(int(k), template_rng) for k in template_labels]), template_labels),
    }
