"""Training page: retrain any model of the zoo for a few epochs and watch it learn, live."""

import uuid

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from mnist_models import catalogue, jobs, store, transfer
from mnist_models.base import to_float
from mnist_models.presets import PRESETS
from mnist_models.training import TrainSettings

SIZES = {"5k images": 5000, "20k images": 20000, "all 60k": 0}
STARTS = {"scratch": "Scratch: watch it learn from noise",
          "in_use": "The weights in use: continue them",
          "in_use_mnist": "The MNIST weights in use: adapt them to the dataset chosen"}

st.title("Train")
st.caption("Retrain a model on this machine's CPU. It trains in the background: other pages keep working. "
           "Results go to a folder of your own and never overwrite the shipped weights.")
owner = st.session_state.setdefault("owner", f"session {uuid.uuid4().hex[:4]}")

job = jobs.current()
busy = job is not None and job.running


def start(settings: TrainSettings, config: dict | None = None) -> None:
    """Start a training for this visitor, or say why not: nothing is lost, the form keeps its values."""
    source = settings.init_dataset or settings.dataset
    if settings.init != "scratch" and store.zoo_entry(
            settings.model, source, store.active_folder(settings.model, source)).status == "not trained":
        st.error(f"There are no {catalogue.SPECS[settings.model].title} weights on {source} to start from: "
                 "start from scratch.")
        return
    try:
        st.session_state["my_job"] = jobs.start(settings, owner, config=config).id
    except jobs.TrainingBusyError as err:
        st.warning(f"{err}. Watch its progress below; you can start yours when it ends.")
    except ValueError as err:
        st.error(f"These settings cannot train: {err}")


st.markdown("**One click:** trainings sized for this 2-core CPU, with the time each took here.")
preset_columns = st.columns(2)  # two a row: the labels (with their times) fit at laptop width
for index, preset in enumerate(PRESETS):
    column = preset_columns[index % 2]
    took = preset.seconds
    duration = "" if not took else f" · ~{took:.0f} s" if took < 90 else f" · ~{took / 60:.1f} min"
    if column.button(f"{preset.title}{duration}", key=f"preset_{preset.key}", help=preset.what, disabled=busy,
                     width="stretch"):
        start(preset.settings, preset.config)

with st.form("train_form", border=True):
    cols = st.columns(3)
    name = cols[0].selectbox("Model", list(catalogue.SPECS), key=ui.kept("train_model", "cnn"),
                             format_func=lambda n: catalogue.SPECS[n].title)
    dataset = cols[1].selectbox("Dataset", ["mnist", "fashion"], key=ui.kept("train_dataset", "mnist"))
    size = cols[2].radio("Training-set size", list(SIZES), key=ui.kept("train_size", "5k images"), horizontal=True)
    cols = st.columns(3)
    epochs = cols[0].number_input("Epochs", 1, 50, key=ui.kept("train_epochs", 1))
    batch_size = cols[1].select_slider("Batch size", [16, 32, 64, 100, 128, 256, 512],
                                       key=ui.kept("train_batch", 128))
    learning_rate = cols[2].select_slider("Learning rate", [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
                                          key=ui.kept("train_lr", 0.0),
                                          format_func=lambda v: f"{v:g}" if v else "model's own",
                                          help="“model's own” is the rate its shipped weights were trained with "
                                               "(2e-4 for the GANs, 1e-3 for the others)")
    start_from = st.radio("Start from", list(STARTS), format_func=STARTS.get, key=ui.kept("train_init", "scratch"),
                          horizontal=True, help="Scratch shows learning from the very beginning; the weights in use "
                          "(shipped, or yours if you chose them) let you continue a model or fine-tune it on "
                          "another dataset, e.g. the MNIST CNN on Fashion-MNIST.")
    submitted = st.form_submit_button("Train", type="primary", disabled=busy, icon=":material/play_arrow:",
                                      key="train_submit")

if submitted:
    start(TrainSettings(model=name, dataset=dataset, epochs=int(epochs), batch_size=int(batch_size),
                        learning_rate=float(learning_rate), lr_decay=1.0, train_size=SIZES[size],
                        init="scratch" if start_from == "scratch" else "in_use",
                        init_dataset="mnist" if start_from == "in_use_mnist" else ""))


def loss_figure(snapshot) -> go.Figure:
    frame = pd.DataFrame(snapshot.batches)
    fig = go.Figure()
    for column in [c for c in frame.columns if c not in ("step", "epoch")]:
        fig.add_trace(go.Scatter(x=frame["step"].tolist(), y=frame[column].tolist(), mode="lines+markers", name=column,
                                 marker=dict(size=3), yaxis="y2" if "accuracy" in column else "y",
                                 customdata=frame["epoch"].tolist(),
                                 hovertemplate="batch %{x} (epoch %{customdata})<br>%{y:.4g}"))
    steps = max(1, snapshot.total_steps // max(1, snapshot.settings["epochs"]))
    for epoch in range(1, int(frame["step"].max()) // steps + 1):  # where each epoch ended
        fig.add_vline(x=epoch * steps, line_dash="dot", line_color="grey", annotation_text=f"epoch {epoch}",
                      annotation_position="top left")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="batch (dotted: end of an epoch)",
                      yaxis=dict(title="loss (running mean over the epoch)"),
                      yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1], tickformat=".0%",
                                  showgrid=False),
                      legend=dict(orientation="h", y=1.2))
    return fig


