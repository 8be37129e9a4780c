import dataclasses

from mnist_models import catalogue, store
from mnist_models.presets import BY_KEY, PRESETS


def test_every_preset_can_start_and_says_how_long_it_took():
    assert len(BY_KEY) == len(PRESETS) >= 3
    for preset in PRESETS:
        settings = preset.settings.resolved()  # valid epochs, sizes, rates, dataset
        spec = catalogue.spec(settings.model)
        fields = {f.name for f in dataclasses.fields(spec.model_class.config_class)}
        assert set(preset.config) <= fields, preset.key
        if settings.init != "scratch":  # the weights it starts from are shipped
            source = settings.init_dataset or settings.dataset
            assert store.zoo_entry(settings.model, source).status == "shipped", preset.key
        assert 0 < preset.seconds < 600, preset.key  # measured, and short enough to watch
        assert preset.title and len(preset.title) <= 32 and preset.what, preset.key
