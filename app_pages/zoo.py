"""Model zoo: every shipped model, its test metrics, size and training cost, from weights/manifest.json."""

import streamlit as st

from mnist_models import registry

st.title("Model zoo")
try:
    manifest = registry.read_manifest()
except registry.WeightsError as err:
    st.error(str(err))
    st.stop()

rows = []
for name, spec in registry.SPECS.items():
    for dataset in spec.datasets:
        entry = manifest.get(registry.stem(name, dataset))
        if entry is None:
            rows.append({"model": spec.title, "name": name, "dataset": dataset, "key metric": None,
                         "status": f"not trained: python -m mnist_models train {name} --dataset {dataset}"})
            continue
        files = [registry.WEIGHTS_DIR / f["file"] for f in registry.entry_files(entry)]
        size = sum(f.stat().st_size for f in files if f.exists())
        metric = spec.model_class.key_metric
        rows.append({
            "model": spec.title, "name": name, "dataset": dataset,
            "key metric": f"{metric} = {entry['metrics'][metric]:.4g}",
            "epochs": entry.get("epochs_total", entry["epochs_completed"]),
            "train minutes": round(entry.get("seconds_all_runs", entry["seconds_total"]) / 60, 1),
            "s / epoch": round(sum(entry["seconds_per_epoch"]) / max(len(entry["seconds_per_epoch"]), 1)),
            "size MB": round(size / 1e6, 2), "train images": entry["train_examples"], "status": "shipped",
            "all metrics": ", ".join(f"{k}={v:.4g}" for k, v in entry["metrics"].items() if k != "test_examples"),
        })
st.dataframe(rows, hide_index=True)
st.caption("Every model was trained on a 2-core CPU with `python -m mnist_models train NAME`; "
           "`python -m mnist_models evaluate NAME --json` reproduces its metrics on the full test set.")
