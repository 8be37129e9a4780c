"""Autoencoders & denoising: corrupt a digit, then see what every autoencoder makes of it."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
from mnist_models.autoencoders import NOISE_KINDS, add_noise
from mnist_models.base import to_float
from mnist_models.metrics import psnr, ssim

AUTOENCODERS = ["ae_vanilla", "ae_multilayer", "ae_conv", "ae_sparse", "ae_denoising"]

st.title("Autoencoders & denoising")
x_test, y_test = ui.test_set_or_stop("mnist")

controls, view = st.columns([1, 3], gap="large")
with controls:
    sources = ["Test digit", "Random test digit"] + (["Your drawing"] if "drawing" in st.session_state else [])
    source = st.radio("Digit", sources, key=ui.kept("ae_source", "Test digit"))
    if source == "Test digit":
        index = st.number_input("Test-set index", 0, len(x_test) - 1, key=ui.kept("ae_index", 0))
    elif source == "Random test digit":
        if st.button("🎲 Another one") or "ae_random" not in st.session_state:
            st.session_state["ae_random"] = int(np.random.default_rng().integers(len(x_test)))
        index = st.session_state["ae_random"]
    if source == "Your drawing":
        clean = st.session_state["drawing"]
        st.caption("Your last drawing from the Draw page.")
    else:
        clean = to_float(x_test[index])
        st.caption(f"Test digit #{index}, a {y_test[index]}.")
    kind = st.selectbox("Noise", NOISE_KINDS, key=ui.kept("ae_noise", "salt_pepper"),
                        format_func=lambda k: k.replace("_", " & ") if k == "salt_pepper" else k)
    amount = ui.slider("Amount", 0.0, 0.8, step=0.05, key="ae_amount", default=0.1,
                       help="Gaussian: σ; salt & pepper and masking: fraction of pixels hit")
    seed = st.number_input("Noise seed", 0, 10_000, key=ui.kept("ae_seed", 0))

noisy = add_noise(clean, kind, amount, seed=int(seed))
with view:
    outputs = {name.removeprefix("ae_"): ui.model_or_stop(name).reconstruct(noisy) for name in AUTOENCODERS}
    shown = {"clean": clean[None], "noisy": noisy, **outputs}
    # one image list wraps to the width it gets (a row on a laptop, a grid on a phone); the figures go in a table,
    # where no number is ever cut short
    ui.image([ui.digit_png(images[0], 110) for images in shown.values()], caption=list(shown), width=110)
    st.dataframe([{"image": label, "PSNR (dB)": round(psnr(images, clean[None]), 1),
                   "SSIM": round(ssim(images, clean[None]), 3)} for label, images in shown.items() if label != "clean"],
                 hide_index=True)
    st.caption("PSNR and SSIM compare each image with the clean digit (higher is closer). Only the denoising "
               "autoencoder was trained on noisy inputs; the others learned to copy clean digits.")

    sparse = ui.model_or_stop("ae_sparse")
    code = sparse.encode(noisy)[0]
    st.subheader("Sparse autoencoder: which code units fire")
    fig = go.Figure(go.Bar(x=np.arange(1, len(code) + 1), y=code, marker_color="#7c5cff"))
    fig.update_layout(height=220, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="code unit",
                      yaxis_title="activation")
    st.plotly_chart(fig, key="sparse_code")
    st.caption(f"{np.mean(code > 1e-3):.0%} of {len(code)} units are active for this input; the L1 penalty "
               "on the code keeps most of them at zero.")
