"""Robustness lab: transform a digit and watch the CNN and the CapsNet agree, or not."""

import plotly.graph_objects as go
import streamlit as st

import ui
from mnist_models import transforms
from mnist_models.base import to_float

st.title("Robustness lab")
st.caption("Sabour et al. (2017) trained a CapsNet on MNIST alone and tested it on affNIST (digits under random "
           "affine change): 79 % for the CapsNet against 66 % for a CNN of similar size. Bend a digit here and "
           "see where each of our two classifiers breaks.")
cnn, capsnet = ui.model_or_stop("cnn"), ui.model_or_stop("capsnet")
x_test, y_test = ui.test_set_or_stop("mnist")

controls, view = st.columns([1, 2], gap="large")
with controls:
    sources = ["Test digit"] + (["Your drawing"] if "drawing" in st.session_state else [])
    source = st.radio("Digit", sources, horizontal=True, key=ui.kept("rob_source", "Test digit"))
    if source == "Your drawing":
        original, true_class = st.session_state["drawing"], None
    else:
        index = st.number_input("Test-set index", 0, len(x_test) - 1, key=ui.kept("rob_index", 0))
        original, true_class = to_float(x_test[index]), int(y_test[index])
    transform = transforms.Transform(
        rotation=ui.slider("Rotation (°)", -60, 60, step=5, key="rob_rotation", default=0),
        scale=ui.slider("Scale", 0.5, 1.5, step=0.05, key="rob_scale", default=1.0),
        shift_x=ui.slider("Shift x (px)", -8, 8, key="rob_shift_x", default=0),
        shift_y=ui.slider("Shift y (px)", -8, 8, key="rob_shift_y", default=0),
        shear=ui.slider("Shear", -0.5, 0.5, step=0.05, key="rob_shear", default=0.0),
        thickness=ui.slider("Stroke thickness (px)", -2, 3, key="rob_thickness", default=0,
                            help="negative thins the strokes, positive thickens them"),
    )

reference = true_class if true_class is not None else int(cnn.classify(original)[0].argmax())
moved = transforms.apply(original, transform)
cnn_probs, caps_probs = cnn.classify(moved)[0], capsnet.classify(moved)[0]
with view:
    cols = st.columns(3)
    with cols[0]:
        ui.show_digit(original, "original")
    with cols[1]:
        ui.show_digit(moved[0], "transformed")
    with cols[2]:
        for label, probs in [("CNN", cnn_probs), ("CapsNet", caps_probs)]:
            top = int(probs.argmax())
            st.metric(label, f"{top} ({probs[top]:.0%})",
                      delta=None if top == reference else f"not {reference}", delta_color="inverse")

    which = st.selectbox("Sweep", list(transforms.SWEEPS), key=ui.kept("rob_sweep", next(iter(transforms.SWEEPS))),
                         format_func=lambda k: k.replace("_", " "))
    values, batch = transforms.sweep(original, which)
    fig = go.Figure([
        go.Scatter(x=values, y=model.classify(batch)[:, reference], mode="lines+markers", name=label)
        for label, model in [("CNN", cnn), ("CapsNet", capsnet)]
    ])
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=which.replace("_", " "),
                      yaxis=dict(title=f"confidence in {reference}", range=[0, 1], tickformat=".0%"),
                      title=f"Each model's confidence in {reference} across the whole {which.replace('_', ' ')} "
                            "range")
    st.plotly_chart(fig, key="rob_sweep_chart")
    st.caption("The whole range is computed in one batched call per model. CapsNet confidence is its capsule "
               "lengths normalised to sum to 1.")
