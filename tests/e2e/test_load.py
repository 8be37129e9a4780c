"""Load, as a correctness test: twenty visitors at once on one `streamlit run app.py`, each drawing its own digit
stroke by stroke, sliding a latent, asking the ACGAN for its own class and drawing its own pair of digits with two
pens (`mnist_models.loadtest`: light clients that speak Streamlit's websocket protocol, so the visitors leave the
server the CPU). No error, and no visitor ever sees a result that differs from what its own input shows when it is
alone on the server.

Latency and CPU figures come from `python -m mnist_models bench serve`, never from a timed test; this one writes
what it measured to test-artifacts/load-test.json for a look."""

import json

import pytest

from mnist_models import loadtest
from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.load

SESSIONS = 20
DURATION_S = 30


def test_twenty_visitors_at_once_see_only_their_own_results(server):
    record = loadtest.Record()
    loadtest.run_beside(loadtest.alone(server, record, None, repeats=1), timeout=600)  # each input alone
    loadtest.run_beside(loadtest.class_of(server, SESSIONS, DURATION_S, 0.5, record, seed=0),
                        timeout=DURATION_S + 900)  # a safety net: each visitor also gives up on a silent server
    loadtest.check_drawings(record)  # every drawing is new: its truth is what the models read from it alone
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load-test.json").write_text(json.dumps(
        {action: loadtest.summary(seconds) for action, seconds in record.seconds.items()}, indent=2))
    assert not record.errors, "\n".join(record.errors[:20])
    assert not record.crossed, "\n".join(record.crossed[:20])
    assert all(len(record.seconds[action]) >= SESSIONS for action in ("stroke", "class", "pair stroke"))


def test_a_class_sends_drawings_and_every_one_reaches_the_store_and_the_board(server):
    """Twelve students join a class, draw and send for 20 s while the teacher's board reruns on its timer
    (`mnist_models.classload`, what `bench serve --class` measures)."""
    import os

    from mnist_models import classload, classroom

    record = loadtest.Record()
    result = loadtest.run_beside(classload.lesson(server, 12, 20, 0.5, record, seed=5), timeout=900)
    assert not record.errors, record.errors[:5]
    assert len(result["sends"]) >= 12
    assert classload.check(result, classroom.ClassStore(os.environ["STUDIO_CLASS_DB"])) == {
        "every_send_stored_once": True, "board_counts_all": True, "never_on_board": 0}
