"""Grad-CAM and Grad-CAM++ heatmaps: where in the slice the classifier looked.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, arXiv:1610.02391) weights each channel ``A_k`` of the last convolutional
feature map by the spatial mean of the gradient of the class score, ``w_k = mean_ab dS/dA_k``, and
keeps ``ReLU(sum_k w_k A_k)``. Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Generalized
Gradient-based Visual Explanations for Deep Convolutional Networks", WACV 2018, arXiv:1710.11063)
uses pixel-wise weights; we use its closed form for an exponential score ``exp(S)``:
``alpha = g^2 / (2 g^2 + sum_ab(A) g^3)``, ``w_k = sum_ab alpha * ReLU(g)`` with ``g = dS/dA``.

Layout: the maths (:func:`gradcam_map`, :func:`gradcam_pp_map`, :func:`upsample`) is plain numpy, here;
:func:`explain` and its twins only extract ``A`` and ``dS/dA`` through :mod:`bt_core.explain.gradcam_model`
(the target layer, the chain of layers, the backend-specific gradient: TensorFlow, JAX or PyTorch), whose
public names are importable from here too. Colouring and blending are in :mod:`bt_core.explain.overlay`.

Defaults: method ``"gradcam"``; target ``"tumour"``, whose score is the pre-sigmoid output of the
layer named ``"logit"`` (``"no_tumour"`` uses its negative); the target layer is the last
convolutional layer (:func:`find_target_layer`); maps are min-max normalised to [0, 1] (all zero
when the map is constant) and bilinearly resized to the input size; batches of 16 images.
"""

import numpy as np
from PIL import Image

from bt_core.errors import ConfigError, ModelError
from bt_core.explain.gradcam_model import (  # noqa: F401 - the model side, importable from here as before
    LOGIT_LAYER, _check_images, _forward_and_gradients, find_target_layer, split_chain)

TARGETS = ("tumour", "no_tumour")
METHODS = ("gradcam", "gradcam++")
_EPS = 1e-12


def _check_pair(activations, grads):
    a = np.asarray(activations, dtype=np.float64)
    g = np.asarray(grads, dtype=np.float64)
    if a.ndim != 3 or a.shape != g.shape:
        raise ConfigError(
            f"activations and gradients must both have shape (h, w, C); got {a.shape} and {g.shape}"
        )
    return a, g


def _normalise(cam):
    """ReLU, then min-max scale to [0, 1]; a constant (or all-zero) map becomes all zeros."""
    cam = np.maximum(np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    lo, hi = float(cam.min()), float(cam.max())
    if hi - lo <= _EPS * max(1.0, abs(hi)):
        return np.zeros(cam.shape, dtype=np.float32)
    return ((cam - lo) / (hi - lo)).astype(np.float32)


def gradcam_map(activations, grads):
    """Grad-CAM map (h, w) in [0, 1] from one image's activations and gradients, both (h, w, C)."""
    a, g = _check_pair(activations, grads)
    weights = g.mean(axis=(0, 1))  # (C,)
    return _normalise(np.tensordot(a, weights, axes=([2], [0])))


def gradcam_pp_map(activations, grads):
    """Grad-CAM++ map (h, w) in [0, 1] (closed form for an exponential score), inputs (h, w, C)."""
    a, g = _check_pair(activations, grads)
    g2 = g * g
    g3 = g2 * g
    denom = 2.0 * g2 + a.sum(axis=(0, 1), keepdims=True) * g3
    safe = np.where(np.abs(denom) > _EPS, denom, 1.0)
    alpha = np.where(np.abs(denom) > _EPS, g2 / safe, 0.0)
    weights = (alpha * np.maximum(g, 0.0)).sum(axis=(0, 1))  # (C,)
    return _normalise(np.tensordot(a, weights, axes=([2], [0])))


def upsample(cam, size):
    """Bilinearly resize a map (h, w) to ``size`` = (H, W); float32, clipped to [0, 1]."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ConfigError(f"a heatmap must be 2-D (h, w); got shape {cam.shape}")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ConfigError(f"upsample size must be positive; got {tuple(size)}")
    if cam.shape == (height, width):
        return np.clip(cam, 0.0, 1.0)
    resized = Image.fromarray(np.ascontiguousarray(cam)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def explain_with_prob(model, images, target="tumour", method="gradcam", layer=None, batch_size=16):
    """Heatmaps (N, H, W) float32 in [0, 1] and the model's probability of tumour (N,) float32.

    ``images``: float32 (N, H, W, C) with raw values in [0, 255], as the model expects. ``target``
    is ``"tumour"`` (score = logit) or ``"no_tumour"`` (score = -logit); ``method`` is
    ``"gradcam"`` or ``"gradcam++"``; ``layer`` (a name or layer) defaults to
    :func:`find_target_layer`.
    """
    maps, probs, _ = explain_all(model, images, target, method, layer, batch_size=batch_size)
    return maps, probs


def explain_all(model, images, target="tumour", method="gradcam", layer=None, feature_layer=None, batch_size=16):
    """:func:`explain_with_prob` plus the output of ``feature_layer`` (a layer between the target
    layer and the logit, e.g. the penultimate features), all from ONE forward pass -> (maps, probs,
    features or None)."""
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {TARGETS}; got {target!r}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}; got {method!r}")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1; got {batch_size}")
    x = _check_images(model, images)
    target_layer, head, to_logit, after, to_features, features_are_activations = split_chain(
        model, layer, feature_layer)
    sign = 1.0 if target == "tumour" else -1.0
    map_fn = gradcam_map if method == "gradcam" else gradcam_pp_map
    n_features = len(to_features) if to_features is not None else 0

    import keras

    maps, probs, feats = [], [], []
    for start in range(0, len(x), int(batch_size)):
        acts, f, score, grads, prob = _forward_and_gradients(model, head, to_logit, after, n_features, sign,
                                                             x[start : start + int(batch_size)])
        if acts.ndim != 4:
            raise ModelError(f"layer {target_layer.name!r} output is not 4-D (got {acts.shape})")
        if f is not None:
            feats.append(np.asarray(f, np.float32))
        elif feature_layer is not None and features_are_activations:
            feats.append(np.asarray(acts, np.float32))
        prob = keras.ops.convert_to_numpy(prob)
        probs.append(np.asarray(prob, dtype=np.float32).reshape(-1))
        maps.extend(upsample(map_fn(a, g), x.shape[1:3]) for a, g in zip(acts, grads))
    return np.stack(maps).astype(np.float32), np.concatenate(probs), np.concatenate(feats) if feats else None


def explain(model, images, target="tumour", method="gradcam", layer=None, batch_size=16):
    """Heatmaps (N, H, W) float32 in [0, 1]; see :func:`explain_with_prob` for the arguments."""
    return explain_with_prob(model, images, target, method, layer, batch_size)[0]
