"""Draw & classify: CNN and CapsNet side by side, how the CapsNet's capsules routed, its redrawing, and its 16
pose dimensions.

A stroke reruns only the drawing's fragment, and what a drawing shows is computed once per drawing (keyed by its
28×28 pixels and the weights' versions), so a class of visitors can share the server."""

import numpy as np
import streamlit as st

import ui
from mnist_models import store

st.title("Draw & classify")
cnn, capsnet = ui.model_or_stop("cnn"), ui.model_or_stop("capsnet")
if ui.CLASS_MEMBER in st.session_state:  # in a class: the teacher's request, polled (only this part reruns)
    st.fragment(ui.class_request, run_every=ui.CLASS_POLL_S)()
ROUTING_HELP = ("Each pixel of your strokes is coloured by the capsule it adds more to: its share of the votes "
                "that reach the capsule at that iteration (gradient × input of the couplings times the votes' "
                "agreement with the capsule, traced back through the convolutions), grey where it adds to neither, "
                "brighter where it adds more.")


@st.cache_data(max_entries=512, show_spinner=False)
def read_drawing(image: np.ndarray, weights: tuple[str, str]) -> dict:
    """Everything the page shows of one drawing, computed once: both models' answers, the CapsNet's poses and
    redrawing, and how its capsules routed (heat maps as PNGs, lengths per iteration)."""
    cnn_probs = cnn.classify(image)[0]
    trace = capsnet.route(image)  # the CapsNet's answer and how its capsules routed, in one pass
    lengths, poses = trace.lengths[0, -1], trace.poses
    winner, runner_up = (int(d) for d in np.argsort(-lengths)[:2])
    overlays = ui.routed_strokes(image, trace, (winner, runner_up), range(trace.iterations), ui.ROUTING_COLOURS, 120)
    return {"cnn": cnn_probs, "caps": lengths / lengths.sum(), "lengths": lengths, "poses": poses[0],
            "winner": winner, "runner_up": runner_up, "overlays": overlays,
            "lengths_chart": ui.lengths_by_iteration_png(trace.lengths[0], winner, runner_up),
            "lengths_by_iteration": trace.lengths[0], "redrawn": capsnet.reconstruct(poses, winner)[0]}


def versions() -> tuple[str, str]:
    return store.active_version("cnn")[1], store.active_version("capsnet")[1]


@st.fragment
def drawing_and_answers():
    left, right = st.columns([2, 3], gap="large")  # the left column holds the 280-px canvas at 1280 px
    with left:
        image = ui.drawing_input("draw")
    if image is None:
        return
    reading = read_drawing(image, versions())
    cnn_digit, caps_digit = int(reading["cnn"].argmax()), reading["winner"]
    with left:
        ui.send_to_class(image, reading["cnn"], reading["lengths"])
    with right:
        st.markdown(f"### CNN says **{cnn_digit}** ({reading['cnn'][cnn_digit]:.0%}) · CapsNet says "
                    f"**{caps_digit}** (capsule length {reading['lengths'][caps_digit]:.2f})")
        st.plotly_chart(ui.probability_chart({"CNN": reading["cnn"], "CapsNet": reading["caps"]}), key="probs")
        st.caption("CapsNet bars are its capsule lengths normalised to sum to 1; a capsule's length is its own "
                   "evidence that the digit is present.")
    with st.container(key="routing_panel"):  # the key names it for the README's screenshot of it
        routing(reading)
    drawing_id = hash(image.tobytes())
    if st.session_state.get("pose_for") != drawing_id:  # a new drawing starts from its own pose and winner
        st.session_state["pose_for"] = drawing_id
        ui.set_kept("pose_class", caps_digit)
        reset_pose()
    pose_explorer(image, reading)


