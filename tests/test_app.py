"""Every page through Streamlit's AppTest: it renders, widgets change results, bad input gets a message."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mnist_models import photos, store, transfer
from tests.drawings import canvas_of

APP = "../app.py"


def page(path: str) -> AppTest:
    return AppTest.from_file(f"../app_pages/{path}", default_timeout=120)


def test_home_shows_title_and_data_status():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "✏️ MNIST Studio"
    assert any("mnist: cached" in s.value for s in at.success)


@pytest.mark.slow
def test_draw_page_hint_then_prediction_then_pose(mnist):
    (_, _), (x_test, y_test) = mnist
    at = page("draw.py").run()
    assert not at.exception
    assert any("Draw a digit" in i.value for i in at.info)  # nothing drawn yet: a hint, no prediction

    at.session_state["draw_raw"] = np.zeros((280, 280, 4), np.uint8)  # the canvas after Reset
    at.run()
    assert any("canvas is empty" in i.value for i in at.info)
    assert not any("CNN says" in m.value for m in at.markdown)

    at.session_state["draw_raw"] = canvas_of(x_test[0])  # a 7
    at.run()
    assert not at.exception
    verdict = next(m.value for m in at.markdown if "CNN says" in m.value)
    assert f"CNN says **{y_test[0]}**" in verdict and f"CapsNet says **{y_test[0]}**" in verdict
    assert len(at.slider) == 1  # the stroke width; the 16 pose sliders are drawn once opened
    at.toggle(key="pose_open").set_value(True).run()
    assert len(at.slider) == 1 + 16
    # how the capsules routed: three iterations' maps of the winner (the 7) against the runner-up, and a sentence
    # that says what the colours mean
    assert any(h.value == "How the capsules routed" for h in at.subheader)
    routed = next(c.value for c in at.caption if "orange" in c.value)
    assert routed.startswith(f"Capsule {y_test[0]} (orange) against capsule ") and "blue" in routed
    images = at.get("image")
    assert any([i.caption for i in im.proto.imgs] == ["iteration 1", "iteration 2", "iteration 3"] for im in images)

    before = at.session_state["pose_class"]
    assert not any(t.key == "pose_strong" for t in at.toggle)  # offered only for a losing capsule
    at.selectbox(key="pose_class").set_value(3).run()
    assert at.session_state["pose_class"] == 3 != before
    # a losing capsule is short: the page says so, and offers to draw it at the winner's length
    assert any(c.value.startswith("Capsule 3 is 0.") and "faintly" in c.value for c in at.caption)
    faint = next(i for i in at.get("image") if i.proto.imgs[0].caption == "redrawn from capsule 3")
    at.toggle(key="pose_strong").set_value(True).run()
    strong = next(i for i in at.get("image")
                  if i.proto.imgs[0].caption == "redrawn from capsule 3 at the winner's length")
    assert strong.proto.imgs[0].url != faint.proto.imgs[0].url
    at.slider(key="pose_4").set_value(0.25).run()
    assert not at.exception and at.session_state["pose_4"] == 0.25
    at.button[0].click().run()  # reset pose
    assert at.session_state["pose_4"] == 0.0


def test_draw_page_upload_mode_starts_with_a_hint():
    at = page("draw.py").run()
    at.radio(key="draw_mode").set_value("Upload").run()
    assert not at.exception
    assert any("Upload a picture of a digit" in i.value for i in at.info)


def test_draw_page_shows_how_a_photo_was_cleaned_and_says_when_no_digit_is_there(mnist):
    """A photo (kept as the camera or the uploader hands it over): the picture, the ink found, the 28×28 input
    side by side, and the verdict; a blank page gets a message, not a guess."""
    (_, _), (x_test, y_test) = mnist
    photo = photos.render(photos._handwritten(x_test[0], 200), "shadow_band", np.random.default_rng(1))
    at = page("draw.py")
    at.session_state["kept::draw_mode"] = "Camera"
    at.session_state["draw_camera_kept"] = ("camera.jpg", photo)
    at.run()
    assert not at.exception and not at.error
    assert [c for i in at.get("image") for c in [img.caption for img in i.proto.imgs]][:3] == [
        "your picture", "the ink found", "what the models see"]
    assert f"CNN says **{y_test[0]}**" in next(m.value for m in at.markdown if "CNN says" in m.value)
    blank = photos.render(np.zeros((50, 50), np.float32), "uneven_light", np.random.default_rng(2))
    at.session_state["draw_camera_kept"] = ("blank.jpg", blank)
    at.run()
    assert not at.exception and "no ink that looks like a digit" in at.warning[0].value.lower()
    assert not any("CNN says" in m.value for m in at.markdown)


@pytest.mark.slow
def test_autoencoder_page_reacts_to_noise(mnist):
    at = page("autoencoders.py").run()
    assert not at.exception and not at.error
    first = at.dataframe[0].value
    assert list(first["image"]) == ["noisy", "vanilla", "multilayer", "conv", "sparse", "denoising"]
    assert first.set_index("image").loc["denoising", "PSNR (dB)"] > first.set_index("image").loc["noisy", "PSNR (dB)"]
    at.slider(key="ae_amount").set_value(0.5).run()
    assert not at.dataframe[0].value.equals(first)
    at.selectbox(key="ae_noise").set_value("gaussian").run()
    at.number_input(key="ae_index").set_value(7).run()
    assert not at.exception


@pytest.mark.slow
def test_autoencoder_page_offers_your_drawing(mnist):
    (_, _), (x_test, _) = mnist
    at = page("autoencoders.py")
    at.session_state["drawing"] = x_test[3].astype(np.float32) / 255
    at.run()
    assert "Your drawing" in at.radio(key="ae_source").options
    at.radio(key="ae_source").set_value("Your drawing").run()
    assert not at.exception


@pytest.mark.slow
def test_latent_page_sliders_and_dataset_switch(mnist):
    at = page("latent.py").run()
    assert not at.exception and not at.error
    at.slider(key="z1").set_value(1.5).run()
    captions = [img.caption for i in at.get("image") for img in i.proto.imgs]
    assert "decoded from (+1.50, +0.00)" in captions and "where that is among the test digits" in captions
    at.slider(key="grid_n").set_value(7).run()
    assert not at.exception
    at.session_state["latent_dataset"] = "fashion"
    at.run()
    assert not at.exception and not at.error


@pytest.mark.slow
def test_generate_page_classes_numbers_grids_and_evolution(mnist):
    at = page("generate.py").run()
    assert not at.exception and not at.error
    first = at.get("image")[0].proto.imgs[0].url
    at.selectbox(key="cond_class").set_value(3).run()
    assert "class 3" in at.get("image")[0].proto.imgs[0].caption
    assert at.get("image")[0].proto.imgs[0].url != first
    at.button(key="cond_seed_resample").click().run()
    assert at.number_input(key="cond_seed").value == 1
    at.radio(key="cond_mode").set_value("A typed number").run()
    assert not at.exception and not at.warning
    at.text_input(key="cond_number").set_value("20x6").run()
    assert "digits" in at.warning[0].value  # a friendly message, not a traceback
    at.radio(key="cond_mode").set_value("All classes").run()
    at.session_state["cond_dataset"] = "fashion"
    at.radio(key="cond_model").set_value("aeacgan").run()
    assert not at.exception and not at.error
    at.radio(key="grid_model").set_value("aeacgan").run()
    assert any("Draw a digit" in i.value for i in at.info)  # no drawing yet
    at.session_state["drawing"] = mnist[1][0][0].astype(np.float32) / 255
    at.run()
    assert any("redrawn as a" in i.proto.imgs[0].caption for i in at.get("image"))
    at.radio(key="grid_model").set_value("dcgan").run()
    assert any("categorical code" in i.proto.imgs[0].caption for i in at.get("image"))  # the codes it found
    at.radio(key="evo_model").set_value("dcgan").run()
    entry = store.read_manifest()["dcgan-mnist"]
    first = int(at.slider(key="evo_epoch_dcgan_mnist").min)
    assert at.slider(key="evo_epoch_dcgan_mnist").max == entry["epochs_total"]
    at.slider(key="evo_epoch_dcgan_mnist").set_value(first).run()
    assert not at.exception and not at.error
    assert any(f"after epoch {first} of" in i.proto.imgs[0].caption for i in at.get("image"))
    assert [m.value for m in at.metric][:1] == [f"{entry['metrics']['fid']:.1f}"]  # the shipped scores
    assert any(m.label == "One digit per code" for m in at.metric)
    at.radio(key="evo_model").set_value("acgan").run()
    assert any(m.label == "Drawn as asked" for m in at.metric)
    assert len(at.get("download_button")) >= 4


@pytest.mark.slow
def test_zoo_home_and_cli_list_the_same_entries_from_one_accessor():
    import subprocess
    import sys

    entries = [(e.name, e.dataset) for e in store.zoo()]
    assert {"cnn", "capsnet", "vae", "ae_denoising", "acgan", "aeacgan", "capsnet_multi"} <= {n for n, _ in entries}
    zoo = page("zoo.py").run()
    home = AppTest.from_file(APP, default_timeout=60).run()
    assert not zoo.exception and not home.exception
    for at in (zoo, home):
        table = at.dataframe[0].value
        assert list(zip(table["name"], table["dataset"], strict=True)) == entries
    assert "Handwriting that is not MNIST's" in [h.value for h in zoo.subheader]
    ood_table = zoo.dataframe[1].value
    assert sorted(ood_table["model"]) == sorted(store.zoo_entry(n, "mnist").title for n in ("cnn", "capsnet"))
    assert ood_table["MNIST test"].min() > 0.99 and ood_table["blocky8"].min() > 0.95
    listed = subprocess.run([sys.executable, "-m", "mnist_models", "list"], capture_output=True, text=True,
                            cwd=store.WEIGHTS_DIR.parent, timeout=300).stdout.splitlines()
    assert [tuple(line.split()[:2]) for line in listed] == entries


def test_home_and_zoo_explain_an_unreadable_manifest(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").write_text("{ not json")
    monkeypatch.setattr(store, "WEIGHTS_DIR", tmp_path)
    for at in (AppTest.from_file(APP, default_timeout=60).run(), page("zoo.py").run()):
        assert not at.exception and "unreadable" in at.error[0].value


def test_robustness_page_sliders_and_sweep(mnist):
    at = page("robustness.py").run()
    assert not at.exception and not at.error
    before = [m.value for m in at.metric]
    at.slider(key="rob_rotation").set_value(60)
    at.slider(key="rob_scale").set_value(0.5).run()
    assert [m.value for m in at.metric] != before  # the confidences moved
    at.selectbox(key="rob_sweep").set_value("scale").run()
    at.slider(key="rob_thickness").set_value(2).run()
    assert not at.exception


@pytest.mark.slow
def test_train_page_starts_a_job_shows_before_after_and_hands_out_the_weights(tmp_path, monkeypatch):
    """Through the app: the form's values survive a visit to another page once submitted; the finished job shows
    the same inputs before and after, and its weights download as a zip that another studio can import."""
    import io

    from mnist_models import jobs, store

    monkeypatch.setattr(store, "USER_WEIGHTS_DIR", tmp_path / "user")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    at.selectbox(key="train_model").set_value("ae_vanilla")
    at.radio(key="train_size").set_value("5k images")
    at.button(key="train_submit").click().run()
    assert not at.exception and not at.error
    job = jobs.current()
    assert job is not None and job.settings.model == "ae_vanilla" and job.settings.train_size == 5000
    at.switch_page("app_pages/zoo.py").run()
    at.switch_page("app_pages/train.py").run()
    assert at.selectbox(key="train_model").value == "ae_vanilla" and at.radio(key="train_size").value == "5k images"
    job.thread.join(timeout=180)
    at.run()
    assert any("Training finished" in s.value for s in at.success)
    assert any("test_mse" in m.label for m in at.metric)
    captions = [i.proto.imgs[0].caption for i in at.get("image")]
    assert any(c.startswith("before") for c in captions) and any(c.startswith("after") for c in captions)
    snap = job.store.snapshot()
    assert snap.before_view.shape == snap.after_view.shape == (2, 16, 28, 28)
    assert not np.array_equal(snap.before_view[1], snap.after_view[1])  # other weights, other reconstructions
    assert "Download these weights" in [b.label for b in at.get("download_button")]
    assert "Download the previews as a GIF" in [b.label for b in at.get("download_button")]
    key = transfer.import_zip(io.BytesIO(transfer.export_zip("ae_vanilla", "mnist", tmp_path / "user")),
                              tmp_path / "elsewhere")
    assert key == "ae_vanilla-mnist"
    assert store.load_from(tmp_path / "elsewhere", "ae_vanilla").reconstruct(np.zeros((1, 28, 28))).shape == \
        (1, 28, 28)
    at.button(key="use_mine").click().run()
    assert store.uses_user_weights("ae_vanilla", "mnist")


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def class_page(member: dict | None = None, **query) -> AppTest:
    """The Class page inside the whole app (its links name other pages), opened at a link with `query` in it."""
    at = AppTest.from_file(APP, default_timeout=120)
    if member is not None:
        at.session_state["class_member"] = member
    at.run().query_params.update(query)
    return at.switch_page("app_pages/classroom.py").run()


def test_class_page_teacher_round_student_join_and_a_refused_board(tmp_path, monkeypatch):
    from mnist_models import classroom

    monkeypatch.setenv("STUDIO_CLASS_DB", str(tmp_path / "classes.sqlite3"))
    teacher = class_page()
    assert not teacher.exception and any(s.value == "Join a class" for s in teacher.subheader)
    _button(teacher, "Start a class").click().run()
    code, key = teacher.session_state["class_teacher"]["code"], teacher.session_state["class_teacher"]["key"]
    assert teacher.query_params["code"] == code and teacher.query_params["view"] == "board"
    assert any(f"`{code}`" in m.value for m in teacher.markdown)
    assert not any(key in m.value for m in teacher.markdown)  # the key is only in its expander's code block
    teacher.selectbox(key="class_ask").set_value(3).run()
    _button(teacher, "Ask for a 3").click().run()
    assert any(s.value == "Round: a 3" for s in teacher.subheader)

    student = class_page(code=code.lower())
    assert student.text_input[0].value == code  # the join link's code, filled in
    student.text_input[1].set_value("<b>Ann</b>")
    _button(student, "Join").click().run()
    assert any("letters, digits" in e.value for e in student.error)
    student.text_input[1].set_value("Ann_1")
    _button(student, "Join").click().run()
    assert any(r"You are Ann\_1 in class" in s.value for s in student.subheader)
    assert any("asks for **a 3**" in m.value for m in student.markdown)
    token = student.session_state["class_member"]["token"]
    assert student.query_params["student"] == token
    reloaded = class_page(code=code, student=token)  # a reload: a new session, only the address is left
    assert any(r"You are Ann\_1 in class" in s.value for s in reloaded.subheader)
    stale = class_page(code=code, student="not-a-token")
    assert "student" not in stale.query_params and any(s.value == "Join a class" for s in stale.subheader)

    store = classroom.ClassStore(tmp_path / "classes.sqlite3")
    seven = np.zeros((28, 28), np.uint8)
    store.send(student.session_state["class_member"]["token"], seven, np.eye(10)[3], np.eye(10)[5] * 0.8)
    teacher.run()
    assert not teacher.exception
    assert any("1 of 1" in m.value for m in teacher.markdown)  # who answered the round
    captions = [img.caption for i in teacher.get("image") for img in i.proto.imgs]
    assert "Ann_1: CNN 3 · CapsNet 5 ⚠ the models disagree" in captions
    assert any("CNN read 1 of 1 right, the CapsNet 0 of 1" in m.value for m in teacher.markdown)

    intruder = class_page(code=code, view="board", member=student.session_state["class_member"])
    assert any("only the teacher's browser" in e.value for e in intruder.error)
    assert not any(s.value.startswith("Latest drawing") for s in intruder.subheader)

    stranger = class_page()
    stranger.text_input[0].set_value("ABCDEF" if code != "ABCDEF" else "ABCDEG")
    stranger.text_input[1].set_value("Bo")
    _button(stranger, "Join").click().run()
    assert any("no class with the code" in e.value for e in stranger.error)
