"""Landing page: what the studio is, and whether its data and models are ready."""

import streamlit as st

from mnist_models import data, registry

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
manifest = registry.read_manifest()
rows = []
for name, spec in registry.SPECS.items():
    for dataset in spec.datasets:
        entry = manifest.get(registry.stem(name, dataset))
        metric = spec.model_class.key_metric
        rows.append({
            "model": spec.title,
            "name": name,
            "dataset": dataset,
            metric.replace("_", " "): entry["metrics"].get(metric) if entry else None,
            "status": "shipped" if entry else f"not trained: python -m mnist_models train {name} --dataset {dataset}",
        })
st.dataframe(rows, hide_index=True)
