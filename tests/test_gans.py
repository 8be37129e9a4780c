import numpy as np
import pytest

from mnist_models import metrics, store
from mnist_models.gans import GAN, GANConfig
from mnist_models.training import TrainSettings, train


def tiny(kind: str, **overrides) -> GANConfig:
    base = dict(kind=kind, latent_dim=8, width=4)
    if kind == "aeacgan":
        base.update(noise="uniform", real_label=0.9, fake_label=0.1, input_noise=0.05)
    return GANConfig(**{**base, **overrides})


@pytest.mark.parametrize("kind", ["mlp", "dcgan", "acgan", "aeacgan"])
def test_shapes_ranges_and_reproducible_seeds(kind):
    gan = GAN(tiny(kind))
    images = gan.generate(5, seed=3)
    assert images.shape == (5, 28, 28) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(images, gan.generate(5, seed=3))
    assert not np.array_equal(images, gan.generate(5, seed=4))
    assert gan.sample_grid().shape == (10, 10, 28, 28)
    assert gan.interpolate(1, 2, steps=6).shape == (6, 28, 28)


@pytest.mark.parametrize("kind", ["acgan", "aeacgan"])
def test_conditional_api(kind):
    gan = GAN(tiny(kind))
    assert gan.generate_class([3, 3, 7], seed=1).shape == (3, 28, 28)
    assert gan.class_sweep(seed=0).shape == (10, 28, 28)
    assert gan.render_number("2026", seed=0).shape == (28, 4 * 28)
    for bad in ["", "12a", "-1", "٣", "9" * 41]:
        with pytest.raises(ValueError, match="digits"):
            gan.render_number(bad)
    with pytest.raises(ValueError, match="0–9"):
        gan.generate_class([10])
    assert gan.classify(np.zeros((2, 28, 28))).shape == (2, 10)


def test_unconditional_models_refuse_classes():
    gan = GAN(tiny("dcgan"))
    with pytest.raises(ValueError, match="unconditional"):
        gan.generate_class([1])
    with pytest.raises(ValueError, match="encoder"):
        gan.autoencode(np.zeros((28, 28)))
    with pytest.raises(ValueError, match="kind"):
        GANConfig(kind="stylegan")


def test_categorical_code_joins_the_noise_of_unconditional_models():
    """InfoGAN: the generator takes a code value, the discriminator tells it back, and without labels."""
    gan = GAN(tiny("dcgan", categories=4))
    assert [tuple(i.shape) for i in gan.generator.inputs] == [(None, 8), (None,)]
    assert gan.discriminator.get_layer("code").units == 4
    sweep = gan.class_sweep(seed=2)  # one noise vector drawn with each code
    assert sweep.shape == (4, 28, 28) and not np.array_equal(sweep[0], sweep[1])
    assert gan.sample_grid().shape == (10, 10, 28, 28)
    np.testing.assert_array_equal(gan.generate(6, seed=1), gan.generate(6, seed=1))
    with pytest.raises(ValueError, match="unconditional"):
        gan.generate_class([1])  # a code is not a class: the model gave it its own meaning
    for kind, categories in [("acgan", 10), ("dcgan", 1), ("mlp", -2)]:
        with pytest.raises(ValueError, match="categories"):
            tiny(kind, categories=categories)


def test_autoencode_returns_images(mnist_test_float):
    gan = GAN(tiny("aeacgan"))
    out = gan.autoencode(mnist_test_float[0][:4])
    assert out.shape == (4, 28, 28) and 0.0 <= out.min() and out.max() <= 1.0
    assert gan.autoencode(mnist_test_float[0][:2], classes=5).shape == (2, 28, 28)


@pytest.mark.parametrize("kind, options", [
    ("mlp", {}), ("dcgan", {"batch_norm": True, "disc_hidden": 16, "categories": 3}), ("acgan", {}), ("aeacgan", {})])
