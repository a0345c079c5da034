"""The command line's parser: every subcommand of ``python -m bt_core`` and its options.

:func:`build_parser` is the whole parser; :func:`_train_args` the options ``train``, ``cv``, ``loso`` share
(and the option names a sweep accepts). Defaults are :class:`bt_core.config.TrainConfig`'s (the paper's:
30 epochs, batch 32, Adam 1e-4, 3 folds) with the leak-free group-aware split.
"""
from __future__ import annotations

import argparse

from bt_core.config import BALANCE_CHOICES, POSITION_REFERENCES, PRECISION_CHOICES


def _train_args(p: argparse.ArgumentParser) -> None:
    from bt_core.config import BACKBONES, FEATURE_STYLES, MODEL_KINDS, POOLING_CHOICES, PREPROCESS_CHOICES, SPLIT_KINDS, TrainConfig

    d = TrainConfig()
    p.add_argument("--data", action="append", default=[], metavar="FOLDER",
                   help="a labelled source (yes/ = tumour, no/ = no tumour, optional metadata.csv); repeat it for "
                        "several sources (one class alone is fine for a source)")
    p.add_argument("--sources", default=None, metavar="FILE", help="a TOML file of [[source]] tables (path, name, family)")
    p.add_argument("--classes", nargs=2, default=["no", "yes"], metavar=("NEG", "POS"), help="class folder names")
    p.add_argument("--model", default=d.model, choices=MODEL_KINDS)
    p.add_argument("--views", type=int, default=0, metavar="K",
                   help="train also on K random views of each training image (rotations incl. 90/180, flips, crops, "
                        "gamma, contrast, bias field, blur, noise, resolution, JPEG)")
    p.add_argument("--strip-skull", type=float, default=d.strip_skull, metavar="P",
                   help="skull-strip this share of the views (black out the head's rim, as in BraTS)")
    p.add_argument("--remap-intensity", type=float, default=d.remap_intensity, metavar="P",
                   help="send the head of this share of the views through a random intensity curve (inverted or "
                        "non-monotonic: another sequence's contrast)")
    p.add_argument("--synth-lesions", type=float, default=d.synth_lesions, metavar="P",
                   help="patch model: draw a synthetic lesion (with its mask) into this share of the no-tumour views")
    p.add_argument("--lesion-weight", type=float, default=d.lesion_weight, metavar="W",
                   help="patch model: the drawn lesions weigh W times one (source family, class) pair (with --balance source or position)")
    p.add_argument("--balance", default=d.balance, choices=BALANCE_CHOICES,
                   help="source: every (source family, class) pair weighs the same in training; position: that, and each "
                        "class alike along the volume within a family (slice position cannot predict the label)")
    p.add_argument("--position-strength", type=float, default=d.position_strength, metavar="S",
                   help="with --balance position: 1 evens each class along the volume fully, below 1 part of the way "
                        "(the weights raised to the power S)")
    p.add_argument("--position-reference", default=d.position_reference, choices=POSITION_REFERENCES,
                   help="with --balance position: both classes meet at the mean of their position distributions "
                        "(both), only the no-tumour slices move to the tumour slices' (tumour), or both meet in the middle half "
                        "of the volume only, the edge quarters at weight 1 before each class keeps its total (middle)")
    p.add_argument("--samples-per-epoch", type=int, default=0, metavar="N", help="patch model: rows drawn per epoch")
    p.add_argument("--mask-weight", type=float, default=d.mask_weight,
                   help="patch model: weight of the per-cell loss on the expert tumour masks")
    p.add_argument("--freeze-backbone", action="store_true", help="patch model: train the head only")
    p.add_argument("--symmetry", action="store_true",
                   help="patch model: the head also sees how each cell differs from its left-right mirror cell")
    p.add_argument("--feature-style", default=d.feature_style, choices=FEATURE_STYLES,
                   help="patch model: keep each map's channel means and scales, normalise them away (instance), "
                        "or mix them between slices in training (mixstyle)")
    p.add_argument("--head-depth", type=int, default=d.head_depth,
                   help="patch model: 3x3 context convolutions in the head")
    p.add_argument("--dense-units", type=int, default=d.dense_units,
                   help="width of the dense layer (CNN, transfer) or of the patch head")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--backbone", default=d.backbone, choices=BACKBONES)
    p.add_argument("--backbone-weights", default=d.backbone_weights,
                   help="'default' (ImageNet; Lite0 ships offline), 'imagenet', a weights file, or 'none'")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--folds", type=int, default=d.folds)
    p.add_argument("--split", default=d.split, choices=SPLIT_KINDS,
                   help="group: leak-free (near-duplicates kept together); random: the paper's (leaks)")
    p.add_argument("--test-size", type=float, default=d.test_size)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--head-pool", type=int, default=0, help="CNN: MaxPool size before Flatten (0: model default)")
    p.add_argument("--preprocess", default=d.preprocess, choices=PREPROCESS_CHOICES)
    p.add_argument("--augment", action="store_true", help="random flips, rotations, shifts, zoom, contrast")
    p.add_argument("--pooling", default=d.pooling, choices=POOLING_CHOICES,
                   help="transfer: pool the last feature map (avg) or maps of several depths (multiscale)")
    p.add_argument("--mirror", action="store_true",
                   help="transfer: average the features of each image and of its left-right mirror image")
    p.add_argument("--degrade-copies", type=int, default=0, metavar="K",
                   help="train also on K randomly blurred, noisy, low-resolution or JPEG-compressed copies of each "
                        "training image (simulated other scanners; 0: none)")
    p.add_argument("--fine-tune-layers", type=int, default=0, help="unfreeze the top N backbone layers")
    p.add_argument("--fine-tune-from", default="", metavar="LAYER",
                   help="fine-tune the backbone layers after LAYER (e.g. block10_add), on cached activations")
    p.add_argument("--mixed-precision", dest="precision", action="store_const", const="mixed_float16", default="float32",
                   help="float16 compute (GPU): the same as --precision mixed_float16")
    p.add_argument("--precision", default="float32", choices=PRECISION_CHOICES,
                   help="Keras dtype policy: float32 (default), mixed_float16 (GPU) or mixed_bfloat16 (CPUs with bfloat16)")
    # --- several devices (bt_core.models.distribute) ---
    p.add_argument("--data-parallel", action="store_true", help="train each model on all visible GPUs")
    p.add_argument("--parallel-folds", action="store_true",
                   help="cv: run the folds in parallel, one process per visible GPU (sequential without GPUs)")
    p.add_argument("--only-fold", type=int, default=None, metavar="K",
                   help="cv: run fold K only, no final fit; saves a partial run in --out (used by --parallel-folds)")
    p.add_argument("--out", default=None, help="run registry folder (default trained_models/)")
    p.add_argument("--progress-file", default=None, help="append JSON-lines progress events here")
    p.add_argument("--label", default=None, help="a human name for the run")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bt_core", description="Brain tumour detection on MRI slices "
                                "(decision support, not a diagnosis).")
    sub = p.add_subparsers(dest="command", required=True)
    _train_args(sub.add_parser("train", help="fit on the training part, score on the test part"))
    _train_args(sub.add_parser("cv", help="k-fold CV, then final fit and test (the paper's protocol)"))
    lo = sub.add_parser("loso", help="leave-one-source-out: train on all source families but one, test on it")
    _train_args(lo)
    lo.add_argument("--only", nargs="+", default=None, metavar="FAMILY", help="hold out only these families")
    e = sub.add_parser("evaluate", help="score a saved run on any labelled folder (one class alone is fine)")
    e.add_argument("--data", required=True, action="append",
                   help="folder with yes/ and/or no/ (repeat for several sources: overall and per-source metrics)")
    e.add_argument("--model", default=None, help="run folder or id (default: the shipped transfer model)")
    e.add_argument("--classes", nargs=2, default=["no", "yes"])
    e.add_argument("--threshold", type=float, default=None)
    e.add_argument("--json", action="store_true")
    pr = sub.add_parser("predict", help="tumour probability for image files (JPEG, PNG, DICOM, ...)")
    pr.add_argument("files", nargs="+")
    pr.add_argument("--model", default=None, help="run folder or id (default: the shipped transfer model)")
    pr.add_argument("--threshold", type=float, default=None)
    pr.add_argument("--gradcam", default=None, metavar="DIR", help="write Grad-CAM overlays here")
    pr.add_argument("--json", action="store_true")
    a = sub.add_parser("audit", help="near-duplicate groups and how much a split leaks")
    a.add_argument("--data", required=True)
    a.add_argument("--classes", nargs=2, default=["no", "yes"])
    a.add_argument("--max-distance", type=int, default=10)
    a.add_argument("--test-size", type=float, default=0.2)
    a.add_argument("--seed", type=int, default=42)
    a.add_argument("--json", action="store_true")
    r = sub.add_parser("reproduce", help="the paper's full protocol, both models, both splits -> report")
    r.add_argument("--data", required=True)
    r.add_argument("--epochs", type=int, default=30)
    r.add_argument("--folds", type=int, default=3, help="cross-validation folds (paper: 3)")
    r.add_argument("--models", nargs="+", default=["paper_cnn", "transfer"])
    r.add_argument("--splits", nargs="+", default=["random", "group"], choices=["random", "group"])
    r.add_argument("--backbone", default="efficientnet_lite0", choices=["efficientnet_lite0", "resnet50v2"])
    r.add_argument("--cnn-image-size", type=int, default=240, help="input size of the from-scratch CNN (paper: 240)")
    r.add_argument("--cnn-head-pool", type=int, default=0, help="CNN MaxPool before Flatten (0: model default)")
    r.add_argument("--cnn-lr", type=float, default=1e-4, help="CNN learning rate (paper: 1e-4)")
    r.add_argument("--precision", default="float32", choices=PRECISION_CHOICES,
                   help="Keras dtype policy of both models (float32: the paper's)")
    r.add_argument("--report", default="reports", help="folder for reproduction.md and its figures")
    r.add_argument("--out", default=None, help="run registry folder (default trained_models/_reproduce)")
    c = sub.add_parser("calibrate", help="temperature, operating threshold and OOD check for a cv run")
    c.add_argument("run")
    c.add_argument("--data", default=None, help="the run's data folder, if it moved")
    c.add_argument("--target-sensitivity", type=float, default=0.98)
    c.add_argument("--ood-quantile", type=float, default=0.99)
    c.add_argument("--loso", default=None, metavar="RUN",
                   help="a leave-one-source-out run of the same recipe: fit the abstention band on its predictions")
    c.add_argument("--abstain-target", type=float, default=0.97,
                   help="accuracy on answered images the band must reach on every source")
    lc = sub.add_parser("loso-checks", help="the refusal checks (OOD, plane) of a leave-one-source-out run, "
                        "fitted on the other sources per held-out source")
    lc.add_argument("run")
    lc.add_argument("--data", default=None, help="the run's data folder, if it moved")
    lc.add_argument("--ood-quantile", type=float, default=0.96)
    sw = sub.add_parser("sweep", help="a grid of cv/train configurations as Ray tasks (pip install -r requirements-ray.txt)")
    sw.add_argument("file", nargs="?", default=None, help="sweep TOML: command, name, [base] options, [grid] lists")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                    help="a grid axis (several values) or a base option (one value); overrides the file")
    sw.add_argument("--out", default=None, help="run registry folder (default trained_models/)")
    sw.add_argument("--address", default=None, help="an existing Ray cluster (default: a local Ray instance)")
    sw.add_argument("--num-cpus", type=int, default=None, help="local Ray: CPUs to use (default all)")
    sw.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs each configuration reserves")
    sw.add_argument("--task-timeout", type=float, default=None, metavar="S", help="stop a configuration after S s")
    ru = sub.add_parser("runs", help="list the runs in the registry")
    ru.add_argument("--out", default=None)
    return p
