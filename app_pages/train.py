"""Training page: retrain any model of the zoo for a few epochs and watch it learn, live."""

import uuid

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from mnist_models import jobs, registry
from mnist_models.base import to_float
from mnist_models.training import TrainSettings

SIZES = {"5k images": 5000, "20k images": 20000, "all 60k": 0}

st.title("Train")
st.caption("Retrain a model on this machine's CPU. It trains in the background: other pages keep working. "
           "Results go to a folder of your own and never overwrite the shipped weights.")
owner = st.session_state.setdefault("owner", f"session {uuid.uuid4().hex[:4]}")

job = jobs.current()
busy = job is not None and job.running
with st.form("train_form", border=True):
    cols = st.columns(3)
    name = cols[0].selectbox("Model", list(registry.SPECS), key=ui.kept("train_model", "cnn"),
                             format_func=lambda n: registry.SPECS[n].title)
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
    submitted = st.form_submit_button("Train", type="primary", disabled=busy, icon=":material/play_arrow:")

if submitted:
    settings = TrainSettings(model=name, dataset=dataset, epochs=int(epochs), batch_size=int(batch_size),
                             learning_rate=float(learning_rate), lr_decay=1.0, train_size=SIZES[size])
    try:
        job = jobs.start(settings, owner)
        st.session_state["my_job"] = job.id
    except jobs.TrainingBusyError as err:
        st.warning(f"{err}. Watch its progress below; you can start yours when it ends.")
    except ValueError as err:
        st.error(f"These settings cannot train: {err}")


def loss_figure(snapshot) -> go.Figure:
    frame = pd.DataFrame(snapshot.batches)
    fig = go.Figure()
    for column in [c for c in frame.columns if c not in ("step", "epoch")]:
        fig.add_trace(go.Scatter(x=frame["step"].tolist(), y=frame[column].tolist(), mode="lines+markers", name=column,
                                 marker=dict(size=3), yaxis="y2" if "accuracy" in column else "y"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="batch",
                      yaxis=dict(title="loss (running mean over the epoch)"),
                      yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1], tickformat=".0%",
                                  showgrid=False),
                      legend=dict(orientation="h", y=1.15))
    return fig


def show_before_after(snap) -> None:
    """The same fixed inputs through the weights in use before the training and through the new ones."""
    before, after = snap.before_view, snap.after_view
    if after is None:
        return
    st.subheader("Before and after, on the same inputs")
    if after.ndim == 1:  # a classifier's answers on 16 fixed test images
        x_test, y_test = ui.test_set_or_stop(snap.settings["dataset"])
        changed = int(np.sum(before != after)) if before is not None else 0
        captions = [f"{'→'.join(map(str, dict.fromkeys([int(b), int(a)])))}{' ✱' if b != a else ''}"
                    for b, a in zip(before if before is not None else after, after, strict=True)]
        st.image([ui.digit_png(x, 56) for x in to_float(x_test[:len(after)])], caption=captions, width=56)
        st.caption(f"Each test image with the digit read before → after the training (✱: changed, {changed} of "
                   f"{len(after)}); right answers: {np.mean(after == y_test[:len(after)]):.0%} after"
                   + (f", {np.mean(before == y_test[:len(after)]):.0%} before." if before is not None else "."))
        return
    cols = st.columns(2)
    for col, label, grid in ((cols[0], "before: the weights in use", before), (cols[1], "after: yours", after)):
        if grid is not None:
            col.image(ui.grid_png(grid, cell=36), caption=label)


def show_job():
    current = jobs.current()
    if current is None:
        st.info("No training yet. Pick a model and press **Train**.")
        return
    snap = current.store.snapshot()
    mine = st.session_state.get("my_job") == current.id
    settings = snap.settings
    who = "Your" if mine else f"{snap.owner}'s"
    st.subheader(f"{who} training: {registry.SPECS[settings['model']].title} on {settings['dataset']}")
    done = snap.steps_done / max(snap.total_steps, 1)
    eta = f" · about {snap.eta:.0f} s left" if snap.eta is not None else ""
    st.progress(min(done, 1.0), text=f"{snap.status} · batch {snap.steps_done}/{snap.total_steps} · "
                                     f"{snap.elapsed:.0f} s{eta}")
    if current.running and mine:
        st.button("Stop", icon=":material/stop:", on_click=current.stop, key="stop_training",
                  disabled=snap.status == "stopping")
    if snap.batches:
        st.plotly_chart(loss_figure(snap), key="loss_chart")
        st.caption(f"{len(snap.batches)} points plotted")
    if snap.samples:
        grid = snap.samples[-1]
        st.image(ui.grid_png(np.asarray(grid), cell=48), caption=f"after epoch {len(snap.samples)}")
    if snap.status == "failed":
        st.error(f"Training failed and nothing was saved: {snap.message}")
    elif not current.running:
        st.success(snap.message)
        model_class = registry.SPECS[settings["model"]].model_class
        key = model_class.key_metric
        if key in snap.after:
            before = snap.before.get(key)
            st.metric(f"{key} on the full test set", f"{snap.after[key]:.4g}",
                      delta=None if before is None else f"{snap.after[key] - before:+.4g} vs the weights in use",
                      delta_color="normal" if model_class.higher_is_better else "inverse")
        show_before_after(snap)
        if mine:
            st.download_button("Download these weights", lambda: registry.export_zip(
                settings["model"], settings["dataset"], registry.USER_WEIGHTS_DIR), icon=":material/download:",
                file_name=f"{settings['model']}-{settings['dataset']}-weights.zip", mime="application/zip",
                key="download_weights", help="A .zip with the weights files and their manifest entry; "
                "`python -m mnist_models import-weights FILE.zip` installs it in another studio, after checking it.")
            use = registry.uses_user_weights(settings["model"], settings["dataset"])
            cols = st.columns(2)
            cols[0].button("Use my weights", disabled=use, key="use_mine", on_click=registry.choose_user_weights,
                           args=(settings["model"], settings["dataset"], True))
            cols[1].button("Restore shipped", disabled=not use, key="use_shipped",
                           on_click=registry.choose_user_weights, args=(settings["model"], settings["dataset"], False))
            st.caption("Every page uses the weights chosen here, for every visitor of this server.")
    if st.session_state.get("seen_running") and not current.running:
        st.session_state["seen_running"] = False
        st.rerun()  # re-enable the form once the job has ended
    st.session_state["seen_running"] = current.running


st.fragment(show_job, run_every=1.0 if (jobs.current() is not None and jobs.current().running) else None)()
