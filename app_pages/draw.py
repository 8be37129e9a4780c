"""Draw & classify: CNN and CapsNet side by side, the CapsNet's redrawing, and its 16 pose dimensions."""

import numpy as np
import streamlit as st

import ui

st.title("Draw & classify")
cnn, capsnet = ui.model_or_stop("cnn"), ui.model_or_stop("capsnet")

left, right = st.columns([2, 3], gap="large")  # the left column holds the 280-px canvas at 1280 px
with left:
    image = ui.drawing_input("draw")
if image is None:
    st.stop()

cnn_probs = cnn.classify(image)[0]
capsules = capsnet.analyze(image)
caps_probs, poses = capsules.probabilities[0], capsules.poses[0]
cnn_digit, caps_digit = int(cnn_probs.argmax()), int(caps_probs.argmax())

with right:
    st.markdown(f"### CNN says **{cnn_digit}** ({cnn_probs[cnn_digit]:.0%}) · CapsNet says **{caps_digit}** "
                f"(capsule length {capsules.lengths[0, caps_digit]:.2f})")
    st.plotly_chart(ui.probability_chart({"CNN": cnn_probs, "CapsNet": caps_probs}), key="probs")
    st.caption("CapsNet bars are its capsule lengths normalised to sum to 1; a capsule's length is its own "
               "evidence that the digit is present.")

POSE_DIMS = poses.shape[1]


def _reset_pose():
    for dim in range(POSE_DIMS):
        ui.set_kept(f"pose_{dim}", 0.0)


drawing_id = hash(image.tobytes())
if st.session_state.get("pose_for") != drawing_id:  # a new drawing starts from its own pose and winner
    st.session_state["pose_for"] = drawing_id
    ui.set_kept("pose_class", caps_digit)
    _reset_pose()


@st.fragment
def pose_explorer():
    """Perturb the chosen capsule's 16-D pose and watch the decoder redraw it (reruns only this part)."""
    st.subheader("What the CapsNet sees")
    cols = st.columns([1, 1, 2])
    with cols[0]:
        ui.show_digit(image, "your input, as the models see it (28×28)")
    chosen = st.session_state[ui.kept("pose_class", caps_digit)]
    offsets = np.array([st.session_state[ui.kept(f"pose_{d}", 0.0)] for d in range(POSE_DIMS)], np.float32)
    pose = poses.copy()
    pose[chosen] += offsets
    with cols[1]:
        ui.show_digit(capsnet.reconstruct(pose[None], chosen)[0], f"redrawn from capsule {chosen}")
    with cols[2]:
        st.selectbox("Redraw as digit", list(range(10)), key="pose_class",
                     help="The decoder can redraw your input from any digit capsule, not only the winner.")
        st.button("Reset pose", on_click=_reset_pose, help="Set all 16 pose sliders back to 0")
        st.caption("Each slider adds to one of the capsule's 16 pose dimensions, as in Fig. 4 of Sabour et al. "
                   "2017: dimensions learn stroke width, skew, scale and other ways a digit can vary.")
    slider_cols = st.columns(4)
    for dim in range(POSE_DIMS):
        with slider_cols[dim % 4]:
            st.slider(f"pose dimension {dim + 1}", -0.3, 0.3, step=0.05, key=f"pose_{dim}")


pose_explorer()
