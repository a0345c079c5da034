"""The patch head's feature style (bt_core.config.FEATURE_STYLES): instance normalisation removes what a
slice's map looks like as a whole, MixStyle swaps it between slices in training only; both save and load."""
import subprocess
import sys

import keras
import numpy as np
import pytest

from bt_core.config import TrainConfig
from bt_core.data import sources
from bt_core.errors import ConfigError
from bt_core.models import patch
from bt_core.models.patch_training import PatchTrainer
from tests.test_sources import make_source


def _maps(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4, 4, 6)).astype(np.float32)


def test_instance_norm_gives_the_same_map_whatever_each_channels_scale_and_offset():
    x = _maps()
    rng = np.random.default_rng(1)
    restyled = x * rng.uniform(0.5, 3.0, (8, 1, 1, 6)) + rng.normal(0, 5, (8, 1, 1, 6))  # another "scanner"
    a, b = (np.asarray(patch.InstanceNorm()(v)) for v in (x, restyled.astype(np.float32)))
    np.testing.assert_allclose(a, b, atol=1e-2)  # up to the variance's epsilon
    np.testing.assert_allclose(a.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(axis=(1, 2)), 1, atol=2e-3)


def test_mixstyle_mixes_channel_statistics_in_training_only_and_keeps_each_maps_pattern():
    x = (_maps(16) * np.arange(1, 17)[:, None, None, None] + np.arange(16)[:, None, None, None]).astype(np.float32)
    layer = patch.MixStyle(p=1.0, alpha=0.1, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    y = np.asarray(layer(x, training=True))
    changed = np.abs(y - x).max(axis=(1, 2, 3)) > 1e-3
    assert changed.sum() >= 8  # p=1: every image mixes (a few with themselves, or with lam near 1)
    means = y.mean(axis=(1, 2))
    assert means.min() >= x.mean(axis=(1, 2)).min() - 1e-3 and means.max() <= x.mean(axis=(1, 2)).max() + 1e-3
    normed = np.asarray(patch.InstanceNorm()(y))  # the pattern within each map is the image's own
    np.testing.assert_allclose(normed, np.asarray(patch.InstanceNorm()(x)), atol=2e-2)


@pytest.mark.parametrize("style", ["instance", "mixstyle"])
def test_a_patch_model_with_a_feature_style_saves_loads_and_answers_alike(tmp_path, style):
    model = patch.build(weights=None, image_size=64, seed=0, style=style, symmetry=True, fine_tune=False)
    assert model.get_layer("patch_head").layers[1].name == {"instance": "instance_norm", "mixstyle": "mixstyle"}[style]
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 1)).astype(np.float32)
    path = tmp_path / "m.keras"
    patch.answer_model(model).save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0),
                               patch.answer_model(model).predict(x, verbose=0), atol=1e-6)


def test_the_cached_head_trains_with_mixstyle_on_several_sources(tmp_path):
    a = make_source(tmp_path / "lgg_flair", patients=3, seed=1, masks=True)
    b = make_source(tmp_path / "ixi_t1", patients=3, seed=2, classes=("no",))
    specs = sources.specs_from([str(a), str(b)])
    ds = sources.load_sources(specs, size=64)
    cfg = TrainConfig(model="patch", backbone_weights=None, epochs=2, batch_size=8, lr=1e-3, image_size=64,
                      freeze_backbone=True, symmetry=True, feature_style="mixstyle").validate()
    trainer = PatchTrainer(cfg, ds, *sources.load_masks(ds, specs))
    model, hist = trainer.fit(np.arange(len(ds)))
    assert len(hist["loss"]) == 2 and np.isfinite(hist["loss"]).all()
    assert model.get_layer("patch_head").get_layer("mixstyle") is not None
    p = trainer.predict(model, np.arange(len(ds)))
    np.testing.assert_array_equal(p, trainer.predict(model, np.arange(len(ds))))  # inference: no mixing


def test_a_bad_feature_style_is_one_clear_error():
    with pytest.raises(ConfigError, match="feature style must be one of keep, instance, mixstyle"):
        TrainConfig(model="patch", feature_style="adain").validate()
    with pytest.raises(ConfigError, match="needs the patch model"):
        TrainConfig(model="transfer", feature_style="instance").validate()
    with pytest.raises(ConfigError, match="feature style"):
        patch.head((4, 4, 8), style="adain")
    out = subprocess.run([sys.executable, "-m", "bt_core", "loso", "--data", "no-such-folder",
                          "--model", "patch", "--feature-style", "adain"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice: 'adain'" in out.stderr and "Traceback" not in out.stderr
