"""The patch model's symmetry option: the head sees each cell beside its difference from the mirror
image's map (bt_core.models.patch.Asymmetry), in the full model and on the cached training path alike."""
import keras
import numpy as np
import pytest

from bt_core.config import TrainConfig
from bt_core.data import sources
from bt_core.errors import ConfigError
from bt_core.models import patch
from bt_core.models.patch_training import PatchTrainer
from tests.test_sources import make_source


def _asymmetry_map(model, x):
    from bt_core.explain.gradcam_model import find_target_layer, split_chain

    target, head, *_ = split_chain(model)
    assert target is model.get_layer("backbone") == find_target_layer(model)  # a linear chain: Grad-CAM's map
    inp = keras.Input(model.inputs[0].shape[1:])
    y = inp
    for layer in head:
        y = layer(y)
    return keras.Model(inp, y).predict(x, verbose=0)


def test_asymmetry_is_zero_for_a_mirror_symmetric_slice_and_not_for_a_one_sided_lesion():
    model = patch.build(weights=None, image_size=64, seed=0, symmetry=True)
    yy, xx = np.mgrid[:64, :64]
    head = (np.hypot(yy - 32, xx - 31.5) < 26) * 120.0
    lesion = head.copy()
    lesion[np.hypot(yy - 30, xx - 18) < 6] = 250  # one-sided
    x = np.stack([head, lesion]).astype(np.float32)[..., None]
    maps = _asymmetry_map(model, x)
    c = maps.shape[-1] // 2
    assert maps.shape[1:3] == (4, 4) and c > 0
    scale = np.abs(maps[..., :c]).max()  # untrained weights: small maps, so compare with their own size
    assert np.abs(maps[0, ..., c:]).max() < 1e-3 * scale  # a symmetric head: no difference anywhere
    assert np.abs(maps[1, ..., c:]).max() > 0.05 * scale
    out = model.predict(x, verbose=0)
    assert out["prob"].shape == (2, 1) and out["patch_logit"].shape == (2, 4, 4, 1)
    from bt_core.explain import gradcam

    answer = patch.answer_model(model)
    heat, prob = gradcam.explain_with_prob(answer, x)  # Grad-CAM walks the chain through the symmetric backbone
    assert heat.shape == (2, 64, 64) and np.isfinite(heat).all()
    np.testing.assert_allclose(prob, out["prob"][:, 0], atol=1e-5)


def test_cached_training_path_answers_as_the_saved_model_does(tmp_path):
    """With the shipped ImageNet weights (untrained ones give maps too small for float16 to keep), the cached
    maps must be the saved model's own: its image channels and its |image - mirror| channels alike."""
    from bt_core.data import prepare

    a = make_source(tmp_path / "lgg_flair", patients=3, seed=1, masks=True)
    b = make_source(tmp_path / "ixi_t1", patients=3, seed=2, classes=("no",))
    specs = sources.specs_from([str(a), str(b)])
    ds = sources.load_sources(specs, size=64)
    cfg = TrainConfig(model="patch", backbone_weights="default", epochs=1, batch_size=8, lr=1e-3, image_size=64,
                      views=1, freeze_backbone=True, symmetry=True, dropout=0.0).validate()
    trainer = PatchTrainer(cfg, ds, *sources.load_masks(ds, specs))
    assert trainer.acts.shape[1:] == (4, 4, 2 * 112)
    model, hist = trainer.fit(np.arange(len(ds)))
    assert len(hist["loss"]) == 1
    x = prepare.as_batch(ds.images, 1, cfg.preprocess)
    inp = keras.Input((64, 64, 1))
    y = model.get_layer("rescale")(model.get_layer("grey_to_rgb")(inp))
    maps = keras.Model(inp, model.get_layer("backbone")(y)).predict(x, verbose=0)
    cached = trainer.acts[: len(ds)].astype(np.float32)
    for part in (slice(0, 112), slice(112, None)):  # the image's map, then its difference from the mirror's
        scale = np.abs(maps[..., part]).max()
        assert scale > 0.1  # real features, which a wrong mirror would change
        np.testing.assert_allclose(cached[..., part], maps[..., part], atol=0.02 * scale)
    path = tmp_path / "m.keras"
    patch.answer_model(model).save(path)
    full = keras.saving.load_model(path).predict(x, verbose=0).reshape(-1)
    np.testing.assert_allclose(trainer.predict(model, np.arange(len(ds))), full, atol=2e-2)  # float16 cache


