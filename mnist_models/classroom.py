"""A class's shared state: classes, students, rounds and the drawings students send, in a real database.

SQLite by default (one WAL-mode file, so several app replicas on one machine share a class); PostgreSQL where
replicas span machines (`STUDIO_CLASS_DB=postgresql://...`). One interface over both, no Streamlit inside: the
Class page and Draw call it, the tests run the same suite against both.

Every send gets the class's next sequence number inside the transaction that stores it (the class row is locked
while it does), so numbers commit in order and a board that asks for "everything after n" never skips one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import sqlite3
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: read aloud to a class without mix-ups
CODE_LENGTH = 6
NICKNAME_MAX = 20
NICKNAME_PATTERN = re.compile(r"[\w .'-]{1,20}")  # letters (any script), digits, space and . ' - _
SEND_INTERVAL_S = 0.5  # at most two sends a second per student
IDLE_CLOSE_S = 12 * 3600  # a class with no activity for 12 hours is closed
RETENTION_S = float(os.environ.get("STUDIO_CLASS_RETENTION_HOURS", "24")) * 3600  # then its data is deleted
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "classes.sqlite3"
SCHEMA_VERSION = 1


class ClassError(Exception):
    """A refusal with a message meant for the person in front of the page."""


class WrongCode(ClassError):
    pass


class ClassClosed(ClassError):
    pass


class NotAllowed(ClassError):
    pass


class RateLimited(ClassError):
    pass


class BadNickname(ClassError):
    pass


@dataclasses.dataclass(frozen=True)
class Round:
    id: int
    digit: int | None  # None: "any digit"
    started_at: float
    ended_at: float | None

    @property
    def asks(self) -> str:
        return "any digit" if self.digit is None else f"a {self.digit}"


@dataclasses.dataclass(frozen=True)
class ClassState:
    """What anyone in the class may know: the open round, whether the class is still open."""

    code: str
    created_at: float
    last_activity: float
    closed_at: float | None
    seq: int  # how many drawings the class has been sent
    round: Round | None  # the open round
    spotlight: int | None  # the drawing (seq) the teacher shows to the class

    def deleted_after(self) -> float | None:
        return None if self.closed_at is None else self.closed_at + RETENTION_S


@dataclasses.dataclass(frozen=True)
class Member:
    code: str
    student_id: int
    nickname: str


@dataclasses.dataclass(frozen=True)
class Drawing:
    seq: int
    student_id: int
    nickname: str
    round_id: int | None
    asked: int | None  # the digit the round asked for, None outside a round or in an "any digit" round
    image: np.ndarray  # (28, 28) uint8, the input both models saw
    cnn_probs: np.ndarray  # (10,)
    caps_lengths: np.ndarray  # (10,)
    sent_at: float

    @property
    def cnn_digit(self) -> int:
        return int(self.cnn_probs.argmax())

    @property
    def caps_digit(self) -> int:
        return int(self.caps_lengths.argmax())

    @property
    def cnn_confidence(self) -> float:
        return float(self.cnn_probs.max())

    @property
    def caps_confidence(self) -> float:
        return float(self.caps_lengths.max())

    @property
    def disagree(self) -> bool:
        return self.cnn_digit != self.caps_digit


@dataclasses.dataclass(frozen=True)
class BoardUpdate:
    state: ClassState
    students: list[tuple[int, str, int]]  # (id, nickname, drawings sent), in joining order
    drawings: list[Drawing]  # sent after the board's last refresh, in order


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_nickname(nickname: str) -> str:
    name = " ".join(nickname.split())
    if not name:
        raise BadNickname("Pick a nickname (no other personal data is needed).")
    if len(name) > NICKNAME_MAX:
        raise BadNickname(f"A nickname has at most {NICKNAME_MAX} characters.")
    if not NICKNAME_PATTERN.fullmatch(name):
        raise BadNickname("A nickname can have letters, digits, spaces and . ' - _ only.")
    return name


def normalise_code(code: str) -> str:
    return "".join(code.split()).upper()


# --- the two databases ---------------------------------------------------------------------------------------

_TABLES = """
CREATE TABLE classes (
    code TEXT PRIMARY KEY, teacher_key_hash TEXT NOT NULL, created_at {real} NOT NULL,
    last_activity {real} NOT NULL, closed_at {real}, seq INTEGER NOT NULL DEFAULT 0, spotlight INTEGER);
