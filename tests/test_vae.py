import dataclasses

import keras
import numpy as np
import pytest

from mnist_models import registry
from mnist_models.training import TrainSettings, train
from mnist_models.vae import VAE, VAEConfig, amortization_gap, importance_weighted_loss

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


def test_encoder_sees_shifted_digits_and_the_loss_scores_the_originals(mnist_test_float):
    images = (mnist_test_float[0][:64] * 255).astype(np.uint8)
    labels = mnist_test_float[1][:64]
    shifted, originals = next(iter(VAE(dataclasses.replace(TINY, encoder_shift=1))
                                   .train_dataset(images, labels, 64, seed=0)))
    plain, same = next(iter(VAE(TINY).train_dataset(images, labels, 64, seed=0)))
    np.testing.assert_array_equal(plain, same)
    np.testing.assert_array_equal(np.sort(originals.numpy().ravel()), np.sort(images.ravel().astype(np.float32) / 255))
    moved = [not np.array_equal(a, b) for a, b in zip(shifted.numpy(), originals.numpy(), strict=True)]
    assert 0.5 < np.mean(moved) < 1  # 8 of the 9 offsets in ±1 px move a digit
    for a, b in zip(shifted.numpy(), originals.numpy(), strict=True):  # each is its original, moved ≤ 1 px
        assert any(np.array_equal(a, np.roll(np.pad(b, 1), (dy, dx), (0, 1))[1:-1, 1:-1])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_encoder_sees_noisy_digits_and_the_loss_scores_the_clean_ones(mnist_test_float):
    images = (mnist_test_float[0][:64] * 255).astype(np.uint8)
    noisy, originals = next(iter(VAE(dataclasses.replace(TINY, encoder_noise=0.3))
                                 .train_dataset(images, mnist_test_float[1][:64], 64, seed=0)))
    np.testing.assert_array_equal(np.sort(originals.numpy().ravel()), np.sort(images.ravel().astype(np.float32) / 255))
    assert np.std(noisy.numpy() - originals.numpy()) == pytest.approx(0.3, rel=0.02)
    again, _ = next(iter(VAE(dataclasses.replace(TINY, encoder_noise=0.3))
                         .train_dataset(images, mnist_test_float[1][:64], 64, seed=0)))
    np.testing.assert_array_equal(noisy, again)  # reproducible from the seed


def test_refined_inference_lowers_the_loss_deterministically(mnist_test_float):
    """With `refine_steps`, encode and evaluate use the refined q(z|x); the same input gives the same answer, and
    evaluate still reports the encoder alone; the scatter plot keeps the encoder's fast means."""
    images, labels = mnist_test_float[0][:16], mnist_test_float[1][:16]
    plain = VAE(TINY)
    refined = VAE(dataclasses.replace(TINY, refine_steps=20))
    refined.network.set_weights(plain.network.get_weights())
    digits = (images * 255).round().astype(np.uint8)
    scores, before = refined.evaluate(digits, labels), plain.evaluate(digits, labels)
    assert scores["test_loss_encoder"] == pytest.approx(before["test_loss"])
    assert scores["test_loss"] < scores["test_loss_encoder"] and "test_loss_encoder" not in before
    assert refined.evaluate(digits, labels) == scores
    np.testing.assert_array_equal(refined.encode(images), refined.encode(images))
    assert not np.allclose(refined.encode(images), plain.encode(images), atol=1e-3)
    np.testing.assert_allclose(refined.encode_dataset(digits, labels)[0], plain.encode(images), atol=1e-5)


def test_amortization_gap_refines_the_encoders_posterior(mnist_test_float):
    """Refining q(z|x) per image can only lower the loss of the same model, and it is the loss `evaluate` uses."""
    model = VAE(TINY)
    images = mnist_test_float[0][:20]
    gap = amortization_gap(model, images, steps=30)
    assert gap["refined"] < gap["amortized"] and gap["gap"] == pytest.approx(gap["amortized"] - gap["refined"])
    scored = model.evaluate((images * 255).round().astype(np.uint8), mnist_test_float[1][:20])["test_loss"]
    assert scored == pytest.approx(gap["amortized"], rel=0.02)  # one posterior sample against 64


def test_tiny_vae_learns_and_round_trips(tmp_path, mnist_test_float):
    result = train(TrainSettings(model="vae", epochs=2, train_size=1000, batch_size=50, learning_rate=3e-3),
                   out_dir=tmp_path, config=TINY.to_dict())
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert min(result.history["kl"]) >= 0
    loaded = registry.load_from(tmp_path, "vae")
    images = mnist_test_float[0][:8]
    np.testing.assert_allclose(loaded.encode(images), result.model.encode(images), atol=1e-6)


def test_shipped_vaes_meet_the_target(mnist_test_float):
    """Issue 20's target, test loss ≤ 140 with a 2-D latent, for q(z|x) as the shipped VAE infers it (the
    encoder, refined); re-scored here on the first 2,000 test digits (measured 138.60; the full test set
    137.86), with the encoder alone still scoring worse (measured 145.54)."""
    manifest = registry.read_manifest()
    entry = manifest["vae-mnist"]
    assert entry["metrics"]["test_loss"] <= 140 and entry["config"]["latent_dim"] == 2
    images, labels = mnist_test_float
    scores = registry.load("vae").evaluate((images[:2000] * 255).round().astype(np.uint8), labels[:2000])
    assert scores["test_loss"] <= 140 < scores["test_loss_encoder"]
    assert "vae-fashion" in manifest


def test_importance_sampling_tightens_the_bound(mnist_test_float):
    """More importance samples can only tighten the bound; with one it is the loss, in expectation."""
    model = VAE(TINY)
    images = mnist_test_float[0][:50]
    one, many = importance_weighted_loss(model, images, samples=1), importance_weighted_loss(model, images, 64)
    assert many < one
    assert one == pytest.approx(amortization_gap(model, images, steps=1)["amortized"], rel=0.02)


def test_semi_amortised_training_learns_from_the_refined_posterior(tmp_path):
    config = dataclasses.replace(TINY, refine_steps=5)
    result = train(TrainSettings(model="vae", epochs=2, train_size=500, batch_size=50, learning_rate=3e-3),
                   out_dir=tmp_path, config=config.to_dict())
    history = result.history
    assert history["loss"][-1] < history["loss"][0]
    assert all(r < e for r, e in zip(history["loss"], history["encoder_loss"], strict=True))  # refining helps
    assert registry.load_from(tmp_path, "vae").config.refine_steps == 5
