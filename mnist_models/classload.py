"""`bench serve --class`: a lesson on one server. A teacher (a light visitor, as `loadtest`'s) starts a class on the
Class page and asks for digits; students join with the code and a nickname, draw on Draw & classify stroke by
stroke and press Send to class, their Draw page polling the teacher's request as a browser does; the teacher's
board reruns on its own timer. Figures: how long a sent drawing takes to reach the board, the server CPU per send
and per board refresh (each measured alone), the Draw stroke beside them, and whether every sent drawing is in
the store and counted on the board at the end."""

from __future__ import annotations

import asyncio
import random
import re
import time

import numpy as np

from . import classroom
from .loadtest import ROOT, WARM_UP_SEED, Record, Visitor, cpu_seconds, draw_digit, free_port, start_app, summary

BOARD_COUNT = re.compile(r"^Latest drawing of each student \((\d+) joined, (\d+) drawings\)$")
SENT = re.compile(r"^Sent to class \w+ \(drawing (\d+)\)\.$")


def board_count(screen) -> int | None:
    """How many drawings the board says the class has sent, from its heading."""
    return next((int(m.group(2)) for t in screen.texts if (m := BOARD_COUNT.match(t))), None)


def sent_number(screen) -> int | None:
    return next((int(m.group(1)) for t in screen.texts if (m := SENT.match(t))), None)


async def press(visitor: Visitor, label: str, until=None, fields: dict[str, str] | None = None):
    """Click a button (a form's submit button sends the form's text fields with it)."""
    widgets = [(visitor.control("text_input", name).id, "string_value", value)
               for name, value in (fields or {}).items()]
    return await visitor.run(widgets=[*widgets, (visitor.control("button", label).id, "trigger_value", True)],
                             until=until)


class Teacher:
    """A teacher's browser on the board: starts the class, asks for digits, and reruns the board on its timer."""

    def __init__(self, url: str):
        self.visitor, self.seen_at, self.key = Visitor(url), [], ""  # seen_at: (time, drawings the board counts)

    async def start(self, digit: int) -> str:
        visitor = self.visitor
        await visitor.open()
        await visitor.open_page("class", "Class")
        await press(visitor, "Start a class")
        code = next(t.split("`")[1] for t in visitor.screen.texts if t.startswith("## Class code:"))
        self.key = next(t for t in visitor.screen.texts if re.fullmatch(r"[\w-]{32}", t))  # in its expander
        await self.ask(digit)
        return code

    async def ask(self, digit: int) -> None:
        box = self.visitor.widgets["Ask the class for"][1]
        await self.visitor.run((box.id, "string_value", box.options[digit + 1]))
        await press(self.visitor, f"Ask for a {digit}")

    @property
    def board(self) -> str:
        return next(f for f, interval in self.visitor.auto_reruns.items() if f)

    async def refresh(self) -> int:
        await self.visitor.run(fragment=self.board)
        count = board_count(self.visitor.screen)
        self.seen_at.append((time.monotonic(), count or 0))
        return count or 0

    async def watch(self, until: float) -> None:
        interval = self.visitor.auto_reruns[self.board]
        tick = time.monotonic()
        while time.monotonic() < until:
            tick += interval
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            await self.refresh()


async def student(url: str, code: str, index: int, until: float, think: float, record: Record,
                  sends: list, rng: random.Random) -> None:
    """Join, then draw and send until `until`; each send's drawing number and when it was pressed go to `sends`."""
    visitor = Visitor(url)
    await visitor.open()
    try:
        visitor.query_string = f"code={code}"
        await visitor.open_page("class", "Class")
        await press(visitor, "Join", fields={"Class code": code, "Nickname": f"pupil {index}"})
        if not any(t.startswith("You are pupil") for t in visitor.screen.texts):
            raise RuntimeError(f"could not join: {visitor.screen.errors or visitor.screen.texts[:3]}")
        await visitor.open_page("draw", "Draw & classify")
        poll = next((f for f in visitor.auto_reruns if f), None)
        polled = time.monotonic()

        async def measured(action, coroutine):
            nonlocal polled
            if poll and time.monotonic() - polled > visitor.auto_reruns[poll]:  # the request's poll, as it falls due
                await visitor.run(fragment=poll)
                polled = time.monotonic()
            seen, _ = await coroutine
            record.seconds.setdefault(action, []).append(seen)
            record.errors += [f"student {index}: {action}: {e}" for e in visitor.screen.errors]

        async def pause(scale: float = 1.0) -> None:
            await asyncio.sleep(think * scale * rng.uniform(0.5, 1.5))

        turn = 0
        while time.monotonic() < until:
            digit = (index + turn) % 10
            await draw_digit(visitor, digit, measured, pause, rng)
            await pause(0.5)
            pressed = time.monotonic()
            await measured("send", press(visitor, "Send to class", until=lambda s: sent_number(s) is not None))
            number = sent_number(visitor.screen)
            if number is None:
                record.errors.append(f"student {index}: send: {visitor.screen.errors or 'no confirmation'}")
            else:
                sends.append((number, pressed))
            await pause()
            turn += 1
    except Exception as err:
        record.errors.append(f"student {index}: {type(err).__name__}: {err}")
    finally:
        await visitor.close()