@pytest.mark.slow
def test_train_step_changes_every_network(kind, options, mnist):
    (x, y), _ = mnist
    gan = GAN(tiny(kind, **options))
    assert any(layer.__class__.__name__ == "BatchNormalization" for layer in gan.generator.layers) == bool(options)
    assert (gan.discriminator.count_params() > GAN(tiny(kind)).discriminator.count_params()) == bool(options)
    network = gan.compile(2e-4)
    before = {part: [w.copy() for w in net.get_weights()] for part, net in gan.parts().items()}
    logs = network.fit(gan.train_dataset(x[:64], y[:64], 32, seed=0), epochs=1, verbose=0).history
    for part, net in gan.parts().items():
        changed = [not np.array_equal(a, b) for a, b in zip(before[part], net.get_weights(), strict=True)]
        assert all(changed), f"{part} weights did not all change"
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(logs)
    if kind in ("acgan", "aeacgan"):
        assert "class_accuracy" in logs
    assert ("code_accuracy" in logs) == bool(options.get("categories"))
    if kind == "aeacgan":
        assert 0 < logs["reconstruction_mae"][0] < 1


@pytest.mark.slow
def test_moving_average_generator_is_what_training_leaves(mnist):
    """With a very slow average the trained generator stays where its first step took it; without one it moves on
    (Keras's average starts from the weights after the first step)."""
    import keras

    (x, y), _ = mnist
    moved = {}
    for momentum in (0.0, 0.9999):
        keras.utils.set_random_seed(0)
        gan = GAN(tiny("dcgan", ema_momentum=momentum))
        before = gan.generator.get_weights()
        network = gan.compile(2e-4)
        network.fit(gan.train_dataset(x[:640], y[:640], 32, seed=0), epochs=1, verbose=0,
                    callbacks=gan.training_callbacks(x[:640]))
        moved[momentum] = max(np.abs(a - b).max() for a, b in zip(before, gan.generator.get_weights(), strict=True))
    assert moved[0.0] > 1e-4
    assert moved[0.9999] < moved[0.0] / 4  # 20 steps against about one


@pytest.mark.parametrize("recalibrate, kind, options", [
    (True, "dcgan", {}), (False, "dcgan", {}), (True, "acgan", {"cond_batch_norm": True}),
    (True, "aeacgan", {"cond_batch_norm": True, "noise": "uniform"})])
@pytest.mark.slow
def test_averaged_generator_gets_batch_norm_statistics_of_its_own(mnist, monkeypatch, recalibrate, kind, options):
    """After the swap to averaged weights, the BatchNorm statistics are the averaged generator's: inference mode
    then draws what batch statistics would. Kept from the live weights, they would not fit. The AE-AC-GAN's
    batch is half noise, half encoded digits, as in its generator's training step."""
    import keras

    from mnist_models.gans import AdversarialNetwork

    if not recalibrate:
        monkeypatch.setattr(AdversarialNetwork, "recalibrate_batch_norm", lambda self, encoded=None: None)
    (x, y), _ = mnist
    keras.utils.set_random_seed(0)
    gan = GAN(tiny(kind, batch_norm=True, ema_momentum=0.9, **options))
    network = gan.compile(1e-2)
    network.fit(gan.train_dataset(x[:640], y[:640], 32, seed=0), epochs=1, verbose=0,
                callbacks=gan.training_callbacks(x[:640]))
    z = keras.random.uniform((4096, 8), seed=3) if kind == "aeacgan" else keras.random.normal((4096, 8), seed=3)
    inputs = [z, keras.ops.arange(4096) % 10] if gan.config.conditional else z
    if kind == "aeacgan":
        codes, classes = gan.encoded_digits(x[640:])(2048)
        inputs = [keras.ops.concatenate([z[:2048], codes]), keras.ops.concatenate([inputs[1][:2048], classes])]
    by_moving = np.asarray(gan.generator(inputs, training=False))
    gap = np.abs(by_moving - np.asarray(gan.generator(inputs, training=True))).mean()
    assert gap < 0.03 if recalibrate else gap > 0.1, gap  # measured: 0.008 against 0.51