def routing(reading: dict) -> None:
    """Routing by agreement, iteration by iteration: where the winner's and the runner-up's votes come from, and
    how the ten capsules' lengths move."""
    st.subheader("How the capsules routed")
    maps, chart = st.columns([3, 2])
    iterations = len(reading["overlays"])
    with maps:
        ui.image(reading["overlays"], width=120,
                 caption=[f"iteration {it + 1}" for it in range(iterations)])
        st.caption(f"Capsule {reading['winner']} (orange) against capsule {reading['runner_up']} (blue). "
                   + ROUTING_HELP + " At iteration 1 every primary capsule splits its vote evenly over the ten "
                   "digit capsules; routing then sends each one's vote where it agrees with the others.")
    with chart:
        before, after = reading["lengths_by_iteration"][[0, -1], reading["winner"]]
        ui.image(reading["lengths_chart"], caption=f"the ten capsules' lengths after iterations 1–{iterations} "
                 f"(light to dark); capsule {reading['winner']}: {before:.2f} after iteration 1, {after:.2f} after "
                 f"iteration {iterations}")


POSE_DIMS = 16


def reset_pose():
    for dim in range(POSE_DIMS):
        ui.set_kept(f"pose_{dim}", 0.0)


@st.fragment
def pose_explorer(image: np.ndarray, reading: dict):
    """Perturb the chosen capsule's 16-D pose and watch the decoder redraw it (reruns only this part)."""
    st.subheader("What the CapsNet sees")
    cols = st.columns([1, 1, 2])
    with cols[0]:
        ui.show_digit(image, "your input, as the models see it (28×28)")
    winner, lengths = reading["winner"], reading["lengths"]
    chosen = st.session_state[ui.kept("pose_class", winner)]
    strong = chosen != winner and st.session_state[ui.kept("pose_strong", False)]
    sliding = st.session_state[ui.kept("pose_open", False)]  # the sliders only for those who open them
    offsets = np.array([st.session_state[ui.kept(f"pose_{d}", 0.0)] for d in range(POSE_DIMS)], np.float32)
    if not sliding:
        offsets[:] = 0.0
    with cols[1]:
        if chosen == winner and not offsets.any():
            redrawn = reading["redrawn"]
        else:
            pose = reading["poses"].copy()
            pose[chosen] += offsets
            redrawn = capsnet.reconstruct(pose[None], chosen, lengths[winner] if strong else None)[0]
        ui.show_digit(redrawn, f"redrawn from capsule {chosen}" + (" at the winner's length" if strong else ""))
    with cols[2]:
        st.selectbox("Redraw as digit", list(range(10)), key="pose_class",
                     help="The decoder can redraw your input from any digit capsule, not only the winner.")
        if chosen != winner:
            st.toggle("At the winner's length", key="pose_strong",
                      help="Scale this capsule up to the winner's length, keeping its direction.")
            st.caption(f"Capsule {chosen} is {lengths[chosen]:.2f} long (the winning {winner}: "
                       f"{lengths[winner]:.2f}): the CapsNet sees little of digit {chosen} here, and the decoder "
                       "draws a short capsule faintly. At the winner's length you see what the capsule holds, drawn "
                       "as strongly as the winner.")
        # sixteen sliders were a third of a stroke's server CPU: they are drawn when opened
        st.toggle("Slide the 16 pose dimensions", value=sliding, key="pose_open")
        st.caption("Each slider adds to one of the capsule's 16 pose dimensions, as in Fig. 4 of Sabour et al. "
                   "2017: dimensions learn stroke width, skew, scale and other ways a digit can vary.")
    if not sliding:
        return
    st.button("Reset pose", on_click=reset_pose, help="Set all 16 pose sliders back to 0")
    slider_cols = st.columns(4)
    for dim in range(POSE_DIMS):
        with slider_cols[dim % 4]:
            # the value passed in (kept just above): without it a slider reads the whole session state
            st.slider(f"pose dimension {dim + 1}", -0.3, 0.3, value=offsets[dim].item(), step=0.05,
                      key=f"pose_{dim}")


drawing_and_answers()
