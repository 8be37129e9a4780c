"""Two digits at once: draw one digit over another with two pens; a CapsNet names both and redraws each from its
own capsule (Sabour et al. 2017, §6 and Fig. 5), beside a CNN baseline's two answers."""

import numpy as np
import streamlit as st
from PIL import Image

import ui
from mnist_models import multimnist, store
from mnist_models.preprocess import BlankDrawingError

PENS = {"first digit": "#FF3B3B", "second digit": "#3BFF5A"}  # red and green, as in the paper's Fig. 5
PEN_COLOURS = ((1.0, 0.23, 0.23), (0.23, 1.0, 0.35))

st.title("Two digits at once")
st.caption("Draw a digit with the red pen, switch to the green pen and draw another digit over it. The models see "
           "only the merged grey image. The CapsNet names both digits and redraws each one alone from its own "
           "capsule, even where the strokes cross.")
capsnet, cnn = ui.model_or_stop("capsnet_multi"), ui.model_or_stop("cnn_multi")
x_test, y_test = ui.test_set_or_stop("mnist")


def coloured(first: np.ndarray, second: np.ndarray, base: np.ndarray | None = None, size: int = 180) -> bytes:
    """Two (36, 36) images in red and green (over a dim grey `base`), upscaled without blurring."""
    grey = np.zeros_like(first) if base is None else 0.35 * base
    rgb = np.stack([np.maximum(grey, first), np.maximum(grey, second), grey], -1)
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)
    return ui.png(image)


def routing_panel(a: int, b: int, pair: dict) -> None:
    """Which strokes vote for which digit capsule, at the first and the last routing iteration, in the pens'
    colours; beside it, how well routing separates the strokes over the whole test set (measured, not tuned)."""
    st.markdown("**How the capsules routed the strokes**")
    ui.image(pair["routing"], width=180, caption=[f"iteration 1: votes for {a} (red) and {b} (green)",
                                                   f"iteration {pair['iterations']}: after routing by agreement"])
    scores = store.zoo_entry("capsnet_multi", "mnist", store.active_version("capsnet_multi")[0]).metrics
    measured = ""
    if "routing_attribution_last" in scores:
        measured = (f" Over the 10,000 test pairs, each digit's capsule is the stronger one on "
                    f"{scores['routing_attribution_first']:.0%} of that digit's ink at the first iteration and "
                    f"{scores['routing_attribution_last']:.0%} at the last.")
    st.caption("Each stroke is coloured by the digit capsule its primary capsules send more of their vote to: red "
               "for the red digit's, green for the green digit's, yellow where they split it. At the first "
               "iteration every primary capsule splits its vote evenly, so only the votes' lengths differ; routing "
               "then sends each vote where it agrees with the others." + measured)


def chosen_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The pair to read: your two-pen drawing or a random test pair, as (merged image, the two digits apart, the
    true labels or None); None (with a hint) while there is nothing to read yet."""
    source = st.radio("Pair", ["Draw", "Random test pair"], horizontal=True, key=ui.kept("mm_source", "Draw"),
                      label_visibility="collapsed")
    if source == "Draw":
        pen = st.radio("Pen", list(PENS), horizontal=True, key=ui.kept("mm_pen", "first digit"))
        rgba = ui.canvas("mm", PENS[pen], "Red pen for the first digit, green for the second, over it. Undo and "
                                          "reset (bin) are in the toolbar above the canvas.")
        if rgba is None:
            st.info("✏️ Draw a digit in red, then another one in green on top of it.")
            return None
        try:
            mine = multimnist.to_multimnist(multimnist.pen_inks(rgba))
        except BlankDrawingError as err:
            st.info(f"✏️ {str(err)[0].upper()}{str(err)[1:]}.")
            return None
        return mine.max(0), mine, None
    if st.button("🎲 Another pair") or "mm_pair" not in st.session_state:
        st.session_state["mm_pair"] = int(np.random.default_rng().integers(multimnist.TEST_PAIRS))
    index = st.session_state["mm_pair"]
    pairs = multimnist.test_pairs(x_test, y_test)
    truth = pairs.labels[index]
    st.caption(f"Test pair #{index} of the fixed 10,000: a {truth[0]} (red) and a {truth[1]} (green).")
    return pairs.images[index], pairs.digits[index], truth


@st.cache_data(max_entries=256, show_spinner=False)
def read(image: np.ndarray, pens: np.ndarray, weights: tuple[str, str]) -> dict:
    """Both models' readings of one pair, in pen order, how the CapsNet's routing split the strokes between the
    two digit capsules, and its redrawing from each of the ten capsules: computed once per pair."""
    (reading, trace), baseline = capsnet.read_routed(image), cnn.read_pair(image)
    # the redrawing that lies on the red strokes comes first, so red stays red; the CNN's answers follow that order
    order = list(multimnist.pen_order(reading.redrawn[0], pens))
    digits = [int(reading.digits[0, k]) for k in order]
    return {"digits": digits, "lengths": reading.lengths[0], "redrawn": reading.redrawn[0][order],
            "cnn": multimnist.in_order_of(baseline.digits[0], digits), "cnn_scores": baseline.lengths[0],
            "routing": ui.routed_strokes(image, trace, digits, (0, trace.iterations - 1), PEN_COLOURS, 180),
            "iterations": trace.iterations, "redrawn_as": capsnet.reconstruct(np.repeat(trace.poses, 10, 0), range(10))}


@st.fragment
def pair_and_reading() -> None:
    """The pair and both models' reading of it: a stroke, a pen or a "redraw as" reruns only this part."""
    controls, view = st.columns([2, 3], gap="large")
    with controls:
        chosen = chosen_pair()
    if chosen is None:
        return
    image, mine, truth = chosen
    pair = read(image, mine, (store.active_version("capsnet_multi")[1], store.active_version("cnn_multi")[1]))
    a, b = pair["digits"]
    cnn_a, cnn_b = pair["cnn"]
    redrawn = pair["redrawn"]
    with view:
        st.markdown(f"### CapsNet reads **{a}** and **{b}** · CNN reads **{cnn_a}** and **{cnn_b}**")
        if truth is not None:
            st.caption("Both right" if {a, b} == set(truth.tolist()) else f"The true digits are {truth[0]} and "
                       f"{truth[1]}.")
        ui.image([ui.digit_png(image, 180), coloured(*redrawn, base=image), coloured(*mine)],
                 caption=["what the models see (36×36)", f"CapsNet's redrawings: {a} red, {b} green",
                          "your strokes, red and green" if truth is None else "the two digits alone"], width=180)
        lengths = pair["lengths"]
        st.caption("Capsule lengths (the network's evidence for each digit): " + ", ".join(
            f"{d}: {lengths[d]:.2f}" for d in np.argsort(-lengths)[:4]) + ". CNN sigmoid outputs for its two: "
            f"{pair['cnn_scores'][cnn_a]:.2f}, {pair['cnn_scores'][cnn_b]:.2f}.")
        asked = st.selectbox("Redraw as", list(range(10)), key=ui.kept("mm_redraw", a),
                             help="Ask the decoder for any digit: from a capsule whose digit is not there, it draws "
                                  "little or a faint guess.")
        ui.image(ui.digit_png(pair["redrawn_as"][asked], 180), caption=f"redrawn from capsule {asked} "
                 f"(length {lengths[asked]:.2f})", width=180)
        with st.container(key="routing_panel"):  # the key names it for the README's screenshot of it
            routing_panel(a, b, pair)


pair_and_reading()