def test_inference_traces_once_for_every_batch_size():
    gan = GAN(tiny("acgan"))
    gan.warm_up()
    for n in (1, 3, 64):
        gan.generate(n)
    assert gan._generate.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_training_saves_weights_evolution_and_losses_that_round_trip(tmp_path, mnist_test_float):
    result = train(TrainSettings(model="aeacgan", epochs=2, test_size=500, train_size=256, batch_size=32),
                   out_dir=tmp_path, config=tiny("aeacgan").to_dict())
    entry = store.read_manifest(tmp_path)["aeacgan-mnist"]
    assert set(entry["weights"]) == {"generator", "discriminator", "encoder"}
    assert {"fid", "fid_real", "inception_score", "inception_score_real", "class_accuracy", "class_diversity",
            "reconstruction_mae"} <= set(entry["metrics"])
    assert entry["metrics"]["fid_real"] < entry["metrics"]["fid"]
    loaded = store.load_from(tmp_path, "aeacgan")
    np.testing.assert_allclose(loaded.generate(4, seed=1), result.model.generate(4, seed=1), atol=1e-6)
    images = mnist_test_float[0][:3]
    np.testing.assert_allclose(loaded.autoencode(images, classes=1), result.model.autoencode(images, classes=1),
                               atol=1e-6)
    assert np.stack(loaded.evolution).shape == (2, 10, 10, 28, 28)
    assert len(loaded.loss_history["d_loss"]) == 2 * 1  # one point per 20 batches; 8 batches an epoch


@pytest.mark.slow
def test_code_prior_is_measured_on_real_digits_saved_and_drawn_from(tmp_path, mnist):
    """Training ends by measuring the code's rates on the training images; `generate` draws codes at those rates,
    after a save and load too."""
    from mnist_models.gans import sample_noise

    result = train(TrainSettings(model="dcgan", epochs=1, test_size=500,
                                 train_size=64, batch_size=32), out_dir=tmp_path,
                   config=tiny("dcgan", categories=3).to_dict())
    assert "code_purity" in result.metrics
    loaded = store.load_from(tmp_path, "dcgan")
    prior = loaded.code_prior
    assert prior.shape == (3,) and prior.sum() == pytest.approx(1.0) and prior.min() > 0
    np.testing.assert_allclose(prior, result.model.code_prior, rtol=1e-6)
    loaded.fit_code_prior(mnist[0][0][:500])  # the same discriminator on other real digits: similar rates
    assert np.abs(loaded.code_prior - prior).max() < 0.1
    loaded.code_prior = np.array([0.0, 0.0, 1.0])  # a model whose every real digit reads as code 2
    np.testing.assert_allclose(loaded.generate(5, seed=4),
                               loaded._run_generator(sample_noise(loaded.config, 5, 4), np.full(5, 2)), atol=1e-6)


@pytest.mark.slow
def test_a_run_restarted_from_its_backup_keeps_the_earlier_epochs_samples_and_losses(tmp_path):
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("the machine went down")

    settings = TrainSettings(model="dcgan", epochs=3, test_size=500, train_size=64, batch_size=16)  # 4 batches an epoch
    run = dict(out_dir=tmp_path / "weights", config=tiny("dcgan").to_dict(), backup_dir=tmp_path / "backup")
    with pytest.raises(RuntimeError, match="went down"):
        train(settings, callbacks=[Crash()], **run)
    result = train(settings, **run)
    entry = store.read_manifest(tmp_path / "weights")["dcgan-mnist"]
    assert entry["resumed_from_epoch"] == 2 and entry["epochs_completed"] == 1 and entry["epochs_total"] == 3
    assert len(entry["seconds_per_epoch"]) == 3  # the training time counts the epochs before the crash
    assert entry["seconds_total"] >= sum(entry["seconds_per_epoch"]) > 0
    assert len(result.model.evolution) == 3  # the two epochs before the crash, and the one after
    assert len(result.model.loss_history["d_loss"]) == 3  # one point an epoch (every 20 batches)
    assert not (tmp_path / "backup").exists()


