import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# the class store of every page and app server the tests start: a file of their own, never the repo's data/
os.environ.setdefault("STUDIO_CLASS_DB", os.path.join(tempfile.mkdtemp(prefix="studio-classes-"), "classes.sqlite3"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mnist_models import data  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    return data.load_dataset("mnist")


@pytest.fixture(scope="session")
def mnist_test_float(mnist):
    (_, _), (x_test, y_test) = mnist
    return x_test.astype(np.float32) / 255.0, y_test


@pytest.fixture(scope="session")
def postgres_url():
    from tests import postgres

    with postgres.server() as url:
        yield url
