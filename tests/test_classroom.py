"""The class store, the same tests on SQLite and on a real PostgreSQL server (Debian's, started for the tests)."""

import io
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_models import classroom

ROOT = Path(__file__).resolve().parent.parent
P3 = np.eye(10, dtype=np.float32)[3] * 0.9 + 0.01  # a verdict: "3", 0.91


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "classes.sqlite3")
    postgres_url = request.getfixturevalue("postgres_url")
    store = classroom.ClassStore(postgres_url)  # a clean slate: the server is shared by this run's tests
    with store._transaction() as cur:
        cur.run("DELETE FROM classes")
    store.close()
    return postgres_url


@pytest.fixture
def store(url):
    store = classroom.ClassStore(url)
    yield store
    store.close()


def drawing(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)


def test_a_lesson_round_trip(store):
    code, key = store.create_class(now=100.0)
    assert len(code) == classroom.CODE_LENGTH and not set(code) & set("0O1I")
    ada, ada_token = store.join(code.lower(), "  Ada  ", now=101.0)  # a code typed in lower case still joins
    assert (ada.code, ada.nickname) == (code, "Ada")
    assert store.send(ada_token, drawing(0), P3, P3, now=102.0) == (1, True)  # before any round: asked nothing
    round_ = store.start_round(code, key, 7, now=103.0)
    assert store.state(code).round == round_ and round_.asks == "a 7"
    assert store.send(ada_token, drawing(1), P3, P3 / 2, now=104.0) == (2, True)
    update = store.board(code, key, since=0)
    assert [d.seq for d in update.drawings] == [1, 2] and [d.asked for d in update.drawings] == [None, 7]
    assert update.students == [(ada.student_id, "Ada", 2)]
    second = update.drawings[1]
    assert np.array_equal(second.image, drawing(1)) and (second.cnn_digit, second.caps_digit) == (3, 3)
    assert second.caps_confidence == pytest.approx(0.455, abs=1e-5)
    assert [d.seq for d in store.board(code, key, since=2).drawings] == []  # only what changed since
    store.end_round(code, key, now=105.0)
    assert store.state(code).round is None

    archive = zipfile.ZipFile(io.BytesIO(classroom.export_zip(update.drawings)))
    assert sorted(archive.namelist()) == ["drawings/00001.png", "drawings/00002.png", "verdicts.csv"]
    assert np.array_equal(np.asarray(Image.open(archive.open("drawings/00002.png"))), drawing(1))
    rows = archive.read("verdicts.csv").decode().splitlines()
    assert rows[2].startswith("drawings/00002.png,2,Ada,") and ",7,3,0.9100,3," in rows[2]
    npz = np.load(io.BytesIO(classroom.export_npz(update.drawings)))
    assert npz["x_train"].shape == (1, 28, 28) and npz["x_train"].dtype == np.uint8 and list(npz["y_train"]) == [7]


def test_a_retried_send_is_stored_once_and_sends_are_rate_limited(store):
    code, key = store.create_class(now=0.0)
    _, token = store.join(code, "Bo", now=0.0)
    assert store.send(token, drawing(0), P3, P3, now=10.0) == (1, True)
    assert store.send(token, drawing(0), P3, P3, now=10.1) == (1, False)  # the same drawing again: a retry
    with pytest.raises(classroom.RateLimited, match="half second"):
        store.send(token, drawing(1), P3, P3, now=10.2)
    assert store.send(token, drawing(1), P3, P3, now=10.6) == (2, True)
    store.start_round(code, key, 2, now=11.0)
    assert store.send(token, drawing(0), P3, P3, now=12.0) == (3, True)  # the same drawing in a new round counts
    assert [s[2] for s in store.board(code, key).students] == [3]


def test_wrong_codes_keys_and_nicknames_get_clear_messages(store):
    code, key = store.create_class()
    with pytest.raises(classroom.WrongCode, match="no class with the code"):
        store.join("ZZZZZZ" if code != "ZZZZZZ" else "YYYYYY", "Cy")
    with pytest.raises(classroom.NotAllowed, match="teacher's browser"):
        store.board(code, "not the key")
    with pytest.raises(classroom.NotAllowed):
        store.start_round(code, "", 3)
    for name, message in (("", "Pick a nickname"), ("x" * 21, "at most 20"), ("<b>Eve</b>", "letters, digits")):
        with pytest.raises(classroom.BadNickname, match=message):
            store.join(code, name)
    store.join(code, "Dee")
    with pytest.raises(classroom.BadNickname, match="already called"):
        store.join(code, "Dee")
    with pytest.raises(classroom.NotAllowed, match="not in this class"):
        store.send("a made-up token", drawing(0), P3, P3)