@pytest.mark.slow
def test_resume_with_a_fresh_discriminator_of_a_new_shape(tmp_path, capsys):
    """--resume --fresh discriminator: the generator continues, the discriminator restarts in a new architecture."""
    from mnist_models import cli

    first = train(TrainSettings(model="dcgan", epochs=1, test_size=500, train_size=64, batch_size=32), out_dir=tmp_path,
                  config=tiny("dcgan").to_dict())
    resumed = store.load_from(tmp_path, "dcgan", "mnist", {"disc_hidden": 16}, fresh_parts=("discriminator",))
    np.testing.assert_allclose(resumed.generate(3, seed=2), first.model.generate(3, seed=2), atol=1e-6)
    assert resumed.discriminator.count_params() > first.model.discriminator.count_params()
    with pytest.raises(ValueError, match="no part"):
        store.load_from(tmp_path, "dcgan", fresh_parts=("critic",))

    base = ["train", "dcgan", "--out", str(tmp_path), "--epochs", "1", "--train-size", "64", "--test-size", "500",
            "--batch-size", "32"]
    assert cli.main([*base, "--fresh", "discriminator"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*base, "--resume", "--fresh", "discriminator", "--set", "disc_hidden=16"]) == 0
    entry = store.read_manifest(tmp_path)["dcgan-mnist"]
    assert entry["config"]["disc_hidden"] == 16 and entry["fresh_parts"] == ["discriminator"]
    assert [run["config"]["disc_hidden"] for run in entry["earlier_runs"]] == [0]
    earlier = entry["earlier_runs"][0]  # the totals count both runs
    assert entry["epochs_total"] == 2
    assert entry["seconds_all_runs"] == pytest.approx(earlier["seconds_total"] + entry["seconds_total"], abs=0.11)
    assert store.load_from(tmp_path, "dcgan").discriminator.count_params() == resumed.discriminator.count_params()


@pytest.mark.slow
def test_a_changed_artifacts_file_is_refused(tmp_path):
    train(TrainSettings(model="gan_mlp", epochs=1, test_size=500, train_size=64, batch_size=32), out_dir=tmp_path,
          config=tiny("mlp").to_dict())
    artifacts = tmp_path / store.read_manifest(tmp_path)["gan_mlp-mnist"]["artifacts"]["file"]
    artifacts.write_bytes(artifacts.read_bytes()[:100])
    with pytest.raises(store.WeightsError, match="sha256"):
        store.load_from(tmp_path, "gan_mlp")


