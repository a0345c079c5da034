"""What a training job runs: :class:`JobSpec`, its checks and its argument list, and the form's recipes.

JobSpec defaults are the paper's (compact_cnn, 30 epochs, 3 folds, batch 32, 240 px, Adam 1e-4,
seed 42) with the leak-free group split. :meth:`JobSpec.argv` is the child's argument list
(``python -m bt_core cv|train ...``, for ``Popen``, never a shell string) after :meth:`JobSpec.validate`
(choices, ranges, and the data folder through :mod:`bt_core.serving.data_roots`). :func:`recipes`
are the form's starting points: the paper's CNN and the settings of each shipped run.
"""
import sys
from dataclasses import asdict, dataclass, fields

from bt_core import runs
from bt_core.config import BACKBONES, MODEL_KINDS, POOLING_CHOICES, PREPROCESS_CHOICES, SPLIT_KINDS
from bt_core.errors import BTError, ConfigError
from bt_core.serving.data_roots import check_data_dir

PROGRAM = (sys.executable, "-m", "bt_core")  # the argv prefix; the launcher passes its CHILD_PROGRAM
CHOICES = {"model": MODEL_KINDS, "backbone": BACKBONES, "split": SPLIT_KINDS, "mode": ("cv", "train"),
           "augment": (False, True), "preprocess": PREPROCESS_CHOICES, "pooling": POOLING_CHOICES,
           "mirror": (False, True)}
RANGES = {"epochs": (1, 1000), "folds": (2, 20), "batch_size": (1, 4096), "image_size": (32, 1024), "seed": (0, 2**31),
          "head_pool": (0, 16), "degrade_copies": (0, 8)}
LR_RANGE = (1e-6, 0.1)
TRANSFER_ONLY = {"pooling": "avg", "mirror": False}  # options that change a transfer model only, and their defaults
PAPER_RECIPE = "The paper's CNN (240 px, Adam 1e-4)"


@dataclass
class JobSpec:
    """What to train (defaults: see the module docstring)."""
    data_dir: str = ""
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

    def validate(self, roots=None) -> "JobSpec":
        """Check choices and ranges (ConfigError, one line); ``data_dir`` becomes the resolved folder."""
        for name, ok in CHOICES.items():
            if getattr(self, name) not in ok:
                raise ConfigError(f"{name} must be one of {', '.join(map(str, ok))}, got {getattr(self, name)!r}")
        for name, (lo, hi) in RANGES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{name.replace('_', ' ')} must be a whole number from {lo} to {hi}, got {v!r}")
        lo, hi = LR_RANGE
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not lo <= self.lr <= hi:
            raise ConfigError(f"learning rate must be a number from {lo:g} to {hi:g}, got {self.lr!r}")
        if self.model != "transfer":
            changed = [k for k, default in TRANSFER_ONLY.items() if getattr(self, k) != default]
            if changed:
                raise ConfigError(f"{' and '.join(changed)} apply to the transfer model only")
        self.data_dir = str(check_data_dir(self.data_dir, roots))
        return self

    def argv(self, progress_file, out, roots=None, program=PROGRAM) -> list[str]:
        """The child's argument list, after :meth:`validate` (for Popen; never a shell string)."""
        self.validate(roots)
        opts = {"data": self.data_dir, "model": self.model, "backbone": self.backbone, "split": self.split,
                **{k: getattr(self, k) for k in RANGES}, "lr": repr(float(self.lr)), "preprocess": self.preprocess,
                **({"pooling": self.pooling} if self.model == "transfer" else {}),
                "progress-file": progress_file, "out": out}
        flags = [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", str(v))]
        switches = [f"--{k}" for k in ("augment", "mirror") if getattr(self, k)]
        return [*program, self.mode, *flags, *switches]


def recipes(root=None) -> dict[str, dict]:
    """Starting points for the training form: name -> JobSpec fields (no data folder, no mode).

    The paper's CNN, then one recipe per shipped run (``shipped.json``) with the settings it was
    trained with, read from its run.json, so that the app can retrain exactly what it serves.
    """
    names = {f.name for f in fields(JobSpec)} - {"data_dir", "mode"}
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
