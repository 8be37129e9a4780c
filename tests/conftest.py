import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