def test_frechet_distance_and_inception_score(mnist):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 16))
    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    other = rng.normal(size=(2000, 16))
    assert metrics.frechet_distance(features, other) < 0.5  # same distribution, sampling noise only
    assert metrics.frechet_distance(features, other + 3.0) == pytest.approx(16 * 9.0, rel=0.05)
    confident = np.eye(10)[np.arange(1000) % 10]
    assert metrics.inception_score(confident) == pytest.approx(10.0, rel=1e-3)
    assert metrics.inception_score(np.full((1000, 10), 0.1)) == pytest.approx(1.0)
    assert metrics.inception_score(np.eye(10)[np.zeros(1000, int)]) == pytest.approx(1.0)
    classes = np.arange(2000) % 10
    assert metrics.within_class_spread(features, classes) == pytest.approx(4.0, rel=0.05)  # √16 for N(0, I₁₆)
    assert metrics.within_class_spread(features[classes], classes) < 1e-6  # one image per class
    codes = np.arange(2000) % 5
    assert metrics.code_purity(codes, codes * 2) == 1.0  # each code draws one class
    assert metrics.code_purity(codes, np.arange(2000) // 200) == pytest.approx(0.1)  # codes ignore the classes


@pytest.mark.slow
def test_shipped_cnn_features_separate_real_digits_from_noise(mnist):
    (x_train, _), (x_test, _) = mnist
    cnn = store.load("cnn")
    _, real_a = cnn.classify_with_features(x_train[:2000] / 255.0)
    _, real_b = cnn.classify_with_features(x_test[:2000] / 255.0)
    _, noise = cnn.classify_with_features(np.random.default_rng(0).uniform(size=(2000, 28, 28)))
    same = metrics.frechet_distance(real_a, real_b)
    assert same < 0.05 * metrics.frechet_distance(real_a, noise)


@pytest.mark.slow
@pytest.mark.parametrize("name, floor", [("acgan", 0.985), ("aeacgan", 0.98)])
def test_shipped_conditional_gans_draw_the_class_asked_for(name, floor):
    """The shipped CNN reads 1,000 generated digits as the classes they were asked to be (`evaluate` uses 10,000)."""
    classes = np.arange(1000) % 10
    images = store.load(name).generate_class(classes, seed=123)
    accuracy = (store.load("cnn").classify(images).argmax(1) == classes).mean()
    assert accuracy >= floor, accuracy


@pytest.mark.slow
def test_shipped_aeacgan_draws_varied_digits_and_redraws_faithfully(mnist):
    """Issue 20's AE-AC-GAN targets, on fewer images than `evaluate`: variety within a class ≥ 0.8 of the real
    digits' (it drew one prototype per class before), and the encoder → generator round trip within 0.03 MAE."""
    _, (x_test, _) = mnist
    gan, cnn = store.load("aeacgan"), store.load("cnn")
    real = x_test[:2000] / 255.0
    fakes = gan.generate_class(np.arange(2000) % 10, seed=11)
    real_probs, real_features = cnn.classify_with_features(real)
    fake_probs, fake_features = cnn.classify_with_features(fakes)
    variety = metrics.class_diversity(fake_features, fake_probs.argmax(1), real_features, real_probs.argmax(1))
    assert variety >= 0.8, variety
    assert np.abs(gan.autoencode(real[:1000]) - real[:1000]).mean() <= 0.03


@pytest.mark.slow
def test_class_conditional_options_train_every_network(mnist):
    """Conditional BatchNorm, a projection discriminator and the hinge loss together: one epoch changes every
    weight, the generator's BatchNorms are per class, and the discriminator takes the class beside the image."""
    import keras

    from mnist_models.gans import ConditionalBatchNorm

    (x, y), _ = mnist
    keras.utils.set_random_seed(0)
    gan = GAN(tiny("acgan", batch_norm=True, cond_batch_norm=True, projection=True, adversarial_loss="hinge",
                   disc_hidden=16))
    assert sum(isinstance(layer, ConditionalBatchNorm) for layer in gan.generator.layers) == 3
    assert [tuple(i.shape) for i in gan.discriminator.inputs] == [(None, 28, 28), (None,)]
    before = {part: [w.copy() for w in net.get_weights()] for part, net in gan.parts().items()}
    logs = gan.compile(2e-4).fit(gan.train_dataset(x[:64], y[:64], 32, seed=0), epochs=1, verbose=0).history
    for part, net in gan.parts().items():
        # the real/fake bias may stay: while every logit is inside the hinge's margin its gradients (−1 per real
        # image, +1 per fake) cancel, as they should
        unchanged = {w.path for w, a, b in zip(net.weights, before[part], net.get_weights(), strict=True)
                     if np.array_equal(a, b)}
        assert unchanged <= ({"real_fake/bias"} if part == "discriminator" else set()), part
    assert np.isfinite(logs["d_loss"][0]) and "class_accuracy" in logs
    assert gan.classify(np.zeros((3, 28, 28))).shape == (3, 10)
    assert gan.generate_class([1, 2], seed=0).shape == (2, 28, 28)


def test_conditional_batch_norm_scales_and_shifts_per_class():
    """At its start it is a plain BatchNorm; a class's own shift moves that class's features only."""
    import keras

    from mnist_models.gans import ConditionalBatchNorm

    features = np.random.default_rng(0).normal(2.0, 3.0, (6, 4, 4, 5)).astype(np.float32)
    classes = np.array([0, 3, 3, 1, 0, 3])
    layer = ConditionalBatchNorm(10)
    plain = keras.layers.BatchNormalization(center=False, scale=False)
    np.testing.assert_allclose(layer([features, classes], training=True), plain(features, training=True),
                               atol=1e-5)
    beta = np.zeros((10, 5), np.float32)
    beta[3] = 1.0
    layer.beta.assign(beta)
    shifted = np.asarray(layer([features, classes], training=True) - plain(features, training=True))
    np.testing.assert_allclose(shifted[classes == 3], 1.0, atol=1e-5)
    np.testing.assert_allclose(shifted[classes != 3], 0.0, atol=1e-5)


def test_projection_discriminator_judges_the_image_as_the_class_given():
    """The real/fake logit changes with the class it is told the image shows; the class head does not."""
    gan = GAN(tiny("acgan", projection=True))
    embedding = gan.discriminator.get_layer("class_embedding")
    embedding.set_weights([np.random.default_rng(0).normal(size=embedding.get_weights()[0].shape)])
    images = np.random.default_rng(1).uniform(-1, 1, (4, 28, 28)).astype(np.float32)
    as_3 = gan.discriminator([images, np.full(4, 3)], training=False)
    as_5 = gan.discriminator([images, np.full(4, 5)], training=False)
    assert not np.allclose(as_3[0], as_5[0])
    np.testing.assert_allclose(as_3[1], as_5[1])


def test_hinge_loss_is_zero_beyond_the_margin_and_refuses_unknown_losses():
    gan = GAN(tiny("acgan", adversarial_loss="hinge"))
    network = gan.network
    assert float(network._discriminator_loss(np.full(4, 1.5), np.full(4, -2.0))) == 0.0
    assert float(network._discriminator_loss(np.zeros(4), np.zeros(4))) == pytest.approx(2.0)
    assert float(network._generator_loss(np.full(4, 0.5))) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="adversarial_loss"):
        tiny("acgan", adversarial_loss="wasserstein")
    for kind, options in [("acgan", {"cond_batch_norm": True}), ("dcgan", {"batch_norm": True,
                                                                         "cond_batch_norm": True}),
                          ("dcgan", {"projection": True})]:
        with pytest.raises(ValueError, match="cond_batch_norm|projection"):
            tiny(kind, **options)