def curve_help(model: str, names) -> str:
    """One line per plotted curve: what it measures for this model."""
    known = catalogue.SPECS[model].model_class.metric_help
    return "  \n".join(f"**{name}**: {known[name]}" for name in names if name in known)


def show_previews(snap, job_id: str) -> None:
    """The newest preview, a slider back through all of them, and (for pictures) the strip as a GIF."""
    previews = snap.previews
    last = len(previews) - 1
    key, follow = f"preview_{job_id}", f"preview_{job_id}_follow"
    if st.session_state.get(follow, True):
        ui.set_kept(key, last)  # follows the newest until the person moves the slider back

    def moved() -> None:  # runs before the script, with the value the person chose among the previews then shown
        st.session_state[follow] = st.session_state[key] >= last

    pick = ui.slider("Preview", 0, max(last, 1), key=key, default=last, choices=range(last + 1),
                     disabled=last == 0, on_change=moved,
                     help="Scrub through the previews taken so far; at the right end it follows the newest.")
    preview = previews[pick]
    caption = f"after batch {preview.step} (epoch {preview.epochs:.2f})"
    if preview.view.ndim == 1:
        show_answers(preview.view, snap.settings["dataset"], caption)
    else:
        ui.image(ui.grid_png(to_float(preview.view), cell=40), caption=caption)
        if snap.status != "running":
            st.download_button("Download the previews as a GIF", lambda: ui.evolution_gif(
                np.stack([p.view for p in previews]), millis=150), file_name=f"{snap.settings['model']}-training.gif",
                mime="image/gif", icon=":material/animated_images:", key="previews_gif")


def show_answers(answers: np.ndarray, dataset: str, caption: str) -> None:
    """A classifier's live picture: its answers on 32 fixed test digits (wrong ones marked) and the confusion
    matrix over all the fixed digits."""
    x_test, y_test = ui.test_set_or_stop(dataset)
    truth = y_test[:len(answers)]
    shown = 32
    ui.image([ui.digit_png(x, 48) for x in to_float(x_test[:shown])], width=48,
             caption=[f"{a}" if a == t else f"{a} ✗" for a, t in zip(answers[:shown], truth[:shown], strict=True)])
    matrix = np.zeros((10, 10), int)
    np.add.at(matrix, (truth, answers), 1)
    fig = go.Figure(go.Heatmap(z=matrix, x=list(range(10)), y=list(range(10)), colorscale="Blues", showscale=False,
                               text=matrix, texttemplate="%{text}",
                               hovertemplate="true %{y}, read %{x}: %{z}<extra></extra>"))
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="read as", yaxis_title="true digit",
                      yaxis_autorange="reversed", xaxis=dict(dtick=1), yaxis=dict(dtick=1))
    st.plotly_chart(fig, key="confusion")
    st.caption(f"{caption}: {np.mean(answers == truth):.0%} of {len(answers)} fixed test digits read right "
               f"(✗: wrong); the confusion matrix counts them.")


