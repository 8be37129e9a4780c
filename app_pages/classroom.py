"""Class: a teacher starts a class and gets a join code, a link and a QR code; students join with a nickname and send
drawings from Draw; the teacher's board shows every student's latest drawing with both models' verdicts, rounds
("draw a 7 now") and the class's own confusion matrices, refreshing live (only the board reruns).

Who is who lives in this browser's session (the teacher key, a student's token); everything shared lives in the
class store (mnist_models.classroom: SQLite, or PostgreSQL for replicas on several machines)."""

from __future__ import annotations

import io
import time
from urllib.parse import urlsplit

import numpy as np
import streamlit as st

import ui
from mnist_models import classroom

BOARD_REFRESH_S = 2.0
GRID_COLUMNS = 6

st.title("Class")
store = ui.class_store_or_stop()
store.sweep()  # idle classes close, expired ones go: cheap, and no separate job to run
asked_code = classroom.normalise_code(st.query_params.get("code", ""))
teacher = st.session_state.get(ui.CLASS_TEACHER)
member = st.session_state.get(ui.CLASS_MEMBER)


def join_link(code: str) -> str:
    """This page's address with the code in it, as the visitor's browser sees the app."""
    parts = urlsplit(st.context.url or "http://localhost:8501/class")
    base = parts.path.rsplit("/", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{base}/class?code={code}"


def qr_png(text: str) -> bytes:
    import segno

    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="png", scale=6, border=2, dark="#000000", light="#ffffff")
    return buffer.getvalue()


def refuse_board() -> None:
    st.error(f"This is the board of class {asked_code}: only the teacher's browser that started the class can open "
             "it. To join the class, open the join link or type the code below.")
    st.query_params.pop("view", None)


def join_or_start() -> None:
    join, start = st.columns(2, gap="large")
    with join, st.form("join"):
        st.subheader("Join a class")
        code = st.text_input("Class code", value=asked_code, max_chars=12, placeholder="e.g. K7QW3M",
                             help="Six letters or digits, from your teacher")
        nickname = st.text_input("Nickname", max_chars=classroom.NICKNAME_MAX,
                                 help="Only a nickname: no other personal data is asked or kept")
        if st.form_submit_button("Join", type="primary"):
            try:
                joined, token = store.join(code, nickname)
            except classroom.ClassError as err:
                st.error(str(err))
            else:
                st.session_state[ui.CLASS_MEMBER] = {"code": joined.code, "token": token,
                                                     "nickname": joined.nickname}
                st.query_params["code"] = joined.code
                st.rerun()
    with start:
        st.subheader("Teach a class")
        st.write("Start a class and give your students its code: every drawing they send from **Draw & classify** "
                 "appears on your board with both models' verdicts.")
        if st.button("Start a class", icon=":material/school:"):
            code, key = store.create_class()
            st.session_state[ui.CLASS_TEACHER] = {"code": code, "key": key}
            st.query_params.update({"code": code, "view": "board"})
            st.rerun()
        with st.expander("Reopen my board (after a reload, or from another tab)"):
            with st.form("reopen"):
                code = st.text_input("Class code", value=asked_code, key="reopen_code")
                key = st.text_input("Teacher key", type="password", help="Shown on your board, under Teacher key")
                if st.form_submit_button("Open the board"):
                    try:
                        store.board(code, key, since=10**9)
                    except classroom.ClassError as err:
                        st.error(str(err))
                    else:
                        st.session_state[ui.CLASS_TEACHER] = {"code": classroom.normalise_code(code), "key": key}
                        st.query_params.update({"code": classroom.normalise_code(code), "view": "board"})
                        st.rerun()
    st.caption(f"A class with no activity for {classroom.IDLE_CLOSE_S // 3600} hours closes by itself; an ended "
               f"class's drawings are deleted {classroom.RETENTION_S / 3600:g} hours after it ends, or at once when "
               "the teacher deletes it.")


def student_view() -> None:
    try:
        state = store.state(member["code"])
        store.member(member["token"])
    except classroom.ClassError as err:
        st.warning(str(err))
        st.session_state.pop(ui.CLASS_MEMBER, None)
        st.query_params.pop("student", None)
        return
    st.subheader(f"You are {ui.plain(member['nickname'])} in class {state.code}")
    if state.closed_at is not None:
        st.info("This class has ended: thank you! Your drawings are no longer sent.")
    else:
        st.write(f"Your teacher asks for **{state.round.asks}**." if state.round else
                 "Draw any digit you like until your teacher asks for one.")
        st.page_link("app_pages/draw.py", label="Draw and send", icon=":material/draw:")
        st.caption("On Draw & classify, the **Send to class** button beside the canvas sends your drawing; nothing "
                   "is sent before you press it. This page's address keeps your place: reload it and you are still "
                   "you. Give classmates the join link, not your address.")
    if st.button("Leave the class"):
        st.session_state.pop(ui.CLASS_MEMBER, None)
        st.query_params.clear()
        st.rerun()


