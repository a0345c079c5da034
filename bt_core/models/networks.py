"""Models: the paper's two CNNs, built with ``keras`` only so they run on TensorFlow, JAX or PyTorch.

- :func:`paper_cnn` is the paper's from-scratch network (Figures 1 and 3): Conv2D(32, 3, relu) +
  MaxPool twice, Dropout, Flatten, Dense(500, relu), Dense(1, sigmoid); 240x240x1 input, 54M
  parameters. ``head_pool=8`` adds one MaxPool(8) before Flatten (``compact_cnn``): 0.8M
  parameters, small enough to ship, same convolutions.
- :func:`transfer` puts a frozen ImageNet backbone under the same head: ResNet50V2 by default, as
  in the paper, from ``keras.applications`` with ``weights="imagenet"`` (downloads when online), or
  EfficientNet-Lite0 whose converted ImageNet weights ship with the repository (works offline).
  The backbone is nested as one layer named ``"backbone"`` that outputs one 4-D feature map.
  ``pooling="multiscale"`` makes that map the channel-wise concatenation of maps from several
  depths (:data:`MULTISCALE_LAYERS`, each average-pooled to the last map's size), then
  standardises the pooled vector (``Normalization`` named ``"feature_norm"``, adapted on the
  training features). ``mirror=True`` averages the map of the image with the mirrored map of its
  left-right mirror image, so the answer cannot depend on which hemisphere a lesion is in.

Every model takes float32 (N, 240, 240, C) in [0, 255] and rescales inside; grey input is
repeated to RGB inside the transfer model. Every model ends ``Dense(1, name="logit")`` then
``Activation("sigmoid", name="prob")`` so Grad-CAM can explain the logit. ``augment=True`` puts
keras' random preprocessing layers (flip, rotation, shift, zoom, contrast; inactive at inference)
right after the input. Defaults: dropout 0.5, Adam 1e-4, binary cross-entropy.
"""
from __future__ import annotations

import keras
from keras import layers

from bt_core.errors import ConfigError, ModelError

from bt_core.config import BACKBONES, MODEL_KINDS  # noqa: F401
from bt_core.models import efficientnet_lite as lite

DEFAULT_INPUT = (240, 240, 1)


@keras.saving.register_keras_serializable(package="bt_core")
class GreyToRGB(layers.Layer):
    """Repeat a one-channel image to three channels (identity on three-channel input)."""

    def call(self, x):
        return keras.ops.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


def augmentation(seed: int = 42) -> list:
    """MRI-minded random transforms (flips, small rotations and shifts, zoom, contrast)."""
    return [
        layers.RandomFlip("horizontal", seed=seed, name="aug_flip"),
        layers.RandomRotation(0.04, fill_mode="constant", seed=seed, name="aug_rotate"),
        layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed, name="aug_shift"),
        layers.RandomZoom((-0.1, 0.1), fill_mode="constant", seed=seed, name="aug_zoom"),
        layers.RandomContrast(0.2, value_range=(0, 255), seed=seed, name="aug_contrast"),
    ]


MULTISCALE_LAYERS = {  # shallow to deep; the last one is the backbone's own output
    # EfficientNet-Lite: the end of every stage after the first, then the head (lite0: block02_add ... top_relu)
    **{f"efficientnet_{v}": (*lite.stage_ends(v)[1:], "top_relu") for v in lite.REPEATS},
    "resnet50v2": ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "post_relu"),
}


@keras.saving.register_keras_serializable(package="bt_core")
class MirrorWidth(layers.Layer):
    """Left-right mirror of a (N, H, W, C) batch."""

    def call(self, x):
        return keras.ops.flip(x, axis=2)


