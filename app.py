"""MNIST Studio: the page list and the shared sidebar. Pages live in pages/ and call mnist_models."""

import streamlit as st

st.set_page_config(page_title="MNIST Studio", page_icon="✏️", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
]

st.navigation(PAGES).run()