def teacher_view() -> None:
    code, key = teacher["code"], teacher["key"]
    try:
        state = store.state(code)
    except classroom.ClassError as err:
        st.warning(str(err))
        st.session_state.pop(ui.CLASS_TEACHER, None)
        return
    link = join_link(code)
    head, qr = st.columns([3, 1])
    with head:
        st.markdown(f"## Class code: `{code}`")
        st.markdown(f"Students join at **{link}** (or open **Class** and type the code).")
        with st.expander("Teacher key"):
            st.code(key, language=None)
            st.caption("Only this key opens the board. It is not in the join link; keep it to reopen the board after "
                       "a reload (Class → Reopen my board).")
    with qr:
        ui.image(qr_png(link), caption="scan to join", width=150)
    if state.closed_at is None:
        round_controls(code, key, state)
    else:
        st.info("This class has ended. Its drawings can still be downloaded until they are deleted "
                f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(state.deleted_after()))}).")
    st.fragment(board, run_every=BOARD_REFRESH_S)(code, key)
    class_files(code, key, state)


def round_controls(code: str, key: str, state: classroom.ClassState) -> None:
    digit_col, ask_col, end_col = st.columns([2, 1, 1], vertical_alignment="bottom")
    with digit_col:
        choice = st.selectbox("Ask the class for", ["any digit", *range(10)], index=8, key="class_ask")
    digit = None if choice == "any digit" else int(choice)
    with ask_col:
        if st.button(f"Ask for {'any digit' if digit is None else f'a {digit}'}", type="primary"):
            store.start_round(code, key, digit)
            st.rerun()
    with end_col:
        if state.round is not None and st.button("End the round"):
            store.end_round(code, key)
            st.rerun()


def board(code: str, key: str) -> None:
    """The live board: only the drawings sent since the last refresh are read."""
    kept = st.session_state.get("class_board")
    if kept is None or kept["code"] != code:
        kept = st.session_state["class_board"] = {"code": code, "cursor": 0, "drawings": [], "png": {}}
    try:
        update = store.board(code, key, since=kept["cursor"])
    except classroom.ClassError as err:
        st.warning(str(err))
        return
    kept["drawings"] += update.drawings
    if update.drawings:
        kept["cursor"] = update.drawings[-1].seq
    drawings, state = kept["drawings"], update.state

    def picture(d: classroom.Drawing, size: int) -> bytes:
        if (d.seq, size) not in kept["png"]:
            kept["png"][(d.seq, size)] = ui.digit_png(d.image / 255.0, size)
        return kept["png"][(d.seq, size)]

    def verdicts(d: classroom.Drawing) -> str:
        mark = " ⚠ the models disagree" if d.disagree else ""
        return f"{d.nickname}: CNN {d.cnn_digit} · CapsNet {d.caps_digit}{mark}"

    by_seq = {d.seq: d for d in drawings}
    if state.spotlight in by_seq:
        shown = by_seq[state.spotlight]
        left, right = st.columns([1, 2])
        with left:
            ui.image(picture(shown, 280), width=280)
        with right:
            st.markdown(f"### On the board: drawing {shown.seq}")
            st.markdown(f"by **{ui.plain(shown.nickname)}**"
                        + (f", asked for a {shown.asked}" if shown.asked is not None else "")
                        + f". CNN reads **{shown.cnn_digit}** ({shown.cnn_confidence:.0%}), CapsNet **"
                        f"{shown.caps_digit}** (capsule length {shown.caps_confidence:.2f}).")
            st.button("Take it down", key="spot_off", on_click=store.show, args=(code, key, None))

    if state.round is not None:
        current_round(code, key, state, [d for d in drawings if d.round_id == state.round.id], update.students,
                      picture)

    st.subheader(f"Latest drawing of each student ({len(update.students)} joined, {state.seq} drawings)")
    latest = classroom.latest_per_student(drawings)
    if not latest:
        st.caption("Nothing sent yet. Students open the join link, pick a nickname, draw on **Draw & classify** "
                   "and press **Send to class**.")
    shown_latest = [latest[s] for s, _, _ in update.students if s in latest]
    for start in range(0, len(shown_latest), GRID_COLUMNS):
        for column, d in zip(st.columns(GRID_COLUMNS), shown_latest[start:start + GRID_COLUMNS], strict=False):
            with column, st.container(key=f"board_cell_{d.student_id}"):
                ui.image(picture(d, 112), caption=verdicts(d), width=112)
    if update.students:
        with st.expander("Drawings per student"):
            st.dataframe({"nickname": [n for _, n, _ in update.students],
                          "drawings": [c for _, _, c in update.students]}, hide_index=True)
    matrices = classroom.confusion(drawings)
    if matrices["CNN"].sum():
        st.subheader("The class's confusion matrices")
        columns = st.columns(2)
        for column, (model, matrix) in zip(columns, matrices.items(), strict=True):
            with column:
                right = int(np.trace(matrix))
                st.plotly_chart(ui.figure(
                    [{"type": "heatmap", "z": matrix.tolist(), "x": list(range(10)), "y": list(range(10)),
                      "colorscale": "Viridis", "showscale": False, "texttemplate": "%{z}"}],
                    {"title": {"text": f"{model}: {right} of {matrix.sum()} read as asked"},
                     "xaxis": {"title": {"text": "verdict"}, "dtick": 1},
                     "yaxis": {"title": {"text": "asked for"}, "dtick": 1, "autorange": "reversed"},
                     "height": 360, "margin": {"l": 40, "r": 10, "t": 40, "b": 40}}), key=f"confusion_{model}")
        st.caption("Rows: the digit a round asked for; columns: what each model read. The diagonal is right.")


