"""MNIST Studio: the page list. Pages live in app_pages/ and call mnist_models.

Not in pages/: that folder name switches on Streamlit's old automatic page list, which breaks direct links
(e.g. /draw) under st.navigation.
"""

import os

# One thread per TensorFlow operation: a class's visitors already keep both cores busy, and the threads an op is
# split across spin while they wait for the next one, which cost a quarter of a stroke's server CPU
# (`python -m mnist_models bench serve`). A training started from the Train page then leaves a core to the
# visitors. Set TF_NUM_INTRAOP_THREADS=2 before starting the app to train faster when you are alone.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import streamlit as st  # noqa: E402

import ui  # noqa: E402
from mnist_models import jobs  # noqa: E402

st.set_page_config(page_title="MNIST Studio", page_icon=":material/draw:", layout="wide")

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/draw.py", title="Draw & classify", icon=":material/draw:"),
    st.Page("app_pages/multimnist.py", title="Two digits at once", icon=":material/layers:"),
    st.Page("app_pages/autoencoders.py", title="Autoencoders & denoising", icon=":material/blur_on:"),
    st.Page("app_pages/robustness.py", title="Robustness lab", icon=":material/rotate_right:"),
    st.Page("app_pages/latent.py", title="Latent explorer", icon=":material/explore:"),
    st.Page("app_pages/generate.py", title="Generate", icon=":material/auto_awesome:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/zoo.py", title="Model zoo", icon=":material/table_view:"),
    st.Page("app_pages/classroom.py", title="Class", icon=":material/school:", url_path="class"),
]


@st.cache_resource
def _startup() -> list:
    """Once per server process: keep Keras state between script runs, remove what a killed save left behind."""
    ui.keep_keras_state_between_runs()
    return jobs.clean_orphans_at_startup()
ui.keep_class_member()


_startup()

st.navigation(PAGES).run()
