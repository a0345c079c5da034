"""Grad-CAM and Grad-CAM++ heatmaps: where in the slice the classifier looked.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, arXiv:1610.02391) weights each channel ``A_k`` of the last convolutional
feature map by the spatial mean of the gradient of the class score, ``w_k = mean_ab dS/dA_k``, and
keeps ``ReLU(sum_k w_k A_k)``. Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Generalized
Gradient-based Visual Explanations for Deep Convolutional Networks", WACV 2018, arXiv:1710.11063)
uses pixel-wise weights; we use its closed form for an exponential score ``exp(S)``:
``alpha = g^2 / (2 g^2 + sum_ab(A) g^3)``, ``w_k = sum_ab alpha * ReLU(g)`` with ``g = dS/dA``.

Layout: the maths (:func:`gradcam_map`, :func:`gradcam_pp_map`, :func:`upsample`) is plain numpy;
the model side (:func:`explain`) only extracts ``A`` and ``dS/dA``; the gradient is the one
backend-specific function (:func:`_gradients`: TensorFlow, JAX or PyTorch). Colouring and blending
are in :mod:`bt_core.explain.overlay`.

Defaults: method ``"gradcam"``; target ``"tumour"``, whose score is the pre-sigmoid output of the
layer named ``"logit"`` (``"no_tumour"`` uses its negative); the target layer is the last
convolutional layer (:func:`find_target_layer`); maps are min-max normalised to [0, 1] (all zero
when the map is constant) and bilinearly resized to the input size; batches of 16 images.
"""

import weakref

import numpy as np
from PIL import Image

from bt_core.errors import ConfigError, ImageError, ModelError

TARGETS = ("tumour", "no_tumour")
METHODS = ("gradcam", "gradcam++")
LOGIT_LAYER = "logit"
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


# --------------------------------------------------------------------------------- model side


def _output_rank(layer):
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        return -1


def _chain(model):
    """The model's layers after its input(s), in order (a linear chain by convention)."""
    import keras

    return [lyr for lyr in model.layers if not isinstance(lyr, keras.layers.InputLayer)]


def find_target_layer(model):
    """The last convolutional layer: the last Conv layer or nested Model whose output is 4-D.

    For the patch model (:mod:`bt_core.models.patch`) it is the backbone's last map, the input of
    ``patch_head``. Falls back to the last layer of any kind with a 4-D output (e.g. pooling); raises
    :class:`ModelError` when the model has no spatial feature map at all.
    """
    import keras

    convs = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)
    layers = _chain(model)
    names = [lyr.name for lyr in layers]
    if "patch_head" in names and names.index("patch_head") > 0:  # the patch model: the backbone's last map
        return layers[names.index("patch_head") - 1]
    spatial = [lyr for lyr in layers if _output_rank(lyr) == 4]
    preferred = [lyr for lyr in spatial if isinstance(lyr, (convs, keras.Model))]
    if preferred:
        return preferred[-1]
    if spatial:
        return spatial[-1]
    raise ModelError(f"model {model.name!r} has no layer with a 4-D (spatial) output for Grad-CAM")


def _resolve_layer(model, layer):
    if layer is None:
        return find_target_layer(model)
    if isinstance(layer, str):
        try:
            return model.get_layer(layer)
        except ValueError:
            raise ModelError(f"model {model.name!r} has no layer named {layer!r}") from None
    if layer not in model.layers:
        name = getattr(layer, "name", layer)
        raise ModelError(f"layer {name!r} is not part of model {model.name!r}")
    return layer


