"""A lesson in real browsers: a teacher starts a class and asks for a 3; three students (one on a phone) join with
the code, draw a 3 on Draw & classify and send it; the teacher's board shows all three with both verdicts; a
student who opens the board's address is refused."""

import re

from mnist_models.loadtest import STROKES
from tests.e2e.browser import CANVAS, act, choose, draw, new_page
from tests.e2e.conftest import ARTIFACTS, wait_idle

STUDENTS = (("Ada", 1400, 1000), ("Bo", 1280, 800), ("Cy on a phone", 390, 844))


def start_class(page) -> str:
    page.goto(f"{page.base_url}/class")
    wait_idle(page)
    act(page, lambda: page.get_by_role("button", name="Start a class").click())
    heading = page.get_by_text(re.compile(r"^Class code: [A-Z2-9]{6}$"))
    heading.wait_for()
    return heading.inner_text().split(": ")[1]


def join_and_send(page, code: str, nickname: str, strokes=STROKES[3]) -> None:
    page.goto(f"{page.base_url}/class?code={code}")
    wait_idle(page)
    page.get_by_role("textbox", name="Nickname").fill(nickname)
    act(page, lambda: page.get_by_role("button", name="Join").click())
    page.get_by_text(f"You are {nickname} in class {code}").first.wait_for()
    page.get_by_text("Your teacher asks for a 3.").first.wait_for()
    act(page, lambda: page.get_by_role("link", name="Draw and send").click())
    page.get_by_text("Your teacher asks for a 3.").first.wait_for()  # the request, on Draw too
    page.locator(CANVAS).wait_for()
    draw(page, strokes)
    page.get_by_text(re.compile("^CNN says")).first.wait_for()
    act(page, lambda: page.get_by_role("button", name="Send to class").click())
    page.get_by_text(re.compile(f"^Sent to class {code}")).first.wait_for()


def test_a_round_for_a_three_with_a_teacher_and_three_students(browser, server):
    teacher_context, teacher = new_page(browser)
    teacher.base_url = server
    contexts = [teacher_context]
    try:
        code = start_class(teacher)
        choose(teacher, "Ask the class for", "3")
        act(teacher, lambda: teacher.get_by_role("button", name="Ask for a 3").click())
        teacher.get_by_text("Round: a 3").first.wait_for()
        for nickname, width, height in STUDENTS:
            context, student = new_page(browser, width=width, height=height)
            contexts.append(context)
            student.base_url = server
            join_and_send(student, code, nickname)
        for nickname, _, _ in STUDENTS:  # the board refreshes by itself: no reload, no click
            teacher.get_by_text(re.compile(f"^{nickname}: CNN \\d · CapsNet \\d")).first.wait_for()
        teacher.get_by_text("3 of 3").first.wait_for()
        assert teacher.get_by_text(re.compile(r"^The class's 3s: the CNN read \d of 3 right")).count() == 1
        teacher.screenshot(path=str(ARTIFACTS / "class-board.png"), full_page=True)

        student.reload()  # a new session: the address keeps the phone student in the class
        wait_idle(student)
        student.get_by_text("Your teacher asks for a 3.").first.wait_for()
        assert "/draw" in student.url and "student=" in student.url

        student.goto(f"{server}/class?code={code}&view=board")  # the phone student tries the board's address
        wait_idle(student)
        student.get_by_text("only the teacher's browser that started the class can open it").first.wait_for()
        assert student.get_by_text(re.compile("^Latest drawing of each student")).count() == 0
        student.screenshot(path=str(ARTIFACTS / "class-board-refused-phone.png"), full_page=True)
    finally:
        for context in contexts:
            context.close()
