"""Model zoo: every shipped model, its test metrics, size and training cost, from weights/manifest.json."""

import streamlit as st

from mnist_models import store

st.title("Model zoo")
try:
    entries = store.zoo()
except store.WeightsError as err:
    st.error(str(err))
    st.stop()

st.dataframe([{
    "model": e.title, "name": e.name, "dataset": e.dataset,
    "key metric": f"{e.key_metric} = {e.key_value:.4g}" if e.key_value is not None else None,
    "epochs": e.epochs or None, "train minutes": e.train_minutes or None, "s / epoch": e.seconds_per_epoch or None,
    "size MB": e.size_mb or None, "train images": e.train_examples or None,
    "status": e.status if e.status != "not trained" else f"not trained: {e.rebuild}",
    "all metrics": ", ".join(f"{k}={v:.4g}" for k, v in e.metrics.items() if k != "test_examples"),
} for e in entries], hide_index=True)
st.caption("Every model was trained on a 2-core CPU with `python -m mnist_models train NAME`; "
           "`python -m mnist_models evaluate NAME --json` reproduces its metrics on the full test set. What was tried "
           "for each family, and what it did: `docs/training-notes.md` in the repository.")
