"""The model side of Grad-CAM: the target layer, and a batch's activations, gradients and probability.

:func:`find_target_layer` picks the last convolutional layer (the backbone's last map for the patch
model); :func:`split_chain` cuts the model's linear chain of layers at the target layer, the optional
feature layer and the layer named ``"logit"``; :func:`_forward_and_gradients` runs one batch (one traced
``tf.function`` per model, target and sign on TensorFlow; a compiled Keras model plus :func:`_gradients`
on JAX or PyTorch). The heatmap maths on what these return is :mod:`bt_core.explain.gradcam`.

Defaults: the logit layer is ``"logit"`` (:data:`LOGIT_LAYER`); the probability is the layers after it,
or a sigmoid when there are none.
"""

import weakref

import numpy as np

from bt_core.errors import ImageError, ModelError

LOGIT_LAYER = "logit"


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


def split_chain(model, layer=None, feature_layer=None):
    """The model's chain cut for Grad-CAM -> (target layer, head (input to the target layer), to_logit
    (after it up to the logit), after (the layers after the logit), to_features (after the target layer
    up to ``feature_layer``) or None, whether the features are the target layer's activations)."""
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
    to_features, features_are_activations = None, False
    if feature_layer is not None:
        f = names.index(_resolve_layer(model, feature_layer).name)
        if not t <= f <= k:
            raise ModelError(f"feature layer {names[f]!r} does not lie between {target_layer.name!r} and the logit")
        to_features = layers[t + 1 : f + 1] if f > t else None
        features_are_activations = f == t
    return target_layer, head, to_logit, after, to_features, features_are_activations