async def costs_alone(url: str, pid: int, rounds: int, seed: int) -> dict[str, float]:
    """Server CPU per action with nobody else on the server: a Draw stroke and a send (one student), a board
    refresh (the teacher's, with the class's drawings on it)."""
    teacher, spent = Teacher(url), {"stroke": [], "send": [], "board refresh": []}
    code = await teacher.start(3)
    visitor, rng = Visitor(url), random.Random(seed)
    await visitor.open()
    visitor.query_string = f"code={code}"
    await visitor.open_page("class", "Class")
    await press(visitor, "Join", fields={"Class code": code, "Nickname": "alone"})

    async def measure(action, coroutine):
        before = cpu_seconds(pid)
        await coroutine
        spent[action].append(cpu_seconds(pid) - before)

    for turn in range(rounds):
        await visitor.open_page("draw", "Draw & classify")
        await draw_digit(visitor, (3 + turn) % 10, measure, rng=rng)
        await asyncio.sleep(classroom.SEND_INTERVAL_S)
        await measure("send", press(visitor, "Send to class", until=lambda s: sent_number(s) is not None))
        await measure("board refresh", teacher.refresh())
    await visitor.close()
    await teacher.visitor.close()
    return {action: float(np.mean(values)) for action, values in spent.items()}


def latencies(sends: list[tuple[int, float]], seen_at: list[tuple[float, int]]) -> list[float]:
    """Seconds from each Send press to the first board refresh that counts that drawing."""
    out = []
    for number, pressed in sends:
        shown = next((t for t, count in seen_at if count >= number and t >= pressed), None)
        if shown is not None:
            out.append(shown - pressed)
    return out


async def lesson(url: str, students: int, duration: float, think: float, record: Record, seed: int) -> dict:
    teacher, sends = Teacher(url), []
    code = await teacher.start(7)
    until = time.monotonic() + duration
    await asyncio.gather(teacher.watch(until + 5), *[
        student(url, code, i, until, think, record, sends, random.Random(seed + i)) for i in range(students)])
    final = await teacher.refresh()
    await teacher.visitor.close()
    return {"code": code, "key": teacher.key, "sends": sends, "seen_at": teacher.seen_at, "final_count": final}


def check(result: dict, store: classroom.ClassStore) -> dict:
    """Nothing lost: every confirmed send is in the store once, the board counted them all, each reached it."""
    stored = sorted(d.seq for d in store.drawings(result["code"], result["key"]))
    numbers = sorted(n for n, _ in result["sends"])
    return {"every_send_stored_once": numbers == stored == list(range(1, len(stored) + 1)),
            "board_counts_all": result["final_count"] == len(stored),
            "never_on_board": len(numbers) - len(latencies(result["sends"], result["seen_at"]))}


def run(students: int, duration: float, think: float, seed: int = 0) -> dict:
    """A fresh app on a class store of its own: costs alone, then the lesson; the figures."""
    import tempfile

    logs = ROOT / "logs"
    logs.mkdir(exist_ok=True)
    folder = tempfile.mkdtemp(prefix="bench-class-")
    db = f"{folder}/classes.sqlite3"
    port = free_port()
    process = start_app(port, logs / "bench-serve-class-app.log", env={"STUDIO_CLASS_DB": db})
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(costs_alone(url, process.pid, rounds=1, seed=WARM_UP_SEED))  # loads and warms up the models
        alone = asyncio.run(costs_alone(url, process.pid, rounds=5, seed=seed + 1000))
        record = Record()
        before, started = cpu_seconds(process.pid), time.perf_counter()
        result = asyncio.run(lesson(url, students, duration, think, record, seed))
        wall, spent = time.perf_counter() - started, cpu_seconds(process.pid) - before
        waits = latencies(result["sends"], result["seen_at"])
        return {
            "students": students, "duration_s": round(wall, 1), "think_s": think,
            "sends": len(result["sends"]), "board_refreshes": len(result["seen_at"]),
            "send_to_board_s": summary(waits),
            "actions": {a: summary(v) for a, v in record.seconds.items()},
            "server_cpu_ms_alone": {a: round(1000 * v, 1) for a, v in alone.items()},
            "server_cpu_share": round(spent / wall, 2),
            **check(result, classroom.ClassStore(db)),
            "errors": record.errors[:20], "error_count": len(record.errors),
        }
    finally:
        process.terminate()
        process.wait(timeout=60)

