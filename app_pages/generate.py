"""Generate: GAN samples by class, typed numbers in handwriting, grids, interpolations, and how each GAN learned."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
from mnist_models import catalogue, store
from mnist_models.base import to_float
from mnist_models.data import CLASS_NAMES

CONDITIONAL = {"acgan": "ACGAN", "aeacgan": "AE-AC-GAN"}
ALL_GANS = {"gan_mlp": "MLP GAN", "dcgan": "DCGAN", **CONDITIONAL}

st.title("Generate")
st.caption("Every image here is new: drawn by a GAN's generator from random noise (and a class, for the "
           "conditional ones). Each seed always gives the same images.")


def seed_picker(key: str) -> int:
    """A seed box and a Resample button that moves it on."""
    st.button("Resample", key=f"{key}_resample", icon=":material/casino:",
              on_click=lambda: ui.set_kept(key, st.session_state[ui.kept(key, 0)] + 1))
    return int(st.number_input("Seed", 0, 1_000_000, key=ui.kept(key, 0)))


def dataset_picker(name: str, key: str) -> str:
    datasets = catalogue.spec(name).datasets
    return datasets[0] if len(datasets) == 1 else ui.dataset_picker(datasets, key)


def show_grid(images: np.ndarray, caption: str, file_name: str, cell: int = 56) -> None:
    png = ui.grid_png(images, cell=cell)
    ui.image(png, caption=caption)
    st.download_button("Download PNG", png, file_name=file_name, mime="image/png", key=f"dl_{file_name}",
                       icon=":material/download:")


SCORERS = {"": "the project's CNN",
           "_judge": "the judge, a ResNet classifier no model was trained, stopped or chosen with"}


def score_row(scores: dict, suffix: str, scorer: str) -> None:
    """One row of sample-quality figures, all measured by one classifier (`suffix` picks its metrics)."""
    def get(name):
        return scores.get(name + suffix)

    st.caption(f"Measured by {scorer}:")
    cols = st.columns(5)
    cols[0].metric("FID (lower is better)", f"{get('fid'):.1f}", help=f"Fréchet distance between {scorer}'s "
                   f"features of 10,000 samples and of the test set; real training images score {get('fid_real'):.2f}.")
    cols[1].metric("Inception score", f"{get('inception_score'):.2f}", help="How confidently and how evenly "
                   f"{scorer} sorts 10,000 samples into classes (at most 10); the real test set scores "
                   f"{get('inception_score_real'):.2f}.")
    cols[2].metric("Share of each class", f"{get('class_fraction_min'):.0%}–{get('class_fraction_max'):.0%}",
                   help="The rarest and the most common class among the samples: 10 % each is perfectly "
                        "balanced, far apart means mode collapse.")
    if get("class_diversity") is not None:
        cols[3].metric("Variety within a class", f"{get('class_diversity'):.2f}", help="How varied the samples "
                       "of one class are, against real test digits (1.00). Near 0, the model draws about one "
                       "image per class whatever the noise: a collapse the other scores cannot see.")
    if get("class_accuracy") is not None:
        cols[4].metric("Drawn as asked", f"{get('class_accuracy'):.1%}", help="How often a sample is read as "
                       "the class the generator was asked for.")
    elif get("code_purity") is not None:
        cols[4].metric("One digit per code", f"{get('code_purity'):.0%}", help="How often a sample is the digit "
                       "its categorical code draws most: the model was never shown a label, so this is how far it "
                       "found the ten digits on its own.")


@st.cache_data(max_entries=256, show_spinner=False)
def class_sheet(name: str, dataset: str, label: int, seed: int, weights: str) -> np.ndarray:
    """32 samples of one class, made once per model, class, seed and weights version (every visitor who asks
    for them sees the same ones)."""
    return ui.model_or_stop(name, dataset).generate_class([label] * 32, seed=seed).reshape(4, 8, 28, 28)


@st.fragment
def by_class():
    """A GAN asked for a class, every class, or a typed number (a change here reruns only this tab)."""
    controls, output = st.columns([1, 2], gap="large")
    with controls:
        name = st.radio("Model", list(CONDITIONAL), format_func=CONDITIONAL.get, key=ui.kept("cond_model", "acgan"),
                        horizontal=True)
        dataset = dataset_picker(name, "cond_dataset")
        names = CLASS_NAMES[dataset]
        mode = st.radio("Draw", ["One class", "All classes", "A typed number"], key=ui.kept("cond_mode", "One class"))
        seed = seed_picker("cond_seed")
    gan = ui.model_or_stop(name, dataset)
    with output:
        if mode == "One class":
            label = st.selectbox("Class", range(10), format_func=lambda c: f"{c}: {names[c]}" if dataset != "mnist"
                                 else str(c), key=ui.kept("cond_class", 0))
            images = class_sheet(name, dataset, label, seed, store.active_version(name, dataset)[1])
            show_grid(images, f"32 samples of class {names[label]} (seed {seed})", f"{name}-{dataset}-class{label}-"
                      f"seed{seed}.png")
        elif mode == "All classes":
            rows = np.stack([gan.class_sweep(seed=seed + row) for row in range(6)])
            show_grid(rows, "Each row keeps one noise vector and sweeps the class 0–9: the style stays, the class "
                      "changes", f"{name}-{dataset}-sweep-seed{seed}.png")
        elif dataset != "mnist":
            st.info("Typed numbers are written by the MNIST models: switch the dataset to MNIST.")
        else:
            text = st.text_input("Number", max_chars=40, key=ui.kept("cond_number", "2026"))
            try:
                row = gan.render_number(text, seed=seed)
            except ValueError as err:
                st.warning(f"{err}.")
            else:
                show_grid(row.reshape(28, -1, 28).transpose(1, 0, 2)[None], f"“{text.strip()}” in generated "
                          "handwriting", f"{name}-{dataset}-{text.strip()}-seed{seed}.png", cell=72)

@st.fragment
def grids():
    """Sample grids, interpolations, codes and the AE-AC-GAN's redrawing of your drawing."""
    controls, output = st.columns([1, 2], gap="large")
    with controls:
        name = st.radio("Model", list(ALL_GANS), format_func=ALL_GANS.get, key=ui.kept("grid_model", "gan_mlp"),
                        horizontal=True)
        dataset = dataset_picker(name, "grid_dataset")
        seed = seed_picker("grid_seed")
        steps = ui.slider("Interpolation steps", 4, 16, key="grid_steps", default=10)
    gan = ui.model_or_stop(name, dataset)
    with output:
        show_grid(gan.generate(64, seed=seed).reshape(8, 8, 28, 28), f"64 samples from {ALL_GANS[name]} "
                  f"(seed {seed})", f"{name}-{dataset}-grid-seed{seed}.png")
        path = gan.interpolate(seed, seed + 1, steps=steps)
        show_grid(path[None], f"From the noise of seed {seed} to that of seed {seed + 1}, in {steps} steps",
                  f"{name}-{dataset}-interpolation-seed{seed}.png", cell=64)
        if gan.config.categories:
            rows = np.stack([gan.class_sweep(seed=seed + row) for row in range(6)])
            show_grid(rows, f"The {gan.config.categories} values of its categorical code, one per column; each row "
                      "keeps one noise vector. No labels were used in training: the model learned to give each value "
                      "a kind of digit on its own (InfoGAN)", f"{name}-{dataset}-codes-seed{seed}.png")
    drawing = st.session_state.get("drawing")
    if name == "aeacgan" and dataset == "mnist":
        st.subheader("Your drawing, encoded and redrawn by the AE-AC-GAN")
        if drawing is None:
            st.info("Draw a digit on the **Draw & classify** page and it shows up here, redrawn by the generator.")
        else:
            guess = int(gan.classify(drawing)[0].argmax())
            redrawn = np.stack([drawing, gan.autoencode(drawing)[0]])
            show_grid(redrawn[None], f"left: your drawing · right: redrawn as a {guess} (the discriminator's class)",
                      "aeacgan-your-drawing.png", cell=112)