def current_round(code, key, state, answers, students, picture) -> None:
    st.subheader(f"Round: {state.round.asks}")
    answered = {d.student_id for d in answers}
    names = [("✓ " if s in answered else "… ") + n for s, n, _ in students]
    st.write(f"**{len(answered)} of {len(students)}** answered: " + ", ".join(ui.plain(n) for n in names))
    if answers and state.round.digit is not None:
        digit = state.round.digit
        cnn_right = sum(d.cnn_digit == digit for d in answers)
        caps_right = sum(d.caps_digit == digit for d in answers)
        st.write(f"The class's {digit}s: the CNN read {cnn_right} of {len(answers)} right, the CapsNet "
                 f"{caps_right} of {len(answers)}.")
    hard = classroom.hardest(answers)
    if hard:
        st.markdown("**The hardest drawings of the round** (the models disagree, or are least sure):")
        for column, d in zip(st.columns(4), hard, strict=False):
            with column:
                ui.image(picture(d, 168), width=168,
                         caption=f"{d.nickname}: CNN {d.cnn_digit} ({d.cnn_confidence:.0%}) · CapsNet "
                                 f"{d.caps_digit} ({d.caps_confidence:.2f})")
                st.button("Show to the class", key=f"spot_{d.seq}", on_click=store.show, args=(code, key, d.seq))


def class_files(code: str, key: str, state: classroom.ClassState) -> None:
    st.subheader("The class's drawings")
    if st.button("Prepare the downloads", help="A zip of PNGs with a CSV of verdicts, and an .npz in MNIST's format"):
        drawings = store.drawings(code, key)
        st.session_state["class_files"] = (code, len(drawings), classroom.export_zip(drawings),
                                           classroom.export_npz(drawings))
    files = st.session_state.get("class_files")
    if files and files[0] == code:
        _, count, archive, npz = files
        st.caption(f"{count} drawings when prepared. The .npz holds those sent for an asked digit, labelled with it: "
                   "`python -m mnist_models train cnn --init shipped --extra-data "
                   f"class-{code}.npz --epochs 2 --lr 1e-4` fine-tunes the shipped CNN on them (a tenth of an epoch).")
        left, right = st.columns(2)
        left.download_button("Drawings and verdicts (.zip)", archive, f"class-{code}.zip", "application/zip")
        right.download_button("For training (.npz)", npz, f"class-{code}.npz", "application/octet-stream")
    end, delete = st.columns(2)
    with end:
        if state.closed_at is None and st.button("End the class", help="No more joins or sends; the drawings stay"):
            store.end_class(code, key)
            st.rerun()
    with delete:
        sure = st.checkbox("Delete the class and all its drawings now")
        if st.button("Delete", disabled=not sure, type="secondary"):
            store.delete_class(code, key)
            st.session_state.pop(ui.CLASS_TEACHER, None)
            st.session_state.pop("class_board", None)
            st.query_params.clear()
            st.rerun()


if st.query_params.get("view") == "board" and (teacher is None or teacher["code"] != asked_code):
    refuse_board()
    teacher = None
if teacher is not None:
    teacher_view()
elif member is not None:
    student_view()
else:
    join_or_start()