def test_a_second_class_sees_nothing_of_the_first(store):
    first, first_key = store.create_class()
    second, second_key = store.create_class()
    _, token = store.join(first, "Eli")
    store.join(second, "Eli")  # the same nickname in another class is fine
    store.send(token, drawing(0), P3, P3)
    assert store.board(second, second_key).drawings == [] and len(store.board(first, first_key).drawings) == 1
    with pytest.raises(classroom.NotAllowed):
        store.board(second, first_key)  # one class's teacher key opens no other board


def test_ended_idle_and_deleted_classes(store):
    code, key = store.create_class(now=0.0)
    _, token = store.join(code, "Fay", now=0.0)
    store.send(token, drawing(0), P3, P3, now=1.0)
    store.end_class(code, key, now=2.0)
    with pytest.raises(classroom.ClassClosed, match="has ended"):
        store.send(token, drawing(1), P3, P3, now=3.0)
    with pytest.raises(classroom.ClassClosed):
        store.join(code, "Gus", now=3.0)
    assert len(store.drawings(code, key)) == 1  # still there to download

    idle, idle_key = store.create_class(now=0.0)
    assert store.sweep(now=classroom.IDLE_CLOSE_S + 10) == (1, 0)  # the idle one closes
    assert store.state(idle).closed_at == classroom.IDLE_CLOSE_S + 10
    assert store.sweep(now=2.0 + classroom.RETENTION_S + 1) == (0, 1)  # the ended one is deleted, drawings too
    with pytest.raises(classroom.WrongCode):
        store.state(code)
    store.delete_class(idle, idle_key)
    assert store._read("SELECT COUNT(*) FROM drawings")[0][0] == 0
    assert store._read("SELECT COUNT(*) FROM students")[0][0] == 0


SENDER = textwrap.dedent("""
    import sys
    import numpy as np
    from mnist_models import classroom
    url, token, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = classroom.ClassStore(url)
    for i in range(first, first + count):
        image = np.full((28, 28), i % 256, np.uint8)
        image[0, :4] = np.frombuffer(i.to_bytes(4, "big"), np.uint8)
        print(*store.send(token, image, np.eye(10)[i % 10], np.eye(10)[i % 10], now=float(i)), flush=True)
""")


def run_sender(url: str, token: str, first: int, count: int, patch: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", patch + SENDER, url, token, str(first), str(count)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_senders_in_several_processes_lose_nothing_and_number_in_order(store, url):
    code, key = store.create_class()
    tokens = [store.join(code, f"pupil {k}")[1] for k in range(4)]
    senders = [run_sender(url, token, first=1000 * (k + 1), count=25) for k, token in enumerate(tokens)]
    answers = []
    for sender in senders:
        out, err = sender.communicate(timeout=240)
        assert sender.returncode == 0, err
        answers += [int(line.split()[0]) for line in out.splitlines()]
    drawings = store.board(code, key).drawings
    assert sorted(answers) == [d.seq for d in drawings] == list(range(1, 101))  # every send once, no gaps
    assert [count for _, _, count in store.board(code, key).students] == [25] * 4
    assert store.state(code).seq == 100


KILL_MID_SEND = textwrap.dedent("""
    import os, signal
    from mnist_models import classroom
    insert = classroom.ClassStore._insert_drawing
    def insert_then_die(self, cur, values):
        insert(self, cur, values)
        os.kill(os.getpid(), signal.SIGKILL)  # killed after the row is written, before the commit
    classroom.ClassStore._insert_drawing = insert_then_die
""")


def test_a_send_killed_midway_leaves_nothing_and_locks_nothing(store, url):
    code, key = store.create_class()
    _, token = store.join(code, "Hal")
    sender = run_sender(url, token, first=5, count=1, patch=KILL_MID_SEND)
    sender.communicate(timeout=120)
    assert sender.returncode == -9
    assert store.board(code, key).drawings == [] and store.state(code).seq == 0
    deadline = time.monotonic() + 60  # PostgreSQL notices the dead client's connection and rolls it back
    while True:
        try:
            retry = run_sender(url, token, first=5, count=1)
            out, err = retry.communicate(timeout=120)
            assert retry.returncode == 0, err
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    assert out.split() == ["1", "True"]
    assert [d.seq for d in store.board(code, key).drawings] == [1]


def test_the_schema_is_versioned_and_reopening_migrates_nothing(url):
    first = classroom.ClassStore(url)
    code, _ = first.create_class()
    again = classroom.ClassStore(url)
    assert again.migrate() == classroom.SCHEMA_VERSION == max(classroom.MIGRATIONS)
    assert again.state(code).code == code
    first.close()
    again.close()
