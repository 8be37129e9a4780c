"""Latent explorer: a VAE's 2-D latent space, decoded live, mapped over the test set."""

import plotly.graph_objects as go
import streamlit as st

import ui
from mnist_models import registry
from mnist_models.base import to_float
from mnist_models.data import CLASS_NAMES

SCATTER_POINTS = 5000

st.title("Latent explorer")
dataset = ui.dataset_picker(["mnist", "fashion"], "latent_dataset")
vae = ui.model_or_stop("vae", dataset)
x_test, y_test = ui.test_set_or_stop(dataset)


@st.cache_data(show_spinner="Encoding the test set…", max_entries=4)
def latent_means(dataset_name: str, _weights_id: str):
    return ui.model_or_stop("vae", dataset_name).encode_dataset(*ui.test_set_or_stop(dataset_name),
                                                                  limit=SCATTER_POINTS)


@st.cache_data(show_spinner=False, max_entries=4)
def manifold(dataset_name: str, _weights_id: str, n: int):
    return ui.model_or_stop("vae", dataset_name).latent_grid(n)[0]


weights_id = registry.active_version("vae", dataset)[1]  # derived caches follow the weights, not an object
z, labels = latent_means(dataset, weights_id)

left, right = st.columns([1, 2], gap="large")
with left:
    st.subheader("Decode a point")
    z1 = st.slider("z₁", -3.0, 3.0, step=0.05, key=ui.kept("z1", 0.0))
    z2 = st.slider("z₂", -3.0, 3.0, step=0.05, key=ui.kept("z2", 0.0))
    ui.show_digit(vae.decode([[z1, z2]])[0], f"decoded from ({z1:+.2f}, {z2:+.2f})", 196)

with right:
    st.subheader("The test set in latent space")
    names = CLASS_NAMES[dataset]
    fig = go.Figure()
    for label in range(10):
        points = z[labels == label]
        fig.add_trace(go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers", name=names[label],
                                   marker=dict(size=4, opacity=0.6),
                                   hovertemplate=f"{names[label]}<br>z=(%{{x:.2f}}, %{{y:.2f}})<extra></extra>"))
    fig.add_trace(go.Scatter(x=[z1], y=[z2], mode="markers", name="sliders",
                             marker=dict(size=16, symbol="x", color="white", line=dict(width=2))))
    drawing = st.session_state.get("drawing")
    if drawing is not None and dataset == "mnist":
        mine = vae.encode(drawing)[0]
        fig.add_trace(go.Scatter(x=[mine[0]], y=[mine[1]], mode="markers", name="your drawing",
                                 marker=dict(size=18, symbol="star", color="gold", line=dict(width=1))))
    fig.update_layout(height=480, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="z₁", yaxis_title="z₂")
    st.plotly_chart(fig, key="latent_scatter")
    refined = (f", placed by the encoder and {vae.config.refine_steps} refining steps on its own loss"
               if vae.config.refine_steps else "")
    st.caption(f"The encoder's latent means μ(x) of the first {len(z):,} test images, coloured by label"
               + (f"; and your drawing from the Draw page{refined}." if drawing is not None and dataset == "mnist"
                  else "."))

st.subheader("The manifold")
n = st.slider("Grid size", 5, 25, key=ui.kept("grid_n", 15))
st.image(ui.grid_png(manifold(dataset, weights_id, n), cell=max(24, 560 // n)),
         caption="Decoded on a grid of latent quantiles of N(0, 1), as in Kingma & Welling's Fig. 4")

st.subheader("Interpolate between two test images")
a_col, b_col, steps_col = st.columns(3)
a = a_col.number_input("From test image #", 0, len(x_test) - 1, key=ui.kept("interp_a", 0))
b = b_col.number_input("To test image #", 0, len(x_test) - 1, key=ui.kept("interp_b", 1))
steps = steps_col.slider("Steps", 3, 15, key=ui.kept("interp_steps", 9))
path = vae.interpolate(to_float(x_test[a]), to_float(x_test[b]), steps)
st.image(ui.grid_png(path[None], cell=72), caption=f"{names[y_test[a]]} → {names[y_test[b]]}, "
         "decoded along the straight line between their latent means")