def _gradients(fn, a):
    """``(fn(a), d sum(fn(a)) / d a)`` as numpy arrays, for the active Keras backend.

    ``fn`` maps a batch of feature maps to one score per image; images do not interact at
    inference, so the gradient of the sum gives each image's own gradient.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        a = tf.convert_to_tensor(a)
        with tf.GradientTape() as tape:
            tape.watch(a)
            score = fn(a)
            total = tf.reduce_sum(score)
        grad = tape.gradient(total, a)
        return score.numpy(), grad.numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        score, vjp = jax.vjp(fn, jnp.asarray(a))
        (grad,) = vjp(jnp.ones_like(score))
        return np.asarray(score), np.asarray(grad)
    if backend == "torch":
        import torch

        a = keras.ops.convert_to_tensor(a).detach().requires_grad_(True)  # on Keras's device
        score = fn(a)
        score.sum().backward()
        return score.detach().cpu().numpy(), a.grad.detach().cpu().numpy()
    raise ModelError(f"Grad-CAM does not support the Keras backend {backend!r}")


def _apply(layers, x):
    for lyr in layers:
        x = lyr(x, training=False)
    return x


_TO_TARGET = weakref.WeakKeyDictionary()  # model -> {target layer name: Model(input -> its activations)}


def _activations(model, head, x):
    """Activations of the last layer of ``head`` (the chain from the input), through a Keras model
    built once per model and layer: its compiled ``predict_on_batch`` is several times faster than
    calling the layers one by one, which matters for a nested backbone."""
    import keras

    per_model = _TO_TARGET.setdefault(model, {})
    name = head[-1].name
    if name not in per_model:
        inp = keras.Input(model.inputs[0].shape[1:])
        per_model[name] = keras.Model(inp, _apply(head, inp), name=f"{model.name}_to_{name}")
    return np.asarray(per_model[name].predict_on_batch(x))


_FUSED = weakref.WeakKeyDictionary()  # model -> {(target, features, sign): tf.function}


def _forward_and_gradients(model, head, to_logit, after, n_features, sign, x):
    """One batch -> (activations of the target layer, features (the output of ``to_logit[n_features - 1]``)
    or None, score = ``sign`` x logit, d sum(score) / d activations, probability), as numpy arrays.

    On TensorFlow all of it is one ``tf.function`` traced once per model, target and sign (no per-layer
    eager calls, one graph call a batch); other backends run the head as a compiled Keras model and take
    the gradient with :func:`_gradients`."""
    import keras

    def score_fn(a):
        return sign * keras.ops.reshape(_apply(to_logit, a), (-1,))

    if keras.backend.backend() != "tensorflow":
        acts = _activations(model, head, x)
        feats = np.asarray(keras.ops.convert_to_numpy(_apply(to_logit[:n_features], acts))) if n_features else None
        score, grads = _gradients(score_fn, acts.astype(np.float32))
        return acts, feats, score, grads, _probability(after, sign * np.asarray(score, np.float32))
    import tensorflow as tf

    per_model = _FUSED.setdefault(model, {})
    key = (head[-1].name, to_logit[n_features - 1].name if n_features else None, sign)
    if key not in per_model:
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)

        @tf.function(input_signature=[spec])
        def step(images):
            acts = _apply(head, images)
            with tf.GradientTape() as tape:
                tape.watch(acts)
                feats = _apply(to_logit[:n_features], acts) if n_features else acts
                logit = _apply(to_logit[n_features:], feats) if n_features else _apply(to_logit, acts)
                score = sign * tf.reshape(logit, (-1,))
                total = tf.reduce_sum(score)
            return acts, feats, score, tape.gradient(total, acts), _probability(after, sign * score)

        per_model[key] = step
    acts, feats, score, grads, prob = per_model[key](tf.convert_to_tensor(x))
    return acts.numpy(), (feats.numpy() if n_features else None), score.numpy(), grads.numpy(), prob.numpy()


def _probability(after, logit):
    """The layers after the logit (the sigmoid), or a sigmoid -> (N,)."""
    import keras

    logit = keras.ops.reshape(logit, (-1, 1))
    return keras.ops.reshape(_apply(after, logit) if after else keras.ops.sigmoid(logit), (-1,))


def _check_images(model, images):
    x = np.asarray(images, dtype=np.float32)
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != 4 or x.shape[0] == 0:
        raise ImageError(f"images must be a non-empty batch (N, H, W, C); got shape {x.shape}")
    if any(e is not None and e != s for e, s in zip(expected, x.shape[1:])):
        raise ImageError(f"images have shape {x.shape[1:]} but the model expects {expected}")
    return x


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
    target_layer = _resolve_layer(model, layer)
    layers = _chain(model)
    names = [lyr.name for lyr in layers]
    if LOGIT_LAYER not in names:
        raise ModelError(f"model {model.name!r} has no layer named {LOGIT_LAYER!r} to explain")
    t, k = names.index(target_layer.name), names.index(LOGIT_LAYER)
    if t >= k:
        raise ModelError(f"layer {target_layer.name!r} does not come before {LOGIT_LAYER!r}")
    # The layers form a linear chain, so the feature extractor is "apply layers[:t+1]" (this also
    # works for a nested backbone Model, whose own `.output` is not connected to the outer inputs).
    head, to_logit, after = layers[: t + 1], layers[t + 1 : k + 1], layers[k + 1 :]
    to_features = None
    if feature_layer is not None:
        f = names.index(_resolve_layer(model, feature_layer).name)
        if not t <= f <= k:
            raise ModelError(f"feature layer {names[f]!r} does not lie between {target_layer.name!r} and the logit")
        to_features = layers[t + 1 : f + 1] if f > t else None
        features_are_activations = f == t
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
