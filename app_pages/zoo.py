"""Model zoo: every shipped model, its test metrics, size and training cost, from weights/manifest.json."""

import streamlit as st

from mnist_models import ood, store

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

scored = [e for e in entries if any(k.startswith(ood.METRIC_PREFIX) for k in e.metrics)]
if scored:
    st.subheader("Handwriting that is not MNIST's")
    st.dataframe([{"model": e.title, "MNIST test": e.metrics.get("test_accuracy"),
                   **{name: e.metrics.get(ood.METRIC_PREFIX + name) for name in ood.SETS}} for e in scored],
                 hide_index=True, column_config={
                     column: st.column_config.NumberColumn(format="percent") for column in ("MNIST test", *ood.SETS)})
    st.caption("Accuracy on digits drawn unlike MNIST's, each through the same path as a drawing on the canvas: "
               "test digits shrunk to 8×8 and enlarged back (blocky8), redrawn along their skeleton with a much "
               "thinner and a much thicker pen (thin, thick), and digits drawn stroke by stroke from templates "
               "(templates); 2,000 of each, seeded. Neither model was trained or chosen on them: "
               "`python -m mnist_models evaluate robustness --json` reproduces them.")
