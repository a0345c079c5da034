import keras
import numpy as np
import pytest

from bt_core.models import networks
from bt_core.errors import ConfigError


def test_paper_cnn_is_the_papers_architecture():
    m = networks.paper_cnn()
    names = [l.__class__.__name__ for l in m.layers]
    assert names == ["InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Dropout",
                     "Flatten", "Dense", "Dense", "Activation"]
    assert m.get_layer("conv1").filters == 32 and m.get_layer("conv1").kernel_size == (3, 3)
    assert m.get_layer("fc").units == 500 and m.get_layer("logit").units == 1
    # 58*58*32*500 + 500 dense weights dominate: about 54 million parameters
    assert 53_000_000 < m.count_params() < 55_000_000


def test_compact_cnn_is_small_and_outputs_probabilities():
    m = networks.build("compact_cnn")
    assert m.count_params() < 1_000_000
    p = m.predict(np.zeros((2, 240, 240, 1), np.float32), verbose=0)
    assert p.shape == (2, 1) and np.all((p >= 0) & (p <= 1))


def test_transfer_model_nests_a_frozen_backbone_and_splits_at_features():
    m = networks.transfer("efficientnet_lite0", weights=None, input_shape=(64, 64, 1))
    bb = m.get_layer("backbone")
    assert not bb.trainable and len(bb.output.shape) == 4
    feats, head = networks.split_at_features(m)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 1)).astype(np.float32)
    full = m.predict(x, verbose=0)
    via = head.predict(feats.predict(x, verbose=0), verbose=0)
    np.testing.assert_allclose(full, via, rtol=1e-5, atol=1e-6)


def test_fine_tuning_unfreezes_only_the_top_layers():
    m = networks.transfer("efficientnet_lite0", weights=None, input_shape=(64, 64, 1), fine_tune_layers=3)
    bb = m.get_layer("backbone")
    trainable = [l for l in bb.layers if l.weights and l.trainable]
    assert 1 <= len(trainable) <= 3


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError):
        networks.build("vgg")
    with pytest.raises(ConfigError):
        networks.backbone_model("nope", weights=None)


def _multiscale_mirror(seed=3):
    return networks.transfer("efficientnet_lite0", weights=None, input_shape=(64, 64, 1), pooling="multiscale",
                           mirror=True, seed=seed)


def test_multiscale_backbone_is_one_map_of_every_depth_and_mirror_makes_it_flip_invariant(tmp_path):
    model = _multiscale_mirror()
    bb = model.get_layer("backbone")
    assert tuple(bb.output.shape[1:]) == (2, 2, 24 + 40 + 80 + 112 + 192 + 320 + 1280)
    assert not bb.trainable_weights and model.get_layer("feature_norm") is not None
    x = np.random.default_rng(1).uniform(0, 255, (3, 64, 64, 1)).astype(np.float32)
    mirror = x[:, :, ::-1].copy()
    p = model.predict(x, verbose=0)
    feats = networks.split_at_features(model)[0]
    a, b = feats.predict(x, verbose=0), feats.predict(mirror, verbose=0)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * np.abs(a).max())
    plain = networks.split_at_features(networks.transfer("efficientnet_lite0", weights=None, input_shape=(64, 64, 1),
                                                     pooling="multiscale", seed=3))[0]
    c, d = plain.predict(x, verbose=0), plain.predict(mirror, verbose=0)
    assert np.abs(c - d).max() > 1e-3 * np.abs(c).max()  # without mirror, a mirror image has other features
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(x, verbose=0), p, atol=1e-6)
    feats, head = networks.split_at(again, "pool")
    assert feats.output.shape[-1] == 2048 and "feature_norm" in [lay.name for lay in head.layers]


def test_multiscale_options_are_validated():
    from bt_core.config import TrainConfig
    with pytest.raises(ConfigError, match="pooling"):
        TrainConfig(model="transfer", pooling="max").validate()
    with pytest.raises(ConfigError, match="fine_tune_from"):
        TrainConfig(model="transfer", pooling="multiscale", fine_tune_from="block14_add").validate()
    with pytest.raises(ConfigError, match="pooling"):
        networks.transfer("efficientnet_lite0", weights=None, input_shape=(64, 64, 1), pooling="max")
