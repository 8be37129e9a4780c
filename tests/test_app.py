from streamlit.testing.v1 import AppTest


def test_home_shows_title_and_data_status():
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value.startswith("✏️ MNIST Studio")
    assert any("mnist: cached" in s.value for s in at.success)
    assert len(at.dataframe) == 1
