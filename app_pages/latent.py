"""Latent explorer: a VAE's 2-D latent space, decoded live, mapped over the test set."""

import numpy as np
import streamlit as st

import ui
from mnist_models import store
from mnist_models.base import to_float
from mnist_models.data import CLASS_NAMES

SCATTER_POINTS = 5000

st.title("Latent explorer")
dataset = ui.dataset_picker(["mnist", "fashion"], "latent_dataset")
vae = ui.model_or_stop("vae", dataset)
x_test, y_test = ui.test_set_or_stop(dataset)


@st.cache_data(show_spinner="Encoding the test set…", max_entries=4)
def latent_means(dataset_name: str, weights_id: str):
    return ui.model_or_stop("vae", dataset_name).encode_dataset(*ui.test_set_or_stop(dataset_name),
                                                                  limit=SCATTER_POINTS)


@st.cache_data(show_spinner=False, max_entries=16)
def manifold(dataset_name: str, weights_id: str, n: int) -> bytes:
    """The decoded grid as a PNG, made once per dataset, weights and size."""
    grid = ui.model_or_stop("vae", dataset_name).latent_grid(n)[0]
    return ui.grid_png(grid, cell=max(24, 560 // n))


@st.cache_data(show_spinner=False, max_entries=64)
def interpolation(dataset_name: str, weights_id: str, a: int, b: int, steps: int) -> bytes:
    """The decoded path between two test images' latent points, as a PNG, made once per choice."""
    x_test = ui.test_set_or_stop(dataset_name)[0]
    path = ui.model_or_stop("vae", dataset_name).interpolate(to_float(x_test[a]), to_float(x_test[b]), steps)
    return ui.grid_png(path[None], cell=72)


@st.cache_data(show_spinner=False, max_entries=64)
def drawing_in_latent_space(dataset_name: str, weights_id: str, drawing: np.ndarray) -> np.ndarray:
    """Where the VAE places your drawing (its refined q(z|x)): once per drawing, not on every rerun."""
    return ui.model_or_stop("vae", dataset_name).encode(drawing)[0]


@st.cache_data(show_spinner=False, max_entries=8)
def latent_map(dataset_name: str, weights_id: str) -> np.ndarray:
    """A small picture of the test set in latent space (one dot per digit, coloured by label), drawn once; the
    sliders' point is marked on a copy of it."""
    z, labels = latent_means(dataset_name, weights_id)
    return ui.scatter_picture(z, labels, MAP_SPAN, MAP_SIZE)


weights_id = store.active_version("vae", dataset)[1]  # derived caches follow the weights, not an object
z, labels = latent_means(dataset, weights_id)
MAP_SPAN, MAP_SIZE = 3.0, 196


@st.fragment
def decode_a_point():
    """The two sliders and what the decoder makes of their point: a slider step reruns only this."""
    st.subheader("Decode a point")
    z1 = ui.slider("z₁", -MAP_SPAN, MAP_SPAN, step=0.05, key="z1", default=0.0)
    z2 = ui.slider("z₂", -MAP_SPAN, MAP_SPAN, step=0.05, key="z2", default=0.0)
    ui.image([ui.digit_png(vae.decode([[z1, z2]])[0], MAP_SIZE),
              ui.mark_point(latent_map(dataset, weights_id), (z1, z2), MAP_SPAN)],
             caption=[f"decoded from ({z1:+.2f}, {z2:+.2f})", "where that is among the test digits"],
             width=MAP_SIZE)


left, right = st.columns([1, 2], gap="large")
with left:
    decode_a_point()

with right:
    st.subheader("The test set in latent space")
    names = CLASS_NAMES[dataset]
    drawing = st.session_state.get("drawing")
    mine = drawing_in_latent_space(dataset, weights_id, drawing) if drawing is not None and dataset == "mnist" \
        else None
    st.plotly_chart(ui.latent_scatter(z, labels, names, mine), key="latent_scatter")
    refined = (f", placed by the encoder and {vae.config.refine_steps} refining steps on its own loss"
               if vae.config.refine_steps else "")
    st.caption(f"The encoder's latent means μ(x) of the first {len(z):,} test images, coloured by label"
               + (f"; and your drawing from the Draw page{refined}." if mine is not None else "."))

st.subheader("The manifold")
n = ui.slider("Grid size", 5, 25, key="grid_n", default=15)
ui.image(manifold(dataset, weights_id, n),
         caption="Decoded on a grid of latent quantiles of N(0, 1), as in Kingma & Welling's Fig. 4")

st.subheader("Interpolate between two test images")
a_col, b_col, steps_col = st.columns(3)
a = a_col.number_input("From test image #", 0, len(x_test) - 1, key=ui.kept("interp_a", 0))
b = b_col.number_input("To test image #", 0, len(x_test) - 1, key=ui.kept("interp_b", 1))
with steps_col:
    steps = ui.slider("Steps", 3, 15, key="interp_steps", default=9)
ui.image(interpolation(dataset, weights_id, a, b, steps), caption=f"{names[y_test[a]]} → {names[y_test[b]]}, "
         "decoded along the straight line between their latent means")