@st.fragment
def evolution():
    """Every shipped GAN's fixed-noise samples after each epoch, and its losses."""
    name = st.radio("Model", list(ALL_GANS), format_func=ALL_GANS.get, key=ui.kept("evo_model", "gan_mlp"),
                    horizontal=True)
    dataset = dataset_picker(name, "evo_dataset")
    gan = ui.model_or_stop(name, dataset)
    folder, _ = store.active_version(name, dataset)
    entry = store.zoo_entry(name, dataset, folder)
    scores = entry.metrics
    for suffix, scorer in SCORERS.items():
        if "fid" + suffix in scores:
            score_row(scores, suffix, scorer)
    frames = np.asarray(gan.evolution)
    if not len(frames):
        st.info("These weights were saved without per-epoch samples.")
    else:
        left, right = st.columns(2, gap="large")
        last = max(entry.epochs, len(frames))
        first = last - len(frames) + 1  # > 1 when the samples of the first epochs were not kept
        with left:
            epoch = last
            if len(frames) > 1:
                epoch = ui.slider("After epoch", first, last,  # a key per model: each has its own range
                                  key=f"evo_epoch_{name}_{dataset}", default=last, choices=range(first, last + 1))
            ui.image(ui.grid_png(to_float(frames[epoch - first]), cell=40),
                     caption=f"The same fixed noise after epoch {epoch} of {last}")
            if first > 1:
                st.caption(f"The samples of epochs 1–{first - 1} were not kept: that training was restarted, or "
                           "it started from other weights.")
            # a callable: the GIF (0.1 s to encode) is made when clicked, not on every rerun of this page
            st.download_button("Download the evolution as a GIF", lambda: ui.evolution_gif(frames),
                               file_name=f"{name}-{dataset}-evolution.gif", mime="image/gif",
                               icon=":material/animated_images:", key="evo_gif")
        with right:
            fig = go.Figure()
            for key, values in gan.loss_history.items():
                fig.add_trace(go.Scatter(y=values, x=np.linspace(first - 1, last, len(values)), mode="lines",
                                         name=key))
            fig.update_layout(height=380, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="epoch",
                              yaxis_title="loss (running mean within each epoch)", legend=dict(orientation="h"))
            st.plotly_chart(fig, key="evo_losses")
            st.caption("Discriminator and generator losses during training, every 20 batches.")


conditional_tab, grids_tab, evolution_tab = st.tabs(["By class", "Grids & interpolation", "How they learned"])
with conditional_tab:
    by_class()
with grids_tab:
    grids()
with evolution_tab:
    evolution()