def test_prior_gap_is_the_squared_wasserstein_distance_of_each_code_dimension():
    from mnist_models.gans import prior_gap

    noise = np.random.default_rng(0).uniform(size=(256, 4)).astype(np.float32)
    assert float(prior_gap(noise[::-1], noise)) == 0.0  # the same values in another order
    assert float(prior_gap(noise + 0.1, noise)) == pytest.approx(0.01, rel=1e-4)
    corner = noise * 0.1  # codes crowded near 0, as the shipped AE-AC-GAN's encoder makes them
    assert float(prior_gap(corner, noise)) > 0.05
    with pytest.raises(ValueError, match="prior_matching"):
        tiny("acgan", prior_matching=1.0)


@pytest.mark.slow
def test_prior_matching_spreads_the_encoders_codes_like_the_noise(mnist):
    """A few steps with a large weight bring the codes' spread towards the noise's; the gap is logged."""
    import keras

    from mnist_models.gans import prior_gap, sample_noise

    (x, y), _ = mnist
    gaps = {}
    for weight in (0.0, 100.0):
        keras.utils.set_random_seed(0)
        gan = GAN(tiny("aeacgan", prior_matching=weight))
        gan.compile(1e-3).fit(gan.train_dataset(x[:640], y[:640], 64, seed=0), epochs=1, verbose=0)
        codes = gan.encoder(x[:256] / 127.5 - 1.0, training=False)
        gaps[weight] = float(prior_gap(codes, sample_noise(gan.config, len(codes), seed=1)))
    assert gaps[100.0] < gaps[0.0] / 2, gaps  # measured: 0.055 against 0.217
