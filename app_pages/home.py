"""Landing page: what the studio is, and whether its data and models are ready."""

import streamlit as st

from mnist_models import data, store

st.title("✏️ MNIST Studio")
st.write(
    "Draw a digit and see how a CNN and a Capsule Network read it, redraw it, and where they disagree; "
    "explore autoencoders, a VAE's latent space and GANs trained on MNIST and Fashion-MNIST."
)

st.page_link("app_pages/draw.py", label="Start drawing", icon=":material/draw:")
st.page_link("app_pages/generate.py", label="Generate digits with GANs", icon=":material/auto_awesome:")

st.subheader("Datasets")
for name in data.DATASETS:
    if data.is_cached(name):
        st.success(f"{name}: cached at `{data.cache_path(name)}`", icon="✅")
    else:
        st.warning(f"{name}: not downloaded yet. Run `python -m mnist_models fetch-data --dataset {name}`.",
                   icon="⚠️")

st.subheader("Models")
try:
    entries = store.zoo()
except store.WeightsError as err:
    st.error(str(err))
    st.stop()
st.dataframe([{"model": e.title, "name": e.name, "dataset": e.dataset, "key metric": e.key_metric.replace("_", " "),
               "value": e.key_value,
               "status": e.status if e.status != "not trained" else f"not trained: {e.rebuild}"} for e in entries],
             hide_index=True)
st.page_link("app_pages/zoo.py", label="Every metric, size and training time: the Model zoo",
             icon=":material/table_view:")
