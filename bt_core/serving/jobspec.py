"""What a training job runs: :class:`JobSpec`, its checks and its argument list, and the form's recipes.

JobSpec defaults are the paper's (compact_cnn, 30 epochs, 3 folds, batch 32, 240 px, Adam 1e-4,
seed 42) with the leak-free group split, and :class:`bt_core.config.TrainConfig`'s for the options of the
six-source runs (``views``, ``strip_skull``, ``balance``, ``position_strength``, ``position_reference``,
``dense_units``, ``dropout``, and the patch model's ``samples_per_epoch``, ``mask_weight``, ``freeze_backbone``,
``head_depth``, ``symmetry``, ``synth_lesions``, ``lesion_weight``), which reach the command line only when changed. Options of one model only (``TRANSFER_ONLY``, ``PATCH_ONLY``) must keep their default for
the others. The data is one or more labelled sources: ``data_dir`` and
``data_dirs`` (a ``--data`` option each) and/or ``sources_file`` (``--sources``, a TOML file of
``[[source]]`` tables). :meth:`JobSpec.argv` is the child's argument list (``python -m bt_core cv|train
...``, for ``Popen``, never a shell string) after :meth:`JobSpec.validate` (choices, ranges, and the
sources through :func:`bt_core.serving.data_roots.check_sources`); :meth:`JobSpec.command` is the same
command to show. :func:`recipes` are the form's starting points: the paper's CNN and the settings of
each shipped run (the same TrainConfig as the run, apart from its data).
"""
import shlex
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from bt_core import runs
from bt_core.config import (BACKBONES, BALANCE_CHOICES, MODEL_KINDS, POOLING_CHOICES, POSITION_REFERENCES,
                             PREPROCESS_CHOICES, TrainConfig, SPLIT_KINDS, check_backbone_weights)
from bt_core.errors import BTError, ConfigError
from bt_core.serving.data_roots import check_sources

_D = TrainConfig()  # the defaults of the options below that the command line shows only when changed
PROGRAM = (sys.executable, "-m", "bt_core")  # the argv prefix; the launcher passes its CHILD_PROGRAM
CHOICES = {"model": MODEL_KINDS, "backbone": BACKBONES, "split": SPLIT_KINDS, "mode": ("cv", "train"),
           "augment": (False, True), "preprocess": PREPROCESS_CHOICES, "pooling": POOLING_CHOICES,
           "mirror": (False, True), "balance": BALANCE_CHOICES, "freeze_backbone": (False, True),
           "symmetry": (False, True), "position_reference": POSITION_REFERENCES}
RANGES = {"epochs": (1, 1000), "folds": (2, 20), "batch_size": (1, 4096), "image_size": (32, 1024), "seed": (0, 2**31),
          "head_pool": (0, 16), "degrade_copies": (0, 8), "views": (0, 8), "dense_units": (1, 4096),
          "samples_per_epoch": (0, 10**7), "head_depth": (0, 4)}
FLOAT_RANGES = {"lr": (1e-6, 0.1), "mask_weight": (0.0, 100.0), "dropout": (0.0, 0.99), "strip_skull": (0.0, 1.0),
                "synth_lesions": (0.0, 1.0), "lesion_weight": (0.01, 10.0),
                "position_strength": (0.05, 1.0)}  # TrainConfig: dropout < 1
LR_RANGE = FLOAT_RANGES["lr"]
ALWAYS = ("epochs", "folds", "batch_size", "image_size", "seed", "head_pool", "degrade_copies")  # always on the command
TRANSFER_ONLY = {"pooling": "avg", "mirror": False}  # options that change a transfer model only, and their defaults
PATCH_ONLY = {k: getattr(_D, k) for k in ("samples_per_epoch", "mask_weight", "freeze_backbone", "head_depth", "symmetry",
                                         "synth_lesions", "lesion_weight")}
WHEN_CHANGED = {k: getattr(_D, k) for k in ("views", "strip_skull", "balance", "position_strength",
                                            "position_reference", "dense_units", "dropout")} | PATCH_ONLY
MODEL_ONLY = {"transfer": TRANSFER_ONLY, "patch": PATCH_ONLY}
BARE = ("augment", "mirror", "freeze_backbone", "symmetry")  # store_true flags: a bare --flag when true
PAPER_RECIPE = "The paper's CNN (240 px, Adam 1e-4)"
DATA_FIELDS = ("data_dir", "data_dirs", "sources_file")