def test_out_of_distribution_features_of_the_symmetric_model_are_the_image_channels_only():
    from bt_core.evaluation import ood

    model = patch.build(weights="default", image_size=64, seed=0, symmetry=True)  # real features, not ~1e-8
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 1)).astype(np.float32)
    x[:, :, 32:] *= 0.3  # one-sided, so the asymmetry channels differ from the image's own
    feats = ood.feature_model(model, "backbone").predict(x, verbose=0)
    inp = keras.Input((64, 64, 1))
    y = model.get_layer("rescale")(model.get_layer("grey_to_rgb")(inp))
    own = keras.Model(inp, patch.core_of(model)(y)).predict(x, verbose=0).mean((1, 2))
    assert feats.shape == (2, 112) and np.abs(own).max() > 0.1
    np.testing.assert_allclose(feats, own, rtol=1e-4, atol=1e-4 * np.abs(own).max())
    maps = keras.Model(inp, model.get_layer("backbone")(y)).predict(x, verbose=0)  # what Grad-CAM's pass returns
    np.testing.assert_allclose(ood.pool_map(model.get_layer("backbone"), maps), feats, rtol=1e-4,
                               atol=1e-4 * np.abs(own).max())
    plain = patch.build(weights=None, image_size=64, seed=0)
    assert ood.feature_model(plain, "backbone").output.shape[-1] == 112  # the plain model's map as it was


def test_symmetry_needs_the_patch_model():
    TrainConfig(model="patch", image_size=64, symmetry=True).validate()  # fine-tuned upper blocks: allowed
    with pytest.raises(ConfigError, match="symmetry"):
        TrainConfig(model="compact_cnn", symmetry=True).validate()


def test_fine_tuned_symmetric_model_trains_its_upper_blocks_on_both_cached_arrays(tmp_path):
    """Without a frozen backbone the symmetric model's upper blocks (Lite0's 08-10) train, run on the image's
    and on the mirror image's cached activations; the trainer's answers must be the saved model's, and the
    upper blocks must change while the lower ones do not."""
    from bt_core.data import prepare

    a = make_source(tmp_path / "lgg_flair", patients=3, seed=1, masks=True)
    b = make_source(tmp_path / "ixi_t1", patients=3, seed=2, classes=("no",))
    specs = sources.specs_from([str(a), str(b)])
    ds = sources.load_sources(specs, size=64)
    cfg = TrainConfig(model="patch", backbone_weights="default", epochs=1, batch_size=8, lr=1e-2, image_size=64,
                      views=1, symmetry=True, dropout=0.0).validate()
    trainer = PatchTrainer(cfg, ds, *sources.load_masks(ds, specs))
    assert trainer.acts.shape[1:] == (4, 4, 80) and trainer.mirror.shape == trainer.acts.shape
    assert not np.allclose(trainer.acts.astype(np.float32), trainer.mirror.astype(np.float32))
    before = patch.build(weights="default", image_size=64, seed=cfg.seed, symmetry=True)
    model, hist = trainer.fit(np.arange(len(ds)))
    assert len(hist["loss"]) == 1
    old, new = patch.core_of(before), patch.core_of(model)
    assert not np.allclose(old.get_layer("block09_project_conv").get_weights()[0],
                           new.get_layer("block09_project_conv").get_weights()[0])
    np.testing.assert_array_equal(old.get_layer("block06_project_conv").get_weights()[0],
                                  new.get_layer("block06_project_conv").get_weights()[0])
    x = prepare.as_batch(ds.images, 1, cfg.preprocess)
    path = tmp_path / "m.keras"
    patch.answer_model(model).save(path)
    full = keras.saving.load_model(path).predict(x, verbose=0).reshape(-1)
    np.testing.assert_allclose(trainer.predict(model, np.arange(len(ds))), full, atol=2e-2)  # float16 cache