CREATE TABLE students (
    id {serial}, code TEXT NOT NULL REFERENCES classes(code) ON DELETE CASCADE, nickname TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, joined_at {real} NOT NULL, last_send {real} NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0, UNIQUE (code, nickname));
CREATE TABLE rounds (
    id {serial}, code TEXT NOT NULL REFERENCES classes(code) ON DELETE CASCADE, digit INTEGER,
    started_at {real} NOT NULL, ended_at {real});
CREATE TABLE drawings (
    code TEXT NOT NULL REFERENCES classes(code) ON DELETE CASCADE, seq INTEGER NOT NULL,
    student_id INTEGER NOT NULL REFERENCES students(id) ON DELETE CASCADE, send_id TEXT NOT NULL,
    round_id INTEGER REFERENCES rounds(id) ON DELETE CASCADE, asked INTEGER, image {blob} NOT NULL,
    cnn_probs TEXT NOT NULL, caps_lengths TEXT NOT NULL, sent_at {real} NOT NULL,
    PRIMARY KEY (code, seq), UNIQUE (student_id, send_id));
CREATE INDEX rounds_open ON rounds (code, ended_at);
CREATE INDEX classes_activity ON classes (closed_at, last_activity)
"""
MIGRATIONS = {1: _TABLES}  # version → statements; a new version adds an entry, never edits an old one


class _Sqlite:
    placeholder = "?"
    types = {"real": "REAL", "serial": "INTEGER PRIMARY KEY", "blob": "BLOB"}
    errors = (sqlite3.Error,)
    integrity = sqlite3.IntegrityError

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def connect(self):
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    @contextlib.contextmanager
    def transaction(self, connection):
        connection.execute("BEGIN IMMEDIATE")  # writers queue here, not at their first write
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def lock_migrations(self, connection) -> None:
        pass  # BEGIN IMMEDIATE already holds the database's one write lock

    def for_update(self) -> str:
        return ""


class _Postgres:
    placeholder = "%s"
    types = {"real": "DOUBLE PRECISION", "serial": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA"}

    def __init__(self, url: str):
        import psycopg

        self.url, self.psycopg = url, psycopg
        self.errors = (psycopg.Error,)
        self.integrity = psycopg.errors.IntegrityError

    def connect(self):
        return self.psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    @contextlib.contextmanager
    def transaction(self, connection):
        with connection.transaction():
            yield connection

    def lock_migrations(self, connection) -> None:
        connection.execute("SELECT pg_advisory_xact_lock(31415926)")  # replicas starting at once migrate once

    def for_update(self) -> str:
        return " FOR UPDATE"


class ClassStore:
    """The class interface over SQLite or PostgreSQL. Thread-safe: each call takes a connection from a small pool
    (Streamlit runs every script run in a thread of its own)."""

    def __init__(self, url: str | os.PathLike | None = None):
        url = str(url or os.environ.get("STUDIO_CLASS_DB") or DEFAULT_PATH)
        self.url = url
        if url.startswith(("postgresql://", "postgres://")):
            self.db = _Postgres(url)
        else:
            self.db = _Sqlite(Path(url.removeprefix("sqlite:///")))
        self._idle: list = []
        self._lock = threading.Lock()
        self.migrate()

    # connections
    @contextlib.contextmanager
    def _connection(self) -> Iterator:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self.db.connect()
        broken = False
        try:
            yield connection
        except self.db.errors:
            broken = True  # a connection that failed is not handed out again
            raise
        finally:
            if broken:
                connection.close()
            else:
                self._give_back(connection)

    def _give_back(self, connection) -> None:
        with self._lock:
            if len(self._idle) < 8:
                self._idle.append(connection)
                return
        connection.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator:
        with self._connection() as connection, self.db.transaction(connection):
            yield _Cursor(connection, self.db.placeholder)

    @contextlib.contextmanager
    def _reading(self) -> Iterator:
        """A cursor outside any transaction: each statement sees what has committed."""
        with self._connection() as connection:
            yield _Cursor(connection, self.db.placeholder)

    def _read(self, sql: str, params=()) -> list[tuple]:
        with self._reading() as cur:
            return cur.all(sql, params)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def migrate(self) -> int:
        with self._transaction() as cur:
            self.db.lock_migrations(cur.connection)
            cur.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = cur.all("SELECT version FROM schema_version")
            version = rows[0][0] if rows else 0
            for target in sorted(v for v in MIGRATIONS if v > version):
                for statement in MIGRATIONS[target].format(**self.db.types).split(";"):
                    if statement.strip():
                        cur.run(statement)
                version = target
            cur.run("DELETE FROM schema_version")
            cur.run("INSERT INTO schema_version (version) VALUES (?)", (version,))
        return version

    # the teacher
    def create_class(self, now: float | None = None) -> tuple[str, str]:
        """A new open class: its join code (for everyone) and its teacher key (for the teacher's browser only)."""
        now = time.time() if now is None else now
        key = secrets.token_urlsafe(24)
        for _ in range(20):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            try:
                with self._transaction() as cur:
                    cur.run("INSERT INTO classes (code, teacher_key_hash, created_at, last_activity) "
                            "VALUES (?, ?, ?, ?)", (code, _hash(key), now, now))
                return code, key
            except self.db.integrity:
                continue  # that code is taken: draw another
        raise ClassError("Could not find a free class code; try again.")

    def _teacher(self, cur, code: str, key: str) -> None:
        rows = cur.all("SELECT teacher_key_hash FROM classes WHERE code = ?", (normalise_code(code),))
        if not rows:
            raise WrongCode(f"There is no class {code!r}: it may have ended and been deleted.")
        if not hmac.compare_digest(rows[0][0], _hash(key or "")):
            raise NotAllowed("Only the teacher's browser that started this class can open its board.")

    def start_round(self, code: str, key: str, digit: int | None, now: float | None = None) -> Round:
        now = time.time() if now is None else now
        code = normalise_code(code)
        with self._transaction() as cur:
            self._teacher(cur, code, key)
            self._open_class(cur, code)
            self._end_open_round(cur, code, now)
            cur.run("INSERT INTO rounds (code, digit, started_at) VALUES (?, ?, ?)", (code, digit, now))
            cur.run("UPDATE classes SET last_activity = ? WHERE code = ?", (now, code))
            row = cur.all("SELECT id FROM rounds WHERE code = ? AND ended_at IS NULL", (code,))[0]
        return Round(row[0], digit, now, None)

    def end_round(self, code: str, key: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        code = normalise_code(code)
        with self._transaction() as cur:
            self._teacher(cur, code, key)
            self._end_open_round(cur, code, now)

    @staticmethod
    def _end_open_round(cur, code: str, now: float) -> None:
        cur.run("UPDATE rounds SET ended_at = ? WHERE code = ? AND ended_at IS NULL", (now, code))

    def show(self, code: str, key: str, seq: int | None) -> None:
        """Put one drawing large on the board for the whole class (None: take it down)."""
        code = normalise_code(code)
        with self._transaction() as cur:
            self._teacher(cur, code, key)
            cur.run("UPDATE classes SET spotlight = ? WHERE code = ?", (seq, code))

    def end_class(self, code: str, key: str, now: float | None = None) -> None:
        """No more joins or sends; the drawings stay for download until the retention runs out."""
        now = time.time() if now is None else now
        code = normalise_code(code)
        with self._transaction() as cur:
            self._teacher(cur, code, key)
            self._end_open_round(cur, code, now)
            cur.run("UPDATE classes SET closed_at = COALESCE(closed_at, ?) WHERE code = ?", (now, code))

    def delete_class(self, code: str, key: str) -> None:
        code = normalise_code(code)
        with self._transaction() as cur:
            self._teacher(cur, code, key)
            cur.run("DELETE FROM classes WHERE code = ?", (code,))

    def board(self, code: str, key: str, since: int = 0) -> BoardUpdate:
        """The class as the teacher's board needs it, with only the drawings sent after number `since`."""
        code = normalise_code(code)
        with self._reading() as cur:
            self._teacher(cur, code, key)
            state = self._state(cur, code)
            students = [tuple(r) for r in cur.all(
                "SELECT id, nickname, sent FROM students WHERE code = ? ORDER BY id", (code,))]
            drawings = self._drawings(cur, code, since)
        return BoardUpdate(state, students, drawings)

    def drawings(self, code: str, key: str) -> list[Drawing]:
        code = normalise_code(code)
        with self._reading() as cur:
            self._teacher(cur, code, key)
            return self._drawings(cur, code, 0)

    # the students
    def join(self, code: str, nickname: str, now: float | None = None) -> tuple[Member, str]:
        """A student joins with the code they were given: their membership and the secret token their browser
        keeps for sending."""
        now = time.time() if now is None else now
        code, name = normalise_code(code), check_nickname(nickname)
        token = secrets.token_urlsafe(24)
        with self._transaction() as cur:
            self._open_class(cur, code)
            if cur.all("SELECT 1 FROM students WHERE code = ? AND nickname = ?", (code, name)):
                raise BadNickname(f"Someone in this class is already called {name!r}: pick another nickname.")
            cur.run("INSERT INTO students (code, nickname, token_hash, joined_at) VALUES (?, ?, ?, ?)",
                    (code, name, _hash(token), now))
            cur.run("UPDATE classes SET last_activity = ? WHERE code = ?", (now, code))
            student_id = cur.all("SELECT id FROM students WHERE token_hash = ?", (_hash(token),))[0][0]
        return Member(code, student_id, name), token

    def member(self, token: str) -> Member:
        rows = self._read("SELECT code, id, nickname FROM students WHERE token_hash = ?", (_hash(token or ""),))
        if not rows:
            raise NotAllowed("You are not in this class any more: the class was deleted. Join again with a code.")
        return Member(*rows[0])

    def state(self, code: str) -> ClassState:
        """The class's open round and whether it is open: all a student's page polls for."""
        with self._reading() as cur:
            return self._state(cur, normalise_code(code))

    def send(self, token: str, image: np.ndarray, cnn_probs, caps_lengths, send_id: str | None = None,
             now: float | None = None) -> tuple[int, bool]:
        """Store one drawing for the class: its number and whether it is new. A retried send (same `send_id`,
        by default the drawing's own pixels in the same round) is stored once and answers the first number."""
        now = time.time() if now is None else now
        image = np.asarray(image, np.uint8).reshape(28, 28)
        with self._transaction() as cur:
            rows = cur.all("SELECT id, code, last_send FROM students WHERE token_hash = ?" + self.db.for_update(),
                           (_hash(token or ""),))
            if not rows:
                raise NotAllowed("You are not in this class any more: the class was deleted. Join again.")
            student_id, code, last_send = rows[0]
            state = self._open_class(cur, code)
            round_id = state.round.id if state.round else None
            send_id = send_id or hashlib.sha256(image.tobytes() + f"/{round_id}".encode()).hexdigest()
            earlier = cur.all("SELECT seq FROM drawings WHERE student_id = ? AND send_id = ?", (student_id, send_id))
            if earlier:
                return earlier[0][0], False
            if now - last_send < SEND_INTERVAL_S:
                raise RateLimited("Easy there: a drawing every half second at most. Send it again in a moment.")
            seq = cur.all("UPDATE classes SET seq = seq + 1, last_activity = ? WHERE code = ? RETURNING seq",
                          (now, code))[0][0]  # locks the class row until commit: numbers commit in order
            self._insert_drawing(cur, (code, seq, student_id, send_id, round_id,
                                       state.round.digit if state.round else None, image.tobytes(),
                                       json.dumps([round(float(p), 6) for p in np.ravel(cnn_probs)]),
                                       json.dumps([round(float(p), 6) for p in np.ravel(caps_lengths)]), now))
            cur.run("UPDATE students SET last_send = ?, sent = sent + 1 WHERE id = ?", (now, student_id))
        return seq, True

    def _insert_drawing(self, cur, values: tuple) -> None:
        cur.run("INSERT INTO drawings (code, seq, student_id, send_id, round_id, asked, image, cnn_probs, "
                "caps_lengths, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)

    # housekeeping
    def sweep(self, now: float | None = None) -> tuple[int, int]:
        """Close classes idle for `IDLE_CLOSE_S`; delete classes closed longer than `RETENTION_S` ago, with all
        their drawings. Returns (closed, deleted)."""
        now = time.time() if now is None else now
        with self._transaction() as cur:
            closed = cur.run("UPDATE classes SET closed_at = ? WHERE closed_at IS NULL AND last_activity < ?",
                             (now, now - IDLE_CLOSE_S))
            deleted = cur.run("DELETE FROM classes WHERE closed_at IS NOT NULL AND closed_at < ?",
                              (now - RETENTION_S,))
        return closed, deleted

    # reading rows
    def _state(self, cur, code: str) -> ClassState:
        rows = cur.all("SELECT code, created_at, last_activity, closed_at, seq, spotlight FROM classes "
                       "WHERE code = ?", (code,))
        if not rows:
            raise WrongCode(f"There is no class with the code {code!r}. Check the code with your teacher.")
        code, created, last, closed, seq, spotlight = rows[0]
        open_round = cur.all("SELECT id, digit, started_at, ended_at FROM rounds WHERE code = ? AND ended_at IS "
                             "NULL ORDER BY id DESC LIMIT 1", (code,))
        return ClassState(code, created, last, closed, seq, Round(*open_round[0]) if open_round else None,
                          spotlight)

    def _open_class(self, cur, code: str) -> ClassState:
        state = self._state(cur, code)
        if state.closed_at is not None:
            raise ClassClosed(f"Class {code} has ended: it takes no more students or drawings.")
        return state

    def _drawings(self, cur, code: str, since: int) -> list[Drawing]:
        rows = cur.all("SELECT d.seq, d.student_id, s.nickname, d.round_id, d.asked, d.image, d.cnn_probs, "
                       "d.caps_lengths, d.sent_at FROM drawings d JOIN students s ON s.id = d.student_id "
                       "WHERE d.code = ? AND d.seq > ? ORDER BY d.seq", (code, since))
        return [Drawing(seq, student, name, round_id, asked,
                        np.frombuffer(bytes(image), np.uint8).reshape(28, 28),
                        np.array(json.loads(cnn), np.float32), np.array(json.loads(caps), np.float32), sent_at)
                for seq, student, name, round_id, asked, image, cnn, caps, sent_at in rows]


class _Cursor:
    """`?` placeholders for both databases; rows as tuples; `run` answers the rows it changed."""

    def __init__(self, connection, placeholder: str):
        self.connection, self.placeholder = connection, placeholder

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def run(self, sql: str, params=()) -> int:
        return self.connection.execute(self._sql(sql), params).rowcount

    def all(self, sql: str, params=()) -> list[tuple]:
        return [tuple(row) for row in self.connection.execute(self._sql(sql), params).fetchall()]


# --- what the board shows and what a class downloads ---------------------------------------------------------

def latest_per_student(drawings: list[Drawing]) -> dict[int, Drawing]:
    latest: dict[int, Drawing] = {}
    for drawing in drawings:
        latest[drawing.student_id] = drawing
    return latest


def confusion(drawings: list[Drawing]) -> dict[str, np.ndarray]:
    """Asked digit × verdict, for each model, over the drawings sent in rounds that asked for a digit."""
    matrices = {"CNN": np.zeros((10, 10), int), "CapsNet": np.zeros((10, 10), int)}
    for d in drawings:
        if d.asked is not None:
            matrices["CNN"][d.asked, d.cnn_digit] += 1
            matrices["CapsNet"][d.asked, d.caps_digit] += 1
    return matrices


def hardest(drawings: list[Drawing], count: int = 4) -> list[Drawing]:
    """The round's drawings the models found hardest: where they disagree first, then the least confident."""
    return sorted(drawings, key=lambda d: (not d.disagree, min(d.cnn_confidence, d.caps_confidence)))[:count]


def export_zip(drawings: list[Drawing]) -> bytes:
    """A PNG per drawing and a CSV of who sent it, what was asked and what each model read."""
    buffer, table = io.BytesIO(), io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["file", "seq", "nickname", "round", "asked", "cnn", "cnn_confidence", "capsnet",
                     "capsnet_length", "sent_at_utc"])
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for d in drawings:
            name = f"drawings/{d.seq:05d}.png"
            png = io.BytesIO()
            Image.fromarray(d.image).save(png, format="PNG")
            archive.writestr(name, png.getvalue())
            writer.writerow([name, d.seq, d.nickname, d.round_id or "", "" if d.asked is None else d.asked,
                             d.cnn_digit, f"{d.cnn_confidence:.4f}", d.caps_digit, f"{d.caps_confidence:.4f}",
                             time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d.sent_at))])
        archive.writestr("verdicts.csv", table.getvalue())
    return buffer.getvalue()


def export_npz(drawings: list[Drawing]) -> bytes:
    """The drawings sent for an asked digit, labelled with it, in MNIST's format (`x_train` (N, 28, 28) uint8,
    `y_train` (N,) int64): `python -m mnist_models train cnn --extra-data FILE.npz` fine-tunes on it."""
    labelled = [d for d in drawings if d.asked is not None]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=np.array([d.image for d in labelled], np.uint8).reshape(-1, 28, 28),
                        y_train=np.array([d.asked for d in labelled], np.int64))
    return buffer.getvalue()
