import dataclasses

import keras
import numpy as np

from mnist_models import registry
from mnist_models.training import TrainSettings, train
from mnist_models.vae import VAE, VAEConfig

TINY = VAEConfig(latent_dim=2, filters=(4, 8), dense_units=16)


def test_shapes_grid_and_kl(mnist_test_float):
    model = VAE(TINY)
    images, labels = mnist_test_float[0][:6], mnist_test_float[1][:6]
    z = model.encode(images)
    assert z.shape == (6, 2)
    assert model.decode(z).shape == (6, 28, 28)
    grid, values = model.latent_grid(5)
    assert grid.shape == (5, 5, 28, 28) and values.shape == (5,) and values[0] < 0 < values[-1]
    zs, ys = model.encode_dataset((images * 255).astype(np.uint8), labels)
    assert zs.shape == (6, 2) and list(ys) == list(labels)
    assert model.interpolate(images[0], images[1], steps=4).shape == (4, 28, 28)
    np.random.seed(3)
    keras.utils.set_random_seed(3)
    expected = (np.random.rand(), float(keras.random.uniform(())))
    np.random.seed(3)
    keras.utils.set_random_seed(3)
    metrics = model.evaluate((images * 255).astype(np.uint8), labels)
    assert metrics["test_kl"] >= 0 and metrics["test_loss"] > metrics["test_recon"]
    assert (np.random.rand(), float(keras.random.uniform(()))) == expected  # process-wide randomness untouched
    assert model.evaluate((images * 255).astype(np.uint8), labels) == metrics  # the same noise every time


def test_dropout_acts_only_while_training(mnist_test_float):
    """Dropout regularises training; encoding and decoding for the pages stay deterministic."""
    model = VAE(dataclasses.replace(TINY, dropout=0.5))
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in model.decoder.layers) == 2
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in VAE(TINY).decoder.layers)
    z = np.array([[0.5, -1.0]] * 2, np.float32)
    np.testing.assert_array_equal(*model.decode(z))
    trained = model.decoder(z, training=True).numpy()
    assert not np.allclose(trained[0], trained[1])


def test_tiny_vae_learns_and_round_trips(tmp_path, mnist_test_float):
    result = train(TrainSettings(model="vae", epochs=2, train_size=1000, batch_size=50, learning_rate=3e-3),
                   out_dir=tmp_path, config=TINY.to_dict())
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert min(result.history["kl"]) >= 0
    loaded = registry.load_from(tmp_path, "vae")
    images = mnist_test_float[0][:8]
    np.testing.assert_allclose(loaded.encode(images), result.model.encode(images), atol=1e-6)


def test_shipped_vaes_meet_the_target():
    manifest = registry.read_manifest()
    assert manifest["vae-mnist"]["metrics"]["test_loss"] <= 145
    assert manifest["vae-mnist"]["config"]["latent_dim"] == 2
    assert "vae-fashion" in manifest