def show_before_after(snap) -> None:
    """The same fixed inputs through the weights in use before the training and through the new ones."""
    before, after = snap.before_view, snap.after_view
    if after is None:
        return
    st.subheader("Before and after, on the same inputs")
    if after.ndim == 1:  # a classifier's answers on the fixed test digits: the first 16 shown
        before, after = (None if before is None else before[:16]), after[:16]
        x_test, y_test = ui.test_set_or_stop(snap.settings["dataset"])
        changed = int(np.sum(before != after)) if before is not None else 0
        captions = [f"{'→'.join(map(str, dict.fromkeys([int(b), int(a)])))}{' ✱' if b != a else ''}"
                    for b, a in zip(before if before is not None else after, after, strict=True)]
        ui.image([ui.digit_png(x, 48) for x in to_float(x_test[:len(after)])], caption=captions, width=48)
        st.caption(f"Each test image with the digit read before → after the training (✱: changed, {changed} of "
                   f"{len(after)}); right answers: {np.mean(after == y_test[:len(after)]):.0%} after"
                   + (f", {np.mean(before == y_test[:len(after)]):.0%} before." if before is not None else "."))
        return
    cols = st.columns(2)
    for col, label, grid in ((cols[0], "before: the weights in use", before), (cols[1], "after: yours", after)):
        if grid is not None:
            with col:
                ui.image(ui.grid_png(to_float(grid), cell=36), caption=label)


def show_job():
    current = jobs.current()
    if current is None:
        st.info("No training yet. Pick a model and press **Train**.")
        return
    snap = current.store.snapshot()
    mine = st.session_state.get("my_job") == current.id
    settings = snap.settings
    who = "Your" if mine else f"{snap.owner}'s"
    st.subheader(f"{who} training: {catalogue.SPECS[settings['model']].title} on {settings['dataset']}")
    done = snap.steps_done / max(snap.total_steps, 1)
    eta = f" · about {snap.eta:.0f} s left" if snap.eta is not None else ""
    st.progress(min(done, 1.0), text=f"{snap.status} · batch {snap.steps_done}/{snap.total_steps} · "
                                     f"{snap.elapsed:.0f} s{eta}")
    if current.running and mine:
        st.button("Stop", icon=":material/stop:", on_click=current.stop, key="stop_training",
                  disabled=snap.status == "stopping")
    if snap.previews:
        show_previews(snap, current.id)
        if snap.elapsed > 0:
            st.caption(f"{len(snap.previews)} previews so far, taken in {snap.preview_seconds:.1f} s of "
                       f"{snap.elapsed:.0f} s ({snap.preview_seconds / snap.elapsed:.1%} of the time).")
    if snap.batches:
        st.plotly_chart(loss_figure(snap), key="loss_chart")
        st.caption(f"{len(snap.batches)} points plotted")
        st.markdown(curve_help(settings["model"], snap.batches[-1]))
    if snap.status == "failed":
        st.error(f"Training failed and nothing was saved: {snap.message}")
    elif not current.running:
        st.success(snap.message)
        model_class = catalogue.SPECS[settings["model"]].model_class
        key = model_class.key_metric
        if key in snap.after:
            before = snap.before.get(key)
            st.metric(f"{key} on the full test set", f"{snap.after[key]:.4g}",
                      delta=None if before is None else f"{snap.after[key] - before:+.4g} vs the weights in use",
                      delta_color="normal" if model_class.higher_is_better else "inverse")
        show_before_after(snap)
        if mine:
            st.download_button("Download these weights", lambda: transfer.export_zip(
                settings["model"], settings["dataset"], store.USER_WEIGHTS_DIR), icon=":material/download:",
                file_name=f"{settings['model']}-{settings['dataset']}-weights.zip", mime="application/zip",
                key="download_weights", help="A .zip with the weights files and their manifest entry; "
                "`python -m mnist_models import-weights FILE.zip` installs it in another studio, after checking it.")
            use = store.uses_user_weights(settings["model"], settings["dataset"])
            cols = st.columns(2)
            cols[0].button("Use my weights", disabled=use, key="use_mine", on_click=store.choose_user_weights,
                           args=(settings["model"], settings["dataset"], True))
            cols[1].button("Restore shipped", disabled=not use, key="use_shipped",
                           on_click=store.choose_user_weights, args=(settings["model"], settings["dataset"], False))
            st.caption("Every page uses the weights chosen here, for every visitor of this server.")
    if st.session_state.get("seen_running") and not current.running:
        st.session_state["seen_running"] = False
        st.rerun()  # re-enable the form once the job has ended
    st.session_state["seen_running"] = current.running


st.fragment(show_job, run_every=1.0 if (jobs.current() is not None and jobs.current().running) else None)()
