"""Tests for bt_core.models.efficientnet_lite: EfficientNet-Lite0 and Lite1 architectures and converted ImageNet weights.

No torch needed. The ImageNet checks skip only when the converted weights file is absent.
Preprocessing used here (what the weights expect): RGB, resized to 224 x 224 (native Lite0 size;
240 also works), float32 scaled to [-1, 1] as x / 127.5 - 1.
"""

import h5py
import numpy as np
import pytest
from skimage import data, transform

from bt_core.errors import ConfigError, ModelError
from bt_core.models.efficientnet_lite import (block_specs, default_weights_path, efficientnet_lite0, efficientnet_lite1,
                                             load_weights, stage_ends)

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
SIZE = 224

needs_weights = pytest.mark.skipif(not default_weights_path().is_file(),
                                   reason="converted Lite0 weights not present")


def _prep(img, size=SIZE):
    x = transform.resize(img, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return (x.astype("float32") / 127.5 - 1.0)


@pytest.fixture(scope="module")
def imagenet_logits():
    model = efficientnet_lite0(input_shape=(SIZE, SIZE, 3), include_top=True,
                               weights=default_weights_path())
    batch = np.stack([_prep(data.chelsea()), _prep(data.coffee())])
    return np.asarray(model(batch, training=False))


@needs_weights
def test_imagenet_top5_cat_and_coffee(imagenet_logits):
    assert imagenet_logits.shape == (2, 1000)
    top5 = np.argsort(-imagenet_logits, axis=1)[:, :5]
    assert CAT_CLASSES & set(top5[0].tolist()), f"chelsea top-5 {top5[0]}"
    assert COFFEE_CLASSES & set(top5[1].tolist()), f"coffee top-5 {top5[1]}"
    # Both are confident, well-known predictions: tabby/Egyptian cat and espresso are top-1.
    assert top5[0, 0] in CAT_CLASSES
    assert top5[1, 0] == 967


def test_feature_map_shape_and_layer_names():
    model = efficientnet_lite0()  # default (240, 240, 3), include_top=False
    assert model.output.shape == (None, 8, 8, 1280)
    out = np.asarray(model(np.zeros((2, 240, 240, 3), "float32"), training=False))
    assert out.shape == (2, 8, 8, 1280)
    assert out.min() >= 0.0 and out.max() <= 6.0  # after ReLU6
    names = [layer.name for layer in model.layers]
    assert names[1:4] == ["stem_conv", "stem_bn", "stem_relu"]
    assert names[-3:] == ["top_conv", "top_bn", "top_relu"]
    assert "block00_expand_conv" not in names and "block15_expand_conv" in names
    assert sum(n.endswith("_add") for n in names) == 9
    assert names == [layer.name for layer in efficientnet_lite0().layers]  # deterministic


@needs_weights
def test_backbone_weights_match_classifier_features():
    backbone = efficientnet_lite0(input_shape=(64, 64, 3), weights="imagenet")
    full = efficientnet_lite0(input_shape=(64, 64, 3), include_top=True,
                              weights=default_weights_path())
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    feats = np.asarray(backbone(x, training=False))
    assert feats.shape == (1, 2, 2, 1280)
    np.testing.assert_allclose(feats.mean(axis=(1, 2)) @ full.get_layer("logits").get_weights()[0]
                               + full.get_layer("logits").get_weights()[1],
                               np.asarray(full(x, training=False)), atol=1e-3)


def test_missing_weights_file_raises(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        efficientnet_lite0(input_shape=(64, 64, 3), weights=tmp_path / "nope.h5")


def test_wrong_weights_file_raises(tmp_path):
    model = efficientnet_lite0(input_shape=(64, 64, 3))
    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("stem_conv/0", data=np.zeros((3, 3, 3, 8), "float16"))
    with pytest.raises(ModelError, match="not an EfficientNet-Lite weights file"):
        load_weights(model, bad)
    with h5py.File(bad, "a") as f:
        f.attrs["format"] = "bt_core.lite0.v1"
    with pytest.raises(ModelError, match="shape"):
        load_weights(model, bad)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ModelError):
        load_weights(model, tmp_path / "junk.h5")


def test_bad_input_shape_raises():
    with pytest.raises(ConfigError):
        efficientnet_lite0(input_shape=(240, 240, 1))


def test_lite1_is_lite0_deeper_with_the_same_widths():
    assert len(block_specs("lite0")) == 16 and len(block_specs("lite1")) == 21
    assert [s[2] for s in block_specs("lite1")][-1] == 320
    assert stage_ends("lite0") == ["block00_project_bn", "block02_add", "block04_add", "block07_add", "block10_add",
                                   "block14_add", "block15_project_bn"]
    assert stage_ends("lite1") == ["block00_project_bn", "block03_add", "block06_add", "block10_add", "block14_add",
                                   "block19_add", "block20_project_bn"]
    model = efficientnet_lite1(input_shape=(64, 64, 3))
    names = [layer.name for layer in model.layers]
    assert model.output.shape == (None, 2, 2, 1280)
    assert "block20_dwconv" in names and "block21_dwconv" not in names
    assert model.count_params() > efficientnet_lite0(input_shape=(64, 64, 3)).count_params()
    with pytest.raises(ConfigError, match="variant"):
        block_specs("lite7")


def test_a_weights_file_of_another_variant_is_refused(tmp_path):
    path = tmp_path / "lite1.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "bt_core.lite0.v1"
        f.attrs["variant"] = "lite1"
    with pytest.raises(ModelError, match="Lite1 weights, not EfficientNet-Lite0"):
        efficientnet_lite0(input_shape=(64, 64, 3), weights=path)
    with pytest.raises(ModelError, match="convert_lite.py --variant lite1"):
        efficientnet_lite1(input_shape=(64, 64, 3), weights=tmp_path / "absent.h5")


@pytest.mark.skipif(not default_weights_path("lite1").is_file(),
                    reason="Lite1 weights not converted (python tools/convert_lite.py --variant lite1)")
def test_lite1_imagenet_top1_cat_and_espresso():
    model = efficientnet_lite1(input_shape=(240, 240, 3), include_top=True, weights="imagenet")
    batch = np.stack([_prep(data.chelsea(), 240), _prep(data.coffee(), 240)])
    top1 = np.argmax(np.asarray(model(batch, training=False)), axis=1)
    assert top1[0] in CAT_CLASSES and top1[1] in COFFEE_CLASSES
