"""The MNIST studio's model library: data, preprocessing, models, training and metrics (no Streamlit here)."""

from .data import load_dataset
from .registry import WeightsError, load

__all__ = ["load", "load_dataset", "WeightsError"]
