"""The training subcommands: ``train`` and ``cv`` (:func:`cmd_train`), ``loso``, and ``sweep`` (Ray).

Options become a :class:`bt_core.config.TrainConfig` (:func:`_config`); the sources named by ``--data`` /
``--sources`` are read by :func:`load_training_data`; runs are saved in the registry (``--out``, default
``trained_models/``) with the command that made them. Progress: :func:`bt_core.progress.progress_printer`.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bt_core.cli.parser import _train_args, build_parser
from bt_core.errors import ConfigError
from bt_core.progress import progress_printer as _progress_printer


def _config(args):
    from bt_core.config import TrainConfig, check_backbone_weights

    weights = None if str(args.backbone_weights).lower() == "none" else args.backbone_weights
    if args.model in ("transfer", "patch"):
        check_backbone_weights(args.backbone, weights)  # before any data is read
    return TrainConfig(model=args.model, backbone=args.backbone, backbone_weights=weights, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed, folds=args.folds, split=args.split,
                       test_size=args.test_size, image_size=args.image_size, preprocess=args.preprocess,
                       augment=args.augment, fine_tune_layers=args.fine_tune_layers, fine_tune_from=args.fine_tune_from, head_pool=args.head_pool,
                       pooling=args.pooling, mirror=args.mirror, degrade_copies=args.degrade_copies, precision=args.precision, data_parallel=args.data_parallel,
                       views=args.views, strip_skull=args.strip_skull, remap_intensity=args.remap_intensity, synth_lesions=args.synth_lesions, lesion_weight=args.lesion_weight, balance=args.balance, position_strength=args.position_strength, position_reference=args.position_reference, samples_per_epoch=args.samples_per_epoch,
                       mask_weight=args.mask_weight, freeze_backbone=args.freeze_backbone, dropout=args.dropout,
                       head_depth=args.head_depth, dense_units=args.dense_units, symmetry=args.symmetry,
                       feature_style=args.feature_style).validate()


def load_training_data(args, report):
    """The sources named by ``--data`` (repeated) / ``--sources`` -> (data set, (masks, has_mask) or None).

    One folder without metadata is read as before (near-duplicate groups are computed by the split)."""
    import numpy as np

    from bt_core import data
    from bt_core.data import sources

    specs = sources.specs_from(args.data, args.sources)
    report({"event": "data", "stage": "reading " + ", ".join(s.name for s in specs)})
    # decoded at the canonical size, so groups (hence the split) never depend on the model
    decode = lambda name, i, n: report({"event": "decode", "i": i, "n": n}) if i % 200 == 0 or i == n else None  # noqa: E731
    if len(specs) == 1 and not (Path(specs[0].path) / sources.META_FILE).is_file():
        ds = data.load_folder(specs[0].path, data.DEFAULT_SIZE, args.classes, progress=lambda i, n: decode("", i, n))
        if args.model != "patch":
            return ds, None
        ds.source, ds.source_names, ds.families = np.zeros(len(ds), np.int64), [specs[0].name], [specs[0].family]
    else:
        ds = sources.load_sources(specs, data.DEFAULT_SIZE, args.classes, progress=decode)
    return ds, (sources.load_masks(ds, specs) if args.model == "patch" else None)


def cmd_train(args, mode: str) -> int:
    from bt_core import data, runs
    from bt_core.models import training

    cfg = _config(args)
    report = _progress_printer(args.progress_file)
    ds, masks = load_training_data(args, report)
    fold_records = None  # --- several devices (bt_core.models.distribute) ---
    if args.only_fold is not None and not args.out:
        raise ConfigError("--only-fold saves a partial run: give it --out DIR (a scratch folder)")
    if args.parallel_folds:
        from bt_core.models.distribute import folds_from_cli
        fold_records = folds_from_cli(args, build_parser(), mode, cfg.folds, report)
    model, record = training.run_protocol(cfg, ds, mode, report, only_fold=args.only_fold, fold_records=fold_records,
                                          masks=masks)
    if args.only_fold is not None:
        folder = runs.save_run(record, None, args.out)
        print(f"saved fold {args.only_fold} of {cfg.folds} in {folder}")
        return 0
    record["command"] = "python -m bt_core " + shlex.join(args.argv)
    if args.label:
        record["label"] = args.label
    folder = runs.save_run(record, model, args.out)
    report({"event": "saved", "run": str(folder)})
    m = record["test"]["metrics"]
    print(f"saved {folder}\ntest: accuracy {m['accuracy']:.4f} sensitivity {m['sensitivity']:.4f} "
          f"specificity {m['specificity']:.4f} auc {m['auc']:.4f} (n={m['n']})")
    return 0


def cmd_loso(args) -> int:
    from bt_core import runs
    from bt_core.models import loso

    cfg = _config(args)
    report = _progress_printer(args.progress_file)
    ds, masks = load_training_data(args, report)
    record = loso.leave_one_source_out(cfg, ds, masks, report, only=args.only or None)
    record["command"] = "python -m bt_core " + shlex.join(args.argv)
    if args.label:
        record["label"] = args.label
    folder = runs.save_run(record, None, args.out)
    report({"event": "saved", "run": str(folder)})
    print(f"saved {folder}")
    for held, r in record["held_out"].items():
        for name, m in r["per_source"].items():
            figs = " ".join(f"{k} {m[k]:.4f}" for k in ("accuracy", "sensitivity", "specificity", "auc")
                            if isinstance(m.get(k), float) and m[k] == m[k])
            print(f"held out {held}: {name} (n={m['n']}) {figs}")
    return 0


def cmd_sweep(args) -> int:
    """A grid of cv/train configurations as Ray tasks (bt_core.models.sweep); 1 if any failed."""
    from bt_core.models import sweep

    probe = argparse.ArgumentParser(add_help=False)
    _train_args(probe)
    spec = sweep.load_spec(args.file, args.set)
    try:
        out = sweep.run_sweep(spec, args.out, known={a.dest for a in probe._actions}, address=args.address,
                              num_cpus=args.num_cpus, cpus_per_task=args.cpus_per_task, timeout=args.task_timeout)
    except ImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(sweep.format_table(out["table"]))
    for r in out["failed"]:
        print(f"FAILED {r['config_id']}: {r['error']}; log: {r['log']}", file=sys.stderr)
    return 1 if out["failed"] else 0
