"""One-click trainings for the Train page, sized for a 2-core CPU: each shows something within a few minutes.

`seconds` is what the preset took on this project's 2-core machine, from the start to "finished", measured with
`python -m mnist_models bench presets` while two other trainings shared the CPU (so an idle machine is faster);
the page shows it so nobody starts a run blind.
"""

from __future__ import annotations

import dataclasses

from .training import TrainSettings


@dataclasses.dataclass(frozen=True)
class Preset:
    key: str
    title: str
    what: str  # what the person will see
    settings: TrainSettings
    config: dict = dataclasses.field(default_factory=dict)  # training-only overrides (e.g. harder noise)
    seconds: float = 0.0  # measured on the 2-core machine


PRESETS = [
    Preset("dcgan_from_noise", "DCGAN: digits from noise",
           "A DCGAN from random weights: the preview starts as grey noise, blobs appear within a minute, "
           "then strokes, then digits.",
           TrainSettings(model="dcgan", epochs=1, batch_size=64, learning_rate=5e-4, lr_decay=1.0, init="scratch"),
           config={"ema_momentum": 0.99}, seconds=204),  # the shipped 0.999 averages in too much of the noise
    Preset("cnn_to_fashion", "CNN → Fashion-MNIST",
           "The MNIST CNN, fine-tuned on 20,000 clothing images: it starts reading shirts as digits and within "
           "an epoch sorts most of them right (the confusion matrix fills its diagonal).",
           TrainSettings(model="cnn", dataset="fashion", epochs=1, train_size=20000, batch_size=64,
                         learning_rate=1e-3, lr_decay=1.0, init="shipped", init_dataset="mnist"),
           seconds=26),
    Preset("denoise_harder", "Denoiser: harder noise",
           "The shipped denoising autoencoder, trained on for 20,000 images with noise up to 0.8: compare the "
           "before and after redrawings of very noisy digits.",
           TrainSettings(model="ae_denoising", epochs=1, train_size=20000, batch_size=128, learning_rate=3e-4,
                         lr_decay=1.0, init="in_use"),
           config={"max_noise": 0.8}, seconds=48),
    Preset("vae_latent", "VAE: a latent map from scratch",
           "A 2-D VAE from scratch: the preview is the decoded latent grid, going from one blurry blob to "
           "a map where neighbouring points are similar digits.",
           TrainSettings(model="vae", epochs=2, batch_size=128, learning_rate=2e-3, lr_decay=1.0, init="scratch"),
           seconds=78),
]

BY_KEY = {preset.key: preset for preset in PRESETS}
