"""Tests for bt_core.explain.gradcam (heatmap maths, model side) and bt_core.explain.overlay (colour + blending)."""

import io

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

from bt_core.explain import gradcam
from bt_core.errors import ConfigError, ImageError, ModelError
from bt_core.explain.gradcam import (
    explain,
    explain_with_prob,
    find_target_layer,
    gradcam_map,
    gradcam_pp_map,
    upsample,
)
from bt_core.explain.overlay import colorize, overlay, to_png_bytes

SIZE = 32


def tiny_cnn(pool="flatten", seed=0):
    """The conventions' chain: rescaling, two convs, head ending in "logit" then "prob"."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 1))
    z = layers.Rescaling(1 / 255)(inp)
    z = layers.Conv2D(8, 3, activation="relu", padding="same")(z)
    z = layers.MaxPooling2D()(z)
    z = layers.Conv2D(8, 3, activation="relu", padding="same", name="last_conv")(z)
    z = layers.MaxPooling2D()(z)
    z = layers.GlobalAveragePooling2D()(z) if pool == "gap" else layers.Flatten()(z)
    z = layers.Dense(16, activation="relu")(z)
    z = layers.Dense(1, name="logit")(z)
    return keras.Model(inp, layers.Activation("sigmoid", name="prob")(z), name="tiny")


def transfer_like(seed=0):
    """A nested keras Model named "backbone" outputs the feature map, then the usual head."""
    keras.utils.set_random_seed(seed)
    b_in = keras.Input((SIZE, SIZE, 1))
    b = layers.Rescaling(1 / 255)(b_in)
    b = layers.Conv2D(8, 3, strides=2, activation="relu", padding="same")(b)
    b = layers.Conv2D(8, 3, strides=2, activation="relu", padding="same")(b)
    backbone = keras.Model(b_in, b, name="backbone")
    inp = keras.Input((SIZE, SIZE, 1))
    z = layers.GlobalAveragePooling2D()(backbone(inp))
    z = layers.Dense(500, activation="relu")(z)
    z = layers.Dropout(0.3)(z)
    z = layers.Dense(1, name="logit")(z)
    return keras.Model(inp, layers.Activation("sigmoid", name="prob")(z), name="transfer")


def blob_data(n, seed=0):
    """Class 1 = noise + a bright Gaussian blob at a random place; class 0 = noise only."""
    rng = np.random.default_rng(seed)
    x = rng.normal(40, 13, (n, SIZE, SIZE))
    y = (np.arange(n) % 2).astype("float32")
    rng.shuffle(y)
    centres = np.full((n, 2), -1)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in np.flatnonzero(y):
        cy, cx = rng.integers(6, SIZE - 6, 2)
        centres[i] = (cy, cx)
        x[i] += 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
    return np.clip(x, 0, 255).astype("float32")[..., None], y, centres


def random_images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 1)).astype("float32")


@pytest.fixture(scope="module")
def trained():
    """A tiny GAP CNN trained for a few seconds on the blob task (val accuracy is tested)."""
    x, y, centres = blob_data(400, seed=0)
    model = tiny_cnn("gap", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x[:320], y[:320], validation_data=(x[320:], y[320:]), epochs=10,
                     batch_size=16, verbose=0)
    return model, hist.history["val_accuracy"][-1], x[320:], y[320:], centres[320:]


# ------------------------------------------------------------------------- maths on numpy


def test_gradcam_one_channel_positive_gradient_gives_that_channel_normalised():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 5, (4, 5, 2))
    g = np.zeros_like(a)
    g[..., 0] = rng.uniform(-0.5, 1.5, (4, 5))  # positive mean
    g[..., 0] += 1.0 - g[..., 0].mean()
    expected = (a[..., 0] - a[..., 0].min()) / np.ptp(a[..., 0])
    np.testing.assert_allclose(gradcam_map(a, g), expected, atol=1e-6)
    np.testing.assert_allclose(gradcam_pp_map(a, np.abs(g)), expected, atol=1e-6)


def test_negative_gradients_give_zero_map():
    a = np.random.default_rng(1).uniform(0, 1, (6, 6, 3))
    g = -np.ones_like(a)
    for fn in (gradcam_map, gradcam_pp_map):
        out = fn(a, g)
        assert out.shape == (6, 6) and out.dtype == np.float32
        assert np.all(out == 0)


@pytest.mark.parametrize("fn", [gradcam_map, gradcam_pp_map])
def test_constant_or_zero_inputs_give_zeros_not_nan(fn):
    ones, zeros = np.ones((3, 3, 2)), np.zeros((3, 3, 2))
    for a, g in [(ones, ones), (zeros, zeros), (np.random.default_rng(2).random((3, 3, 2)), zeros)]:
        out = fn(a, g)
        assert not np.isnan(out).any() and np.all(out == 0)


def test_gradcam_pp_closed_form_by_hand():
    a = np.zeros((2, 2, 2))
    a[..., 0] = [[1.0, 0.0], [0.0, 0.0]]
    a[..., 1] = [[0.0, 0.0], [0.0, 3.0]]
    g = np.zeros_like(a)
    g[..., 0], g[..., 1] = 1.0, 0.5
    # alpha = g^2 / (2 g^2 + sum(A) g^3); w = sum_ab alpha * relu(g)
    w0 = 4 * (1.0 / (2 + 1 * 1.0)) * 1.0
    w1 = 4 * (0.25 / (0.5 + 3 * 0.125)) * 0.5
    cam = w0 * a[..., 0] + w1 * a[..., 1]
    np.testing.assert_allclose(gradcam_pp_map(a, g), cam / cam.max(), atol=1e-6)
    cam_plain = 1.0 * a[..., 0] + 0.5 * a[..., 1]
    np.testing.assert_allclose(gradcam_map(a, g), cam_plain / cam_plain.max(), atol=1e-6)


def test_maths_rejects_mismatched_shapes():
    with pytest.raises(ConfigError):
        gradcam_map(np.zeros((3, 3, 2)), np.zeros((3, 3, 3)))
    with pytest.raises(ConfigError):
        gradcam_pp_map(np.zeros((3, 3)), np.zeros((3, 3)))


def test_upsample_bilinear_keeps_range_and_size():
    cam = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    up = upsample(cam, (20, 30))
    assert up.shape == (20, 30) and up.dtype == np.float32
    assert up.min() >= 0 and up.max() <= 1 and 0 < up[10, 15] < 1  # interpolated, not nearest
    np.testing.assert_array_equal(upsample(cam, (2, 2)), cam)
    assert np.all(upsample(np.full((4, 4), 0.5, np.float32), (9, 7)) == pytest.approx(0.5))
    with pytest.raises(ConfigError):
        upsample(np.zeros((2, 2, 2)), (4, 4))


# ------------------------------------------------------------------------------ model side


def test_find_target_layer_is_last_conv_or_backbone():
    assert find_target_layer(tiny_cnn()).name == "last_conv"
    assert find_target_layer(transfer_like()).name == "backbone"
    dense_only = keras.Sequential([keras.Input((4,)), layers.Dense(1, name="logit")])
    with pytest.raises(ModelError):
        find_target_layer(dense_only)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_explain_shape_range_and_prob(method):
    model = tiny_cnn()
    x = random_images(3)
    maps, prob = explain_with_prob(model, x, method=method, batch_size=2)
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and not np.isnan(maps).any()
    np.testing.assert_allclose(prob, model.predict(x, verbose=0).ravel(), atol=1e-5)
    np.testing.assert_array_equal(explain(model, x, method=method, batch_size=2), maps)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_constant_image_gives_no_nan(method):
    for value in (0.0, 128.0):
        maps = explain(tiny_cnn(), np.full((2, SIZE, SIZE, 1), value, np.float32), method=method)
        assert maps.shape == (2, SIZE, SIZE) and not np.isnan(maps).any()
        assert maps.min() >= 0 and maps.max() <= 1


def test_no_tumour_uses_negated_gradient(monkeypatch):
    seen = []
    real = gradcam._forward_and_gradients

    def spy(*args):
        out = real(*args)
        seen.append(out[2:4])  # (score, gradients)
        return out

    monkeypatch.setattr(gradcam, "_forward_and_gradients", spy)
    model, x = tiny_cnn(), random_images(2, seed=3)
    explain(model, x, target="tumour")
    explain(model, x, target="no_tumour")
    (s_pos, g_pos), (s_neg, g_neg) = seen
    assert np.abs(g_pos).max() > 0
    np.testing.assert_allclose(s_neg, -s_pos, rtol=1e-6)
    np.testing.assert_allclose(g_neg, -g_pos, rtol=1e-6, atol=1e-9)
    # so the Grad-CAM channel weights (spatial means of the gradient) are the negatives too
    np.testing.assert_allclose(g_neg.mean(axis=(1, 2)), -g_pos.mean(axis=(1, 2)), atol=1e-9)


def test_nested_backbone_model_runs():
    model = transfer_like()
    x = random_images(2, seed=4)
    for method in ("gradcam", "gradcam++"):
        maps, prob = explain_with_prob(model, x, method=method)
        assert maps.shape == (2, SIZE, SIZE) and maps.min() >= 0 and maps.max() <= 1
        np.testing.assert_allclose(prob, model.predict(x, verbose=0).ravel(), atol=1e-5)


def test_explicit_layer_by_name_and_bad_inputs():
    model = tiny_cnn()
    x = random_images(1)
    assert explain(model, x, layer="last_conv").shape == (1, SIZE, SIZE)
    with pytest.raises(ModelError):
        explain(model, x, layer="nope")
    with pytest.raises(ModelError):
        explain(model, x, layer="prob")  # after the logit
    with pytest.raises(ConfigError):
        explain(model, x, target="tumor")
    with pytest.raises(ConfigError):
        explain(model, x, method="cam")
    with pytest.raises(ImageError):
        explain(model, x[0])  # not a batch
    with pytest.raises(ImageError):
        explain(model, np.zeros((1, 16, 16, 1), np.float32))
    inp = keras.Input((SIZE, SIZE, 1))
    no_logit = keras.Model(inp, layers.Dense(1)(layers.Flatten()(layers.Conv2D(2, 3)(inp))))
    with pytest.raises(ModelError):
        explain(no_logit, x)


def test_trained_model_heatmap_peaks_on_the_blob(trained):
    model, val_acc, x, y, centres = trained
    assert val_acc > 0.9
    pos = np.flatnonzero(y == 1)[:10]
    for method in ("gradcam", "gradcam++"):
        maps = explain(model, x[pos], method=method)
        for heat, (cy, cx) in zip(maps, centres[pos]):
            py, px = np.unravel_index(np.argmax(heat), heat.shape)
            assert np.hypot(py - cy, px - cx) <= 3, (method, (py, px), (cy, cx))
    # the "no tumour" explanation does not point at the tumour
    tum = explain(model, x[pos], target="tumour")
    no = explain(model, x[pos], target="no_tumour")
    at_blob = np.arange(len(pos)), centres[pos][:, 0], centres[pos][:, 1]
    assert np.all(tum[at_blob] > 0.5) and np.all(no[at_blob] < 0.2)


# ----------------------------------------------------------------------------------- overlay


def test_colorize_uses_the_colour_map():
    heat = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    rgb = colorize(heat)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 2] > 100 and rgb[0, 0, 0] == 0  # jet: 0 is blue
    assert rgb[-1, -1, 0] > 100 and rgb[-1, -1, 2] == 0  # jet: 1 is red
    assert colorize(heat, cmap="gray")[-1, -1].tolist() == [255, 255, 255]
    with pytest.raises(ConfigError):
        colorize(heat, cmap="no_such_map")


def test_overlay_shape_dtype_alpha_and_resize():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    heat = rng.uniform(0, 1, (5, 6)).astype(np.float32)  # resized to the image
    out = overlay(grey, heat)
    assert out.shape == (20, 24, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(overlay(grey, heat, alpha=0.0), np.repeat(grey[..., None], 3, 2))
    full = overlay(grey, upsample(heat, (20, 24)), alpha=1.0)
    np.testing.assert_array_equal(full, colorize(upsample(heat, (20, 24))))
    rgb = np.stack([grey] * 3, axis=-1)
    np.testing.assert_array_equal(overlay(rgb, heat, alpha=0.3), overlay(grey, heat, alpha=0.3))
    with pytest.raises(ConfigError):
        overlay(grey, heat, alpha=1.5)
    with pytest.raises(ImageError):
        overlay(grey.astype(np.float32), heat)


def test_to_png_bytes_round_trips():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    data = to_png_bytes(rgb)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), rgb)
    with pytest.raises(ImageError):
        to_png_bytes(rgb.astype(np.float32))


def test_one_pass_gives_maps_probabilities_and_the_features_of_a_later_layer():
    model = transfer_like()
    x = random_images(3)
    pool = next(lay for lay in model.layers if isinstance(lay, layers.GlobalAveragePooling2D))
    maps, probs, feats = gradcam.explain_all(model, x, feature_layer=pool.name)
    np.testing.assert_allclose(maps, gradcam.explain(model, x), atol=1e-6)
    np.testing.assert_allclose(probs, model.predict(x, verbose=0).reshape(-1), atol=1e-5)
    want = keras.Model(model.inputs, pool.output).predict(x, verbose=0)
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    cnn = tiny_cnn()
    with pytest.raises(ModelError, match="between"):
        gradcam.explain_all(cnn, x, feature_layer=cnn.layers[1].name)  # the rescaling, before the last conv


def test_pointing_game_and_energy_share_against_a_mask():
    from bt_core.explain.pointing import pointing

    masks = np.zeros((2, 8, 8), np.uint8)
    masks[:, 2:4, 2:4] = 255
    on = np.zeros((2, 16, 16))
    on[:, 5, 5] = 1.0  # inside the (upsampled) mask
    off = np.zeros((2, 16, 16))
    off[:, 14, 14] = 1.0
    assert pointing(on, masks)["hit_rate"] == 1.0 and pointing(on, masks)["energy_inside"] == 1.0
    assert pointing(off, masks)["hit_rate"] == 0.0 and pointing(off, masks)["energy_inside"] == 0.0
    flat = pointing(np.ones((2, 16, 16)), masks)
    assert abs(flat["energy_inside"] - flat["chance_energy"]) < 1e-9
    assert pointing(on, np.zeros((2, 8, 8)))["n"] == 0  # no mask, no figure