@dataclass
class JobSpec:
    """What to train (defaults: see the module docstring)."""
    data_dir: str = ""  # a labelled source (after validate(): the first folder, resolved)
    model: str = "compact_cnn"
    backbone: str = "efficientnet_lite0"
    epochs: int = 30
    folds: int = 3
    split: str = "group"
    batch_size: int = 32
    mode: str = "cv"
    augment: bool = False
    image_size: int = 240
    seed: int = 42
    lr: float = 1e-4
    head_pool: int = 0  # CNN: MaxPool size before Flatten (0: the model's default)
    preprocess: str = "none"
    pooling: str = "avg"  # transfer only
    mirror: bool = False  # transfer only
    degrade_copies: int = 0  # K degraded copies of each training image (bt_core.data.degrade)
    data_dirs: tuple[str, ...] = ()  # more sources (after validate(): the other folders, resolved)
    sources_file: str = ""  # a TOML file of [[source]] tables (after validate(): resolved)
    views: int = _D.views  # K random augmented views of each training image (bt_core.data.augment)
    balance: str = _D.balance  # "source": every (source family, class) pair weighs the same
    position_strength: float = _D.position_strength  # with balance "position": 1 full, below 1 part of the way
    position_reference: str = _D.position_reference  # with balance "position": one of POSITION_REFERENCES (TrainConfig)
    dense_units: int = _D.dense_units  # the dense layer (CNN, transfer) or the patch head's width
    dropout: float = _D.dropout
    samples_per_epoch: int = _D.samples_per_epoch  # patch only: rows drawn per epoch (0: all)
    mask_weight: float = _D.mask_weight  # patch only: weight of the per-cell loss on expert masks
    freeze_backbone: bool = _D.freeze_backbone  # patch only: train the head alone
    head_depth: int = _D.head_depth  # patch only: 3x3 context convolutions in the head
    strip_skull: float = _D.strip_skull  # share of the views that are skull-stripped (bt_core.data.augment)
    symmetry: bool = _D.symmetry  # patch only: the head also sees each cell's difference from its mirror cell
    synth_lesions: float = _D.synth_lesions  # patch only: share of no-tumour views given a synthetic lesion
    lesion_weight: float = _D.lesion_weight  # patch only: their weight, times one (source family, class) pair's

    def folders(self) -> list[str]:
        """The source folders given, in order: ``data_dir``, then ``data_dirs``."""
        return [str(d) for d in (self.data_dir, *self.data_dirs) if str(d or "").strip()]

    def validate(self, roots=None) -> "JobSpec":
        """Check choices, ranges and sources (ConfigError, one line); the data fields become resolved paths."""
        for name, ok in CHOICES.items():
            if getattr(self, name) not in ok:
                raise ConfigError(f"{name} must be one of {', '.join(map(str, ok))}, got {getattr(self, name)!r}")
        for name, (lo, hi) in RANGES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{name.replace('_', ' ')} must be a whole number from {lo} to {hi}, got {v!r}")
        for name, (lo, hi) in FLOAT_RANGES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                label = "learning rate" if name == "lr" else name.replace("_", " ")
                raise ConfigError(f"{label} must be a number from {lo:g} to {hi:g}, got {v!r}")
        for model, defaults in MODEL_ONLY.items():
            changed = [k.replace("_", " ") for k, d in defaults.items() if getattr(self, k) != d]
            if changed and self.model != model:
                raise ConfigError(f"{' and '.join(changed)} apply to the {model} model only")
        shared = {f.name for f in fields(TrainConfig)} & {f.name for f in fields(JobSpec)}
        TrainConfig(**{k: getattr(self, k) for k in shared}).validate()  # the rules between options (e.g. patch sizes)
        if self.model in ("transfer", "patch"):
            check_backbone_weights(self.backbone)
        real, file = check_sources(self.folders(), self.sources_file, roots)
        self.data_dir, self.data_dirs = (str(real[0]) if real else ""), tuple(map(str, real[1:]))
        self.sources_file = str(file) if file else ""
        return self

    def _flags(self, extra: dict) -> list[str]:
        data = [a for d in self.folders() for a in ("--data", d)]
        data += ["--sources", self.sources_file] if self.sources_file else []
        changed = {k: getattr(self, k) for k, d in WHEN_CHANGED.items() if k not in BARE and getattr(self, k) != d}
        opts = {"model": self.model, "backbone": self.backbone, "split": self.split,
                **{k: getattr(self, k) for k in ALWAYS}, "lr": self.lr, "preprocess": self.preprocess,
                **({"pooling": self.pooling} if self.model == "transfer" else {}), **changed, **extra}
        text = {k: repr(float(v)) if k in FLOAT_RANGES else str(v) for k, v in opts.items()}
        flags = [a for k, v in text.items() for a in (f"--{k.replace('_', '-')}", v)]
        return [*data, *flags, *[f"--{k.replace('_', '-')}" for k in BARE if getattr(self, k)]]

    def argv(self, progress_file, out, roots=None, program=PROGRAM) -> list[str]:
        """The child's argument list, after :meth:`validate` (for Popen; never a shell string)."""
        self.validate(roots)
        return [*program, self.mode, *self._flags({"progress-file": progress_file, "out": out})]

    def command(self, roots=None) -> str:
        """The command the job runs, to show (shell-quoted, after :meth:`validate`; without the
        ``--progress-file`` and ``--out`` that the launcher adds)."""
        self.validate(roots)
        return shlex.join(["python", "-m", "bt_core", self.mode, *self._flags({})])


def data_label(spec: dict) -> str:
    """A job record's data, short: the names of its source folders and of its sources file."""
    paths = [spec.get("data_dir"), *(spec.get("data_dirs") or ()), spec.get("sources_file")]
    return ", ".join(Path(str(p)).name for p in paths if p) or "?"


def recipes(root=None) -> dict[str, dict]:
    """Starting points for the training form: name -> JobSpec fields (no data, no mode).

    The paper's CNN, then one recipe per shipped run (``shipped.json``) with the settings it was
    trained with, read from its run.json, so that the app can retrain exactly what it serves.
    """
    names = {f.name for f in fields(JobSpec)} - {*DATA_FIELDS, "mode"}
    out = {PAPER_RECIPE: {**{k: v for k, v in asdict(JobSpec()).items() if k in names}, "model": "paper_cnn"}}
    for kind, folder in runs.shipped(root).items():
        try:
            cfg = runs.load_run(folder).get("config", {})
        except (BTError, OSError, ValueError):
            continue  # a missing or broken shipped run has no recipe; the app says so elsewhere
        spec = asdict(JobSpec(**{k: cfg[k] for k in names if k in cfg}))
        out[f"Same settings as the shipped {runs.SHIPPED_KINDS[kind]} model ({folder.name})"] = {
            k: v for k, v in spec.items() if k in names}
    return out
