"""The MNIST studio's model library: data, preprocessing, models, training and metrics (no Streamlit here).

`load` and `WeightsError` come from `store`, which imports TensorFlow; they are looked up on first use, so
that `python -m mnist_models` can decide how TensorFlow starts (quietly, unless --verbose) before it loads."""

from .data import load_dataset

__all__ = ["load", "load_dataset", "WeightsError"]


def __getattr__(name: str):
    if name in ("load", "WeightsError"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