def multiscale(core: keras.Model, names, name: str = "multiscale") -> keras.Model:
    """One 4-D map: the maps of the layers ``names`` of ``core``, each average-pooled to the size
    of ``core``'s output, concatenated along channels (a linear chain for Grad-CAM)."""
    size = core.output.shape[1]
    maps = []
    for layer_name in names:
        t = core.get_layer(layer_name).output
        k = -(-t.shape[1] // size)
        if k > 1:
            t = layers.AveragePooling2D(k, padding="same", name=f"ms_pool_{layer_name}")(t)
        maps.append(t)
    return keras.Model(core.input, layers.Concatenate(name="ms_concat")(maps), name=name)


def mirrored(core: keras.Model, name: str = "backbone") -> keras.Model:
    """``(core(x) + mirror(core(mirror(x)))) / 2``: test-time flip averaging built into the backbone."""
    inp = keras.Input(core.input.shape[1:], name="mirror_in")
    back = MirrorWidth(name="unmirror")(core(MirrorWidth(name="mirror")(inp)))
    return keras.Model(inp, layers.Average(name="mirror_mean")([core(inp), back]), name=name)


def _head(x, dense_units: int, dropout: float):
    x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(1, name="logit")(x)
    return layers.Activation("sigmoid", name="prob", dtype="float32")(x)


def paper_cnn(input_shape=DEFAULT_INPUT, dense_units: int = 500, dropout: float = 0.5,
              head_pool: int = 1, augment: bool = False, seed: int = 42, name: str = "paper_cnn") -> keras.Model:
    """The paper's from-scratch CNN; ``head_pool`` > 1 adds MaxPool(head_pool) before Flatten."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for layer in augmentation(seed) if augment else []:
        x = layer(x)
    x = layers.Rescaling(1 / 255.0, name="rescale")(x)
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Dropout(dropout, name="conv_dropout")(x)
    if head_pool > 1:
        x = layers.MaxPooling2D(head_pool, name="head_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _head(x, dense_units, 0.0), name=name)


def backbone_model(name: str = "efficientnet_lite0", weights="default", input_shape=(240, 240, 3)) -> keras.Model:
    """A pretrained feature extractor named "backbone" that outputs its last 4-D feature map.

    ``weights``: ``"default"`` (ImageNet: downloaded for ResNet50V2, the shipped file for Lite0),
    ``"imagenet"``, a local weights file, or ``None`` (random, for tests).
    """
    if name == "resnet50v2":
        w = "imagenet" if weights == "default" else weights
        try:
            base = keras.applications.ResNet50V2(include_top=False, weights=w, input_shape=input_shape)
        except Exception as err:  # offline, or a file that does not fit
            raise ModelError(f"ResNet50V2 weights {w!r} could not be loaded ({type(err).__name__}); offline? "
                             "use --backbone efficientnet_lite0, which ships its ImageNet weights") from None
    elif name in ("efficientnet_lite0", "efficientnet_lite1"):
        variant = name.rsplit("_", 1)[1]
        w = lite.default_weights_path(variant) if weights in ("default", "imagenet") else weights
        base = lite.efficientnet_lite(variant, input_shape, include_top=False, weights=w)
    else:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return keras.Model(base.input, base.output, name="backbone")


def transfer(backbone: str = "efficientnet_lite0", weights="default", input_shape=DEFAULT_INPUT,
             dense_units: int = 500, dropout: float = 0.5, pooling: str = "avg", fine_tune_layers: int = 0,
             fine_tune_from: str = "", augment: bool = False, seed: int = 42, name: str | None = None,
             mirror: bool = False) -> keras.Model:
    """Frozen pretrained backbone + the paper's head (``pooling="flatten"`` for the paper's exact head,
    ``"multiscale"`` for pooled maps of several depths, standardised).

    Fine-tuning: ``fine_tune_layers=N`` unfreezes the top N weighted backbone layers, or
    ``fine_tune_from="block10_add"`` every layer after the named one (BatchNorm stays frozen).
    """
    keras.utils.set_random_seed(seed)
    base = backbone_model(backbone, weights, (*input_shape[:2], 3))
    if fine_tune_from:
        set_trainable_after(base, fine_tune_from)
    else:
        set_trainable_top(base, fine_tune_layers)
    if pooling == "multiscale":
        base = multiscale(keras.Model(base.input, base.output, name="core"), MULTISCALE_LAYERS[backbone],
                          name="backbone" if not mirror else "multiscale")
    if mirror:
        base = mirrored(base if pooling == "multiscale" else keras.Model(base.input, base.output, name="core"))
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for layer in augmentation(seed) if augment else []:
        x = layer(x)
    x = GreyToRGB(name="grey_to_rgb")(x)
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(x)  # both backbones expect [-1, 1]
    x = base(x)
    if pooling in ("avg", "multiscale"):
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        if pooling == "multiscale":
            x = layers.Normalization(name="feature_norm")(x)
    elif pooling == "flatten":
        x = layers.Flatten(name="pool")(x)
    else:
        raise ConfigError(f"unknown pooling {pooling!r}; choose avg, multiscale or flatten")
    return keras.Model(inputs, _head(x, dense_units, dropout), name=name or f"transfer_{backbone}")


def set_trainable_top(backbone: keras.Model, n_layers: int) -> None:
    """Freeze the backbone except its top ``n_layers`` weighted layers (BatchNorm stays frozen)."""
    backbone.trainable = n_layers > 0
    if n_layers <= 0:
        return
    weighted = [lay for lay in backbone.layers if lay.weights]
    for i, lay in enumerate(weighted):
        lay.trainable = i >= len(weighted) - n_layers and not isinstance(lay, layers.BatchNormalization)


def set_trainable_after(backbone: keras.Model, layer_name: str) -> None:
    """Train every backbone layer after ``layer_name`` except BatchNorm; freeze the rest."""
    names = [lay.name for lay in backbone.layers]
    if layer_name not in names:
        raise ConfigError(f"backbone has no layer {layer_name!r} to fine-tune from")
    backbone.trainable = True
    cut = names.index(layer_name)
    for i, lay in enumerate(backbone.layers):
        lay.trainable = i > cut and not isinstance(lay, layers.BatchNormalization)


def build(kind: str, input_shape=DEFAULT_INPUT, **kw) -> keras.Model:
    """Build a model by name: ``paper_cnn``, ``compact_cnn`` or ``transfer``."""
    if kind == "paper_cnn":
        return paper_cnn(input_shape, **kw)
    if kind == "compact_cnn":
        kw.setdefault("head_pool", 8)
        return paper_cnn(input_shape, name="compact_cnn", **kw)
    if kind == "transfer":
        return transfer(input_shape=input_shape, **kw)
    raise ConfigError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")


def compile_model(model: keras.Model, lr: float = 1e-4, jit_compile="auto") -> keras.Model:
    """Adam(lr) + binary cross-entropy + accuracy, as in the paper."""
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")], jit_compile=jit_compile)
    return model


def split_at(model: keras.Model, cut: str = "pool"):
    """Split a transfer model into (lower, upper) at ``cut``: "pool" (the pooled features) or the
    name of a layer inside the backbone. ``upper`` shares its layers with ``model``, so training
    ``upper`` on cached outputs of ``lower`` trains ``model`` itself."""
    if cut == "pool":
        return split_at_features(model)
    names = [lay.name for lay in model.layers]
    i = names.index("backbone")
    bb = model.get_layer("backbone")
    mid = bb.get_layer(cut).output
    lower_bb, upper_bb = keras.Model(bb.input, mid), keras.Model(mid, bb.output)
    x = inp = keras.Input(model.inputs[0].shape[1:], name="image_in")
    for lay in model.layers[1:i]:
        x = lay(x)
    lower = keras.Model(inp, lower_bb(x), name="lower")
    a = keras.Input(mid.shape[1:], name="activations_in")
    x = upper_bb(a)
    for lay in model.layers[i + 1:]:
        x = lay(x)
    return lower, keras.Model(a, x, name="upper")


def split_at_features(model: keras.Model):
    """For a transfer model: (feature extractor up to the pooled features, head applied to features).

    Training the head on cached features is the same as training the frozen model end to end,
    because the head layers are shared: fitting ``head`` updates ``model``.
    """
    pool = model.get_layer("pool")
    features = keras.Model(model.inputs, pool.output, name="features")
    names = [lay.name for lay in model.layers]
    feat_in = keras.Input(pool.output.shape[1:], name="features_in")
    x = feat_in
    for lay in model.layers[names.index("pool") + 1:]:
        x = lay(x)
    return features, keras.Model(feat_in, x, name="head")
