"""Patch model: a transfer model that scores every cell of the slice and pools them into one answer.

EfficientNet-Lite0 (ImageNet weights, :mod:`bt_core.models.efficientnet_lite`) is cut after ``block10_add``
(stride 16: a 15 x 15 map of 112 channels at 240 px); with ``backbone="efficientnet_lite1"`` Lite1 is cut at
the same stage's end, ``block14_add`` (:data:`CUTS`). A small head (``patch_head``: optional 3x3
context convolutions, then 1x1) gives each cell a tumour logit (a 15 x 15 map); the image's logit is their smooth maximum (log-sum-exp pooling,
:class:`LSEPool`), then ``Dense(1, name="logit")`` and ``Activation("sigmoid", name="prob")`` as
every model here. So the answer is "is there a tumour *somewhere*", and the cell map says where.

Symmetry (``symmetry=True``): the backbone also runs on the left-right mirror image; at each cell the
head sees the map of the image and beside it the absolute difference from the mirror image's map at
that cell, which shows the mirror cell of the other hemisphere (:class:`Asymmetry`, inside one nested
"backbone" model, :func:`symmetric`). A healthy brain
is nearly symmetric in an axial or coronal slice whatever the scanner or sequence, and most tumours
are one-sided, so the difference is a cue that carries across sources.

Training signal (:func:`masked_bce`): the image label for every image, plus, where an expert mask
exists (LGG, BraTS) or the slice has no tumour (every ``no`` slice), a per-cell target: the share of
the cell inside the mask. A ``yes`` slice without a mask (Br35H) trains the image logit only
(multiple-instance learning). Fine-tuning: the blocks of the cut's stage train (Lite0: 08-10 after
``block07_add``; BatchNorm frozen), on cached activations of augmented views (:mod:`bt_core.data.augment`);
in the symmetric model the same blocks run on the image and on its mirror image.

Style (``style``, :data:`bt_core.config.FEATURE_STYLES`): the head may first remove each map's per-channel
means and scales (:class:`InstanceNorm`) or, in training, mix them between slices (:class:`MixStyle`), so
that it cannot lean on what a source's slices look like as a whole.

Defaults: Lite0, 240 px, style kept, head 64 channels and no context layer, dropout 0.3, LSE sharpness 4, Adam 3e-4, mask-loss weight 1.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from bt_core.config import FEATURE_STYLES
from bt_core.errors import ConfigError
from bt_core.models import efficientnet_lite as lite
from bt_core.models import networks

# backbone -> (the layer after which fine-tuning starts: the end of stage 4, the cut: the end of the stride-16
# stage 5), e.g. Lite0 ("block07_add", "block10_add"), Lite1 ("block10_add", "block14_add")
CUTS = {f"efficientnet_{v}": tuple(lite.stage_ends(v)[3:5]) for v in lite.REPEATS}
MAP_SIZE = 15  # cells per side at 240 px
CORE = "trunk"  # the trunk's name inside the symmetric backbone (Lite0 or Lite1)
OLD_CORES = ("lite0_trunk",)  # its name in models saved before 2026-12-07, Lite1 ones too


@keras.saving.register_keras_serializable(package="bt_core")
class LSEPool(layers.Layer):
    """Smooth maximum of a (N, H, W, 1) logit map -> (N, 1): log(mean(exp(r * s))) / r."""

    def __init__(self, r: float = 4.0, **kw):
        super().__init__(**kw)
        self.r = float(r)

    def call(self, s):
        flat = ops.reshape(s, (ops.shape(s)[0], -1))
        n = ops.cast(ops.shape(flat)[1], flat.dtype)
        return ops.expand_dims((ops.logsumexp(self.r * flat, axis=1) - ops.log(n)) / self.r, -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "r": self.r}


@keras.saving.register_keras_serializable(package="bt_core")
class Asymmetry(layers.Layer):
    """[map of the image a, map of its mirror image b] -> concat(a, |a - b|) along channels."""

    def call(self, inputs):
        a, b = inputs
        return ops.concatenate([a, ops.abs(a - b)], axis=-1)

    def compute_output_shape(self, input_shapes):
        a = input_shapes[0]
        return (*a[:-1], 2 * a[-1])


@keras.saving.register_keras_serializable(package="bt_core")
class ImageChannels(layers.Layer):
    """The first half of the channels of an :class:`Asymmetry` map: the image's own features."""

    def call(self, x):
        return x[..., : x.shape[-1] // 2]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)


def _style(x, eps: float = 1e-3):
    """Per image and channel, the mean and standard deviation of a (N, H, W, C) map over its cells."""
    mean = ops.mean(x, axis=(1, 2), keepdims=True)
    return mean, ops.sqrt(ops.var(x, axis=(1, 2), keepdims=True) + eps)


@keras.saving.register_keras_serializable(package="bt_core")
class InstanceNorm(layers.Layer):
    """Instance normalisation (Ulyanov et al., 2016): each channel of each image's map standardised over
    its cells. What is left is where a cell differs from the rest of *its own* slice; the channel means
    and scales, which carry much of a scanner's or sequence's look (Huang & Belongie, 2017), are gone."""

    def call(self, x):
        mean, std = _style(x)
        return (x - mean) / std


@keras.saving.register_keras_serializable(package="bt_core")
class MixStyle(layers.Layer):
    """MixStyle (Zhou et al., ICLR 2021), in training only: with probability ``p`` an image's map takes a
    mix (weight ``lam ~ Beta(alpha, alpha)``) of its own channel means and scales and those of another image
    of the batch, so the head sees each slice in many scanners' styles. The identity at inference."""

    def __init__(self, p: float = 0.5, alpha: float = 0.1, seed: int | None = None, **kw):
        super().__init__(**kw)
        self.p, self.alpha, self.seed = float(p), float(alpha), seed
        self._gen = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        n = ops.shape(x)[0]
        mean, std = _style(x)
        perm = keras.random.shuffle(ops.arange(n), seed=self._gen)
        lam = keras.random.beta((n, 1, 1, 1), self.alpha, self.alpha, seed=self._gen)
        mixed_mean = lam * mean + (1 - lam) * ops.take(mean, perm, axis=0)
        mixed_std = lam * std + (1 - lam) * ops.take(std, perm, axis=0)
        mixed = (x - mean) / std * mixed_std + mixed_mean
        return ops.where(keras.random.uniform((n, 1, 1, 1), seed=self._gen) < self.p, mixed, x)

    def get_config(self):
        return {**super().get_config(), "p": self.p, "alpha": self.alpha, "seed": self.seed}


def is_symmetric(layer) -> bool:
    """Whether ``layer`` is the symmetric backbone (:func:`symmetric`), whose map ends in |a - b| channels."""
    return isinstance(layer, keras.Model) and "asymmetry" in {sub.name for sub in layer.layers}


@keras.saving.register_keras_serializable(package="bt_core")
def masked_bce(y_true, y_pred):
    """Per-cell binary cross-entropy on logits where the target is known: ``y_true[..., 0]`` the
    tumour share of the cell, ``y_true[..., 1]`` 1 where it is known, 0 where not."""
    target, known = y_true[..., 0:1], y_true[..., 1:2]
    loss = ops.maximum(y_pred, 0) - y_pred * target + ops.log1p(ops.exp(-ops.abs(y_pred)))
    return ops.sum(loss * known, axis=(1, 2, 3)) / (ops.sum(known, axis=(1, 2, 3)) + 1e-6)


def head(shape, units: int = 64, dropout: float = 0.3, depth: int = 0, style: str = "keep",
         seed: int | None = None) -> keras.Model:
    """Cell logits from a feature map: the map's style handled as ``style`` says
    (:data:`bt_core.config.FEATURE_STYLES`), ``depth`` 3x3 convolutions (context), a 1x1 convolution,
    dropout, and a 1x1 convolution to one logit per cell (``patch_logit``)."""
    if style not in FEATURE_STYLES:
        raise ConfigError(f"feature style must be one of {', '.join(FEATURE_STYLES)}, not {style!r}")
    inp = keras.Input(shape)
    x = inp
    if style == "instance":
        x = InstanceNorm(name="instance_norm")(x)
    elif style == "mixstyle":
        x = MixStyle(seed=seed, name="mixstyle")(x)
    for i in range(depth):
        x = layers.Conv2D(units, 3, padding="same", activation="relu", name=f"patch_context{i}")(x)
    x = layers.Conv2D(units, 1, activation="relu", name="patch_conv")(x)
    x = layers.Dropout(dropout, name="patch_dropout")(x)
    return keras.Model(inp, layers.Conv2D(1, 1, name="patch_logit")(x), name="patch_head")


def build(weights="default", image_size: int = 240, head_units: int = 64, dropout: float = 0.3,
          lse_r: float = 4.0, fine_tune: bool = True, seed: int = 42, head_depth: int = 0,
          symmetry: bool = False, backbone: str = "efficientnet_lite0", style: str = "keep") -> keras.Model:
    """The patch model: image (N, S, S, 1) in [0, 255] -> {"prob": (N, 1), "patch_logit": (N, S/16, S/16, 1)}.

    ``symmetry``: the head sees the map and its difference from the mirror image's (:class:`Asymmetry`).
    ``backbone``: ``efficientnet_lite0`` or ``efficientnet_lite1`` (cut as :data:`CUTS` says).
    ``style``: the head's first step (:data:`bt_core.config.FEATURE_STYLES`)."""
    keras.utils.set_random_seed(seed)
    if backbone not in CUTS:
        raise ConfigError(f"the patch model needs an EfficientNet-Lite backbone ({', '.join(CUTS)}), not {backbone!r}")
    full = networks.backbone_model(backbone, weights, (image_size, image_size, 3))
    core = keras.Model(full.input, full.get_layer(CUTS[backbone][1]).output, name=CORE if symmetry else "backbone")
    if fine_tune:
        networks.set_trainable_after(core, CUTS[backbone][0])
    else:
        core.trainable = False
    trunk = symmetric(core) if symmetry else core
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = networks.GreyToRGB(name="grey_to_rgb")(inputs)
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(x)
    x = trunk(x)
    cells = head(x.shape[1:], head_units, dropout, head_depth, style, seed)(x)
    pooled = LSEPool(lse_r, name="lse_pool")(cells)
    logit = layers.Dense(1, kernel_initializer="ones", name="logit")(pooled)
    prob = layers.Activation("sigmoid", name="prob")(logit)
    name = "patch_" + backbone.removeprefix("efficientnet_")  # patch_lite0, patch_lite1
    return keras.Model(inputs, {"prob": prob, "patch_logit": cells}, name=name)


def symmetric(core: keras.Model) -> keras.Model:
    """``concat(core(x), |core(x) - core(mirror(x))|)`` as one nested model named "backbone", so the
    patch model stays a linear chain of layers (what Grad-CAM and the out-of-distribution check walk)."""
    inp = keras.Input(core.input.shape[1:], name="symmetric_in")
    mirror = core(networks.MirrorWidth(name="mirror")(inp))
    return keras.Model(inp, Asymmetry(name="asymmetry")([core(inp), mirror]), name="backbone")


def core_of(model: keras.Model) -> keras.Model:
    """The Lite0 trunk (stem to block 10) inside the patch model, whether or not it is symmetric."""
    trunk = model.get_layer("backbone")
    if not is_symmetric(trunk):
        return trunk
    names = {layer.name for layer in trunk.layers}
    return trunk.get_layer(next((n for n in (CORE, *OLD_CORES) if n in names), CORE))


def fine_tune_from(trunk: keras.Model) -> str:
    """The layer of ``trunk`` (:func:`core_of`) after which fine-tuning starts, read from where it is cut."""
    cut = trunk.layers[-1].name
    return next(start for start, end in CUTS.values() if end == cut)


def answer_model(model: keras.Model) -> keras.Model:
    """The same layers with the probability as the only output (what inference and Grad-CAM call)."""
    return keras.Model(model.inputs, model.get_layer("prob").output, name=model.name + "_answer")


def lower(model: keras.Model) -> keras.Model:
    """Image -> activations at :func:`fine_tune_from` (the frozen part), sharing the model's layers."""
    trunk = core_of(model)
    inp = keras.Input(model.inputs[0].shape[1:], name="image_in")
    x = inp
    for name in ("grey_to_rgb", "rescale"):
        x = model.get_layer(name)(x)
    return keras.Model(inp, keras.Model(trunk.input, trunk.get_layer(fine_tune_from(trunk)).output)(x), name="lower")


def split(model: keras.Model):
    """(lower: image -> activations at :func:`fine_tune_from`, upper: activations -> outputs), sharing layers.

    The symmetric model's upper part takes two arrays, the activations of the image and those of its
    mirror image: the same upper blocks run on both and the head sees :class:`Asymmetry` of the two maps."""
    trunk = core_of(model)
    mid = trunk.get_layer(fine_tune_from(trunk)).output
    upper_trunk = keras.Model(mid, trunk.output, name="upper_blocks")
    a = keras.Input(mid.shape[1:], name="activations_in")
    if is_symmetric(model.get_layer("backbone")):
        b = keras.Input(mid.shape[1:], name="mirror_activations_in")
        inputs, x = [a, b], Asymmetry(name="asymmetry")([upper_trunk(a), upper_trunk(b)])
    else:
        inputs, x = a, upper_trunk(a)
    cells = model.get_layer("patch_head")(x)
    prob = model.get_layer("prob")(model.get_layer("logit")(model.get_layer("lse_pool")(cells)))
    return lower(model), keras.Model(inputs, {"prob": prob, "patch_logit": cells}, name="upper")


def compile_upper(upper: keras.Model, lr: float = 3e-4, mask_weight: float = 1.0) -> keras.Model:
    upper.compile(optimizer=keras.optimizers.Adam(lr),
                  loss={"prob": "binary_crossentropy", "patch_logit": masked_bce},
                  loss_weights={"prob": 1.0, "patch_logit": mask_weight},
                  metrics={"prob": [keras.metrics.BinaryAccuracy(name="accuracy")]})
    return upper
