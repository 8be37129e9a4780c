"""A person's walk through every page in AppTest: change each widget, go to another page, come back.

The pages are read from the app's own `st.navigation` list, so a page added later is walked without editing
this test. What should persist (every widget's value, the drawing) must be as it was, with no exception."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import TESTING_KEY

from tests.drawings import canvas_of

CHOICE_WIDGETS = ("radio", "selectbox", "select_slider", "segmented_control")
OTHER_WIDGETS = ("slider", "number_input", "text_input", "checkbox", "toggle")


def app() -> AppTest:
    return AppTest.from_file("../app.py", default_timeout=180)


def navigation_pages() -> list[str]:
    at = app().run()
    pages = [info["script_path"] for info in at._registered_pages.values()]
    assert len(pages) >= 8, "the app's st.navigation page list could not be read"
    return pages


def keyed_widgets(at: AppTest) -> dict:
    """The widgets a person can set, by key. Those inside a form apply only when it is submitted (on the Train
    page that starts a training): `test_app` submits that form and walks away and back."""
    found = {}
    for kind in CHOICE_WIDGETS + OTHER_WIDGETS:
        for widget in getattr(at, kind):
            if widget.key and not widget.disabled and not widget.form_id:
                found[widget.key] = widget
    return found


def move_away(widget) -> None:
    """Set the widget to a value other than its current one, as a click or a keypress would."""
    kind = widget.type
    if kind in ("radio", "selectbox", "select_slider", "button_group"):
        labels = list(widget.options) if kind != "button_group" else [o.content for o in widget.proto.options]
        current = widget.index if kind in ("radio", "selectbox") else None
        if kind == "button_group":
            current = labels.index(widget.formatted_values[0]) if widget.formatted_values else None
        elif kind == "select_slider":
            current = labels.index(str(widget.format_func(widget.value)))
        other = labels[(current + 1) % len(labels) if current is not None else 0]
        # pick it by the label a person sees: the server maps labels back to values
        widget.root.session_state[TESTING_KEY][widget.id] = lambda value: value
        widget.set_value(other)
    elif kind == "slider":
        widget.set_value(widget.min if widget.value == widget.max else widget.max)
    elif kind == "number_input":
        widget.set_value(widget.value - 1 if widget.max is not None and widget.value >= widget.max else
                         widget.value + 1)
    elif kind == "text_input":
        widget.set_value("1234" if widget.value != "1234" else "56")
    else:  # checkbox, toggle
        widget.set_value(not widget.value)


def values(at: AppTest) -> dict:
    return {key: widget.value for key, widget in keyed_widgets(at).items()}


PAGES = navigation_pages()


def round_trip(at: AppTest, path: str, x_test) -> None:
    """Open another page, come back: no exception, every widget and the page's text as they were."""
    expected, text = values(at), [m.value for m in at.markdown]
    at.switch_page(PAGES[0] if path != PAGES[0] else PAGES[1]).run()
    assert not at.exception, at.exception
    at.switch_page(path).run()
    assert not at.exception, f"back on {path}: {at.exception}"
    assert values(at) == expected, "widget values were lost on the way back"
    assert [m.value for m in at.markdown] == text, "the page does not show what it showed before"
    assert np.array_equal(at.session_state["draw_raw"], canvas_of(x_test[0])), "the drawing was lost"


@pytest.mark.slow
@pytest.mark.parametrize("path", PAGES, ids=[p.rsplit("/", 1)[-1].removesuffix(".py") for p in PAGES])
def test_walk_away_and_back(path, mnist, tmp_path, monkeypatch):
    """Bottom-up (a widget lower on a page often depends on one above it), a round trip after every change."""
    from mnist_models import store

    monkeypatch.setattr(store, "USER_WEIGHTS_DIR", tmp_path)
    (_, _), (x_test, _) = mnist
    at = app()
    at.session_state["draw_raw"] = canvas_of(x_test[0])  # a 7 drawn on the Draw page's canvas
    at.run()
    at.switch_page(path).run()
    assert not at.exception, at.exception
    round_trip(at, path, x_test)

    changed = []
    for key in reversed(list(keyed_widgets(at))):
        widget = keyed_widgets(at).get(key)
        if widget is None:  # an earlier change hid it (e.g. another input mode)
            continue
        before = widget.value
        move_away(widget)
        at.run()
        assert not at.exception, f"{key}: {at.exception}"
        if values(at).get(key, before) != before:
            changed.append(key)
        round_trip(at, path, x_test)
    assert changed or not keyed_widgets(at), f"no widget of {path} could be changed"
