"""The zoo's catalogue: every model's name, class, datasets, title and shipped recipe (each family's `SPECS`),
and building a model from code."""

from __future__ import annotations

from . import autoencoders, capsnet, classifiers, gans, judge, multimnist, vae
from .base import ModelSpec, ZooModel

SPECS: dict[str, ModelSpec] = {
    spec.name: spec for spec in [*classifiers.SPECS, *capsnet.SPECS, *autoencoders.SPECS, *vae.SPECS, *gans.SPECS,
                                  *multimnist.SPECS, *judge.SPECS]
}


def spec(name: str) -> ModelSpec:
    if name not in SPECS:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(SPECS)}")
    return SPECS[name]


def stem(name: str, dataset: str) -> str:
    return f"{name}-{dataset}"


def rebuild_command(name: str, dataset: str) -> str:
    """The command that runs the shipped recipe, every stage (`--dry-run` prints it)."""
    return f"python -m mnist_models train {name} --dataset {dataset}"


def build(name: str, dataset: str = "mnist", config: dict | None = None, saved: bool = False) -> ZooModel:
    """A fresh, untrained model built from code: `config` overrides the config its recipe's first stage starts
    from. A `saved` config (from a manifest) is complete as it was written: a field it lacks was added later and
    takes the config class's default, the behaviour it was trained with, not what the recipe now asks of new runs."""
    model_spec = spec(name)
    if dataset not in model_spec.datasets:
        raise ValueError(f"{name} is available for {', '.join(model_spec.datasets)}, not {dataset!r}")
    cls = model_spec.model_class
    base = {} if saved else model_spec.config(dataset, through=0)
    return cls(cls.config_class.from_dict({**base, **(config or {})}), dataset=dataset)