def test_patch_model_on_lite1_is_cut_at_the_same_stage_and_splits_there():
    model = patch.build(weights=None, image_size=64, seed=0, backbone="efficientnet_lite1")
    trunk = patch.core_of(model)
    assert model.name == "patch_lite1"
    assert trunk.layers[-1].name == "block14_add" and patch.fine_tune_from(trunk) == "block10_add"
    assert patch.fine_tune_from(patch.core_of(patch.build(weights=None, image_size=64, seed=0))) == "block07_add"
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 1)).astype(np.float32)
    out = model.predict(x, verbose=0)
    assert out["patch_logit"].shape == (2, 4, 4, 1)
    lower, upper = patch.split(model)
    assert lower.output.shape[-1] == 80  # the end of stage 4 (80 channels), where Lite1's fine-tuning starts
    np.testing.assert_allclose(upper.predict(lower.predict(x, verbose=0), verbose=0)["prob"], out["prob"], atol=1e-5)
    with pytest.raises(ConfigError, match="EfficientNet-Lite backbone"):
        patch.build(weights=None, image_size=64, backbone="resnet50v2")
    with pytest.raises(ConfigError, match="EfficientNet-Lite backbone"):
        TrainConfig(model="patch", backbone="resnet50v2", image_size=64).validate()


def _random_lite1_weights(path):
    """A Lite1 weights file in the shipped format, of random weights (CI has no converted Lite1 file)."""
    import h5py

    from bt_core.models import efficientnet_lite as lite

    model = lite.efficientnet_lite1(input_shape=(64, 64, 3))
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["variant"] = lite.WEIGHTS_FORMAT, "lite1"
        for layer in model.layers:
            for i, w in enumerate(layer.get_weights()):
                f.create_dataset(lite.weight_key(layer.name, i), data=w.astype("float16"))
    return path


def test_the_activation_cache_of_lite1_is_not_lite0s(tmp_path, monkeypatch):
    from bt_core.models import efficientnet_lite as lite

    real, fake = lite.default_weights_path, _random_lite1_weights(tmp_path / "lite1.h5")
    monkeypatch.setattr(lite, "default_weights_path", lambda variant="lite0": fake if variant == "lite1" else real())
    monkeypatch.setenv("BT_CACHE_DIR", str(tmp_path / "cache"))
    a = make_source(tmp_path / "lgg_flair", patients=2, seed=1, masks=True)
    specs = sources.specs_from([str(a)])
    ds = sources.load_sources(specs, size=64)
    masks, has_mask = sources.load_masks(ds, specs)
    acts = {}
    for backbone in ("efficientnet_lite0", "efficientnet_lite1"):
        cfg = TrainConfig(model="patch", backbone=backbone, backbone_weights="default", image_size=64,
                          dropout=0.0).validate()
        acts[backbone] = PatchTrainer(cfg, ds, masks, has_mask).acts
    assert len(list((tmp_path / "cache").glob("patchacts-*.npy"))) == 2  # one cache file per backbone
    assert acts["efficientnet_lite0"].shape == acts["efficientnet_lite1"].shape  # both cut where stage 4 ends
    assert not np.array_equal(acts["efficientnet_lite0"], acts["efficientnet_lite1"])


def test_models_saved_with_the_old_trunk_name_still_find_their_trunk(monkeypatch):
    """Symmetric models saved before 2026-12-07 (the shipped one included) named their trunk 'lite0_trunk'."""
    monkeypatch.setattr(patch, "CORE", "lite0_trunk")
    old = patch.build(weights=None, image_size=64, seed=0, symmetry=True)
    monkeypatch.undo()
    assert patch.core_of(old).name == "lite0_trunk" and patch.fine_tune_from(patch.core_of(old)) == "block07_add"
    assert patch.core_of(patch.build(weights=None, image_size=64, seed=0, symmetry=True)).name == "trunk"
