import dataclasses

import keras
import numpy as np
import pytest

from mnist_models import store
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


def test_refined_inference_is_deterministic_and_reports_the_encoder_alone(mnist_test_float):
    """With `refine_steps`, encode and evaluate use the refined q(z|x); the same input gives the same answer, and
    evaluate still reports the encoder alone; the scatter plot keeps the encoder's fast means. (That refining
    lowers the loss is measured on the shipped VAE: an untrained tiny decoder barely depends on z.)"""
    images, labels = mnist_test_float[0][:16], mnist_test_float[1][:16]
    keras.utils.set_random_seed(0)
    plain = VAE(TINY)
    refined = VAE(dataclasses.replace(TINY, refine_steps=20))
    refined.network.set_weights(plain.network.get_weights())
    digits = (images * 255).round().astype(np.uint8)
    scores, before = refined.evaluate(digits, labels), plain.evaluate(digits, labels)
    assert scores["test_loss_encoder"] == pytest.approx(before["test_loss"])
    assert scores["test_loss"] != scores["test_loss_encoder"] and "test_loss_encoder" not in before
    assert refined.evaluate(digits, labels) == scores
    np.testing.assert_array_equal(refined.encode(images), refined.encode(images))
    assert not np.allclose(refined.encode(images), plain.encode(images), atol=1e-3)
    np.testing.assert_allclose(refined.encode_dataset(digits, labels)[0], plain.encode(images), atol=1e-5)


@pytest.mark.slow
def test_tiny_vae_learns_and_round_trips(tmp_path, mnist_test_float):
    result = train(TrainSettings(model="vae", epochs=2, test_size=500,
                                 train_size=1000, batch_size=50, learning_rate=3e-3),
                   out_dir=tmp_path, config=TINY.to_dict())
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert min(result.history["kl"]) >= 0
    loaded = store.load_from(tmp_path, "vae")
    images = mnist_test_float[0][:8]
    np.testing.assert_allclose(loaded.encode(images), result.model.encode(images), atol=1e-6)


@pytest.mark.slow
def test_shipped_vaes_meet_the_target(mnist_test_float):
    """Issue 20's target, test loss ≤ 140 with a 2-D latent, for q(z|x) as the shipped VAE infers it (the
    encoder, refined); re-scored here on the first 2,000 test digits (measured 138.60; the full test set
    137.86), with the encoder alone still scoring worse (measured 145.54)."""
    manifest = store.read_manifest()
    assert manifest["vae-mnist"]["config"]["latent_dim"] == 2
    images, labels = mnist_test_float
    scores = store.load("vae").evaluate((images[:2000] * 255).round().astype(np.uint8), labels[:2000])
    assert scores["test_loss"] <= 140 < scores["test_loss_encoder"]
    assert "vae-fashion" in manifest


@pytest.mark.slow
def test_semi_amortised_training_learns_from_the_refined_posterior(tmp_path):
    config = dataclasses.replace(TINY, refine_steps=5)
    result = train(TrainSettings(model="vae", epochs=2, test_size=500,
                                 train_size=500, batch_size=50, learning_rate=3e-3),
                   out_dir=tmp_path, config=config.to_dict())
    history = result.history
    assert history["loss"][-1] < history["loss"][0]
    assert all(r < e for r, e in zip(history["loss"], history["encoder_loss"], strict=True))  # refining helps
    assert store.load_from(tmp_path, "vae").config.refine_steps == 5
