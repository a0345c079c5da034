"""Command line: ``python -m bt_core {train,cv,loso,evaluate,predict,audit,reproduce,runs,...}``.

Every user error (bad file, wrong folder, bad option, missing model) ends with one line on stderr
and exit status 2, never a traceback. ``--json`` on ``evaluate`` and ``predict`` prints one JSON
object on stdout. Defaults follow the paper (30 epochs, batch 32, Adam 1e-4, 3 folds) with the
leak-free group-aware split.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from bt_core.errors import BTError, ConfigError


def _train_args(p: argparse.ArgumentParser) -> None:
    from bt_core.config import BACKBONES, MODEL_KINDS, POOLING_CHOICES, PREPROCESS_CHOICES, SPLIT_KINDS, TrainConfig

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
    p.add_argument("--balance", default=d.balance, choices=("none", "source"),
                   help="source: every (source family, class) pair weighs the same in training")
    p.add_argument("--samples-per-epoch", type=int, default=0, metavar="N", help="patch model: rows drawn per epoch")
    p.add_argument("--mask-weight", type=float, default=d.mask_weight,
                   help="patch model: weight of the per-cell loss on the expert tumour masks")
    p.add_argument("--freeze-backbone", action="store_true", help="patch model: train the head only")
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
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute (GPU)")
    # --- several devices (bt_core.models.distribute) ---
    p.add_argument("--data-parallel", action="store_true", help="train each model on all visible GPUs")
    p.add_argument("--parallel-folds", action="store_true",
                   help="cv: run the folds in parallel, one process per visible GPU (sequential without GPUs)")
    p.add_argument("--only-fold", type=int, default=None, metavar="K",
                   help="cv: run fold K only, no final fit; saves a partial run in --out (used by --parallel-folds)")
    p.add_argument("--out", default=None, help="run registry folder (default trained_models/)")
    p.add_argument("--progress-file", default=None, help="append JSON-lines progress events here")
    p.add_argument("--label", default=None, help="a human name for the run")


def _config(args):
    from bt_core.config import TrainConfig

    weights = None if str(args.backbone_weights).lower() == "none" else args.backbone_weights
    return TrainConfig(model=args.model, backbone=args.backbone, backbone_weights=weights, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed, folds=args.folds, split=args.split,
                       test_size=args.test_size, image_size=args.image_size, preprocess=args.preprocess,
                       augment=args.augment, fine_tune_layers=args.fine_tune_layers, fine_tune_from=args.fine_tune_from, head_pool=args.head_pool,
                       pooling=args.pooling, mirror=args.mirror, degrade_copies=args.degrade_copies, mixed_precision=args.mixed_precision, data_parallel=args.data_parallel,
                       views=args.views, balance=args.balance, samples_per_epoch=args.samples_per_epoch,
                       mask_weight=args.mask_weight, freeze_backbone=args.freeze_backbone, dropout=args.dropout,
                       head_depth=args.head_depth, dense_units=args.dense_units).validate()


def _progress_printer(path: str | None):
    fh = open(path, "a", buffering=1) if path else None

    def report(event: dict) -> None:
        event = {"t": round(time.time(), 3), **event}
        if fh:
            fh.write(json.dumps(event) + "\n")
        if event["event"] == "epoch":
            logs = " ".join(f"{k}={v:.4f}" for k, v in event["logs"].items())
            print(f"[{event['stage']}] epoch {event['epoch']}/{event['epochs']} {event['seconds']:.1f}s "
                  f"{event['images_per_s']:.0f} img/s {logs}", flush=True)
        elif event["event"] in ("stage", "features", "data"):
            print(f"== {event.get('stage', event['event'])} {event.get('n', '')}".rstrip(), flush=True)
    return report


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


def default_run(kind: str = "transfer") -> str:
    """The shipped run of a kind ("transfer" or "cnn"), from trained_models/shipped.json."""
    from bt_core import runs
    from bt_core.errors import ModelError

    listed = runs.shipped()
    if kind not in listed:
        raise ModelError(f"no shipped {kind} model listed in {runs.default_root() / runs.SHIPPED_FILE}; "
                         "pass --model RUN")
    return str(listed[kind])


def cmd_evaluate(args) -> int:
    from bt_core.data import sources
    from bt_core.evaluation import scoring
    from bt_core.serving.inference import Predictor

    pred = Predictor(args.model or default_run(), lazy=True)
    ds = sources.load_sources(sources.specs_from(args.data), classes=args.classes)
    several = len(ds.source_names) > 1
    rep = scoring.score_predictor(pred, ds.images, ds.labels, ds.paths, args.threshold,
                                  sources=list(ds.source_of()) if several else [ds.source_names[0]] * len(ds))
    out = {"model": pred.record["id"], "data": ds.root, **rep["metrics"], "classes": rep["classes"],
           "shown": rep["shown"], "ci": rep["ci"], "ece": rep["ece"],
           "ood_flagged": rep["flagged"]["count"] if rep["flagged"] else 0}
    if rep["accepted"] is not None:
        out["accepted"] = rep["accepted"]
    out["per_source"] = rep["per_source"]
    out["skipped_files"] = ds.skipped
    if args.json:
        print(json.dumps(scoring.jsonable(out)))
        return 0

    def figures(m: dict) -> str:  # only the figures these labels define (one class: no AUC)
        return " ".join(f"{k} {m[k]:.4f}" for k in m["shown"])

    print(f"{out['model']} on {out['data']} (n={out['n']}): {figures(out)}; "
          f"flagged unlike training data: {out['ood_flagged']}")
    if "accepted" in out:
        print(f"  on the {out['accepted']['n']} images the out-of-distribution check accepts: {figures(out['accepted'])}")
    for name, m in (out["per_source"] or {}).items() if several else ():
        print(f"  {name} (n={m['n']}): {figures(m)}")
    return 0


def cmd_predict(args) -> int:
    from bt_core import DISCLAIMER
    from bt_core.data import images

    loaded, errors = [], []
    for f in args.files:
        try:
            loaded.append(images.load_image(f, name=images.safe_name(Path(f).name)))
        except BTError as err:
            errors.append(str(err))
            print(f"error: {err}", file=sys.stderr)
    results = []
    if loaded:  # keras is imported only when there is something to score
        from bt_core.serving.inference import Predictor
        pred = Predictor(args.model or default_run(), lazy=not args.gradcam)
        for img, ans in zip(loaded, pred.answer([i.pixels for i in loaded], [i.name for i in loaded], args.threshold)):
            ans.notes = list(img.notes)
            results.append(ans.to_dict())
        if args.gradcam:
            from bt_core.explain import overlay
            out_dir = Path(args.gradcam)
            out_dir.mkdir(parents=True, exist_ok=True)
            for img, heat in zip(loaded, pred.explain([i.pixels for i in loaded])):
                (out_dir / f"{Path(img.name).stem}_gradcam.png").write_bytes(
                    overlay.to_png_bytes(overlay.overlay(img.pixels, heat)))
    if args.json:
        print(json.dumps({"model": pred.record["id"] if loaded else None, "results": results, "errors": errors,
                          "disclaimer": DISCLAIMER}))
    else:
        for r in results:
            flag = f" [unlike training data, score {r['ood_score']:.2f}]" if r["ood"] else ""
            print(f"{r['name']}: tumour probability {r['prob']:.3f} -> {r['decision']}{flag}")
        if results:
            print(DISCLAIMER)
    return 2 if errors else 0


def cmd_audit(args) -> int:
    from bt_core import data
    from bt_core.data import splits

    ds = data.load_folder(args.data, data.DEFAULT_SIZE, args.classes)
    bits = splits.dhash_bits(ds.images)
    out = splits.duplicate_summary(bits, args.max_distance)
    groups = splits.near_duplicate_groups(bits=bits, max_distance=args.max_distance)
    for kind in ("random", "group"):
        tr, te = splits.holdout(ds.labels, kind, groups, args.test_size, args.seed)
        out[f"{kind}_split"] = {"test": len(te), "test_with_duplicate_in_train": splits.leak_count(bits, tr, te, args.max_distance)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['images']} images: {out['exact_pairs']} exact-duplicate pairs, {out['near_pairs']} pairs within "
              f"distance {out['max_distance']} ({out['images_with_duplicate']} images), {out['groups']} groups, "
              f"largest {out['largest_group']}")
        for kind in ("random", "group"):
            s = out[f"{kind}_split"]
            print(f"{kind} split (seed {args.seed}): {s['test_with_duplicate_in_train']} of {s['test']} test images "
                  f"have a near-duplicate in training")
    return 0


def cmd_runs(args) -> int:
    from bt_core import runs

    for r in runs.list_runs(args.out):
        m = r.get("test") or {}
        acc = f"acc {m['accuracy']:.4f} auc {m['auc']:.4f}" if "accuracy" in m else ""
        print(f"{r['id']}  {r.get('status')}  {acc}")
    return 0


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
    r.add_argument("--models", nargs="+", default=["paper_cnn", "transfer"])
    r.add_argument("--splits", nargs="+", default=["random", "group"], choices=["random", "group"])
    r.add_argument("--backbone", default="efficientnet_lite0", choices=["efficientnet_lite0", "resnet50v2"])
    r.add_argument("--cnn-image-size", type=int, default=240, help="input size of the from-scratch CNN (paper: 240)")
    r.add_argument("--cnn-head-pool", type=int, default=0, help="CNN MaxPool before Flatten (0: model default)")
    r.add_argument("--cnn-lr", type=float, default=1e-4, help="CNN learning rate (paper: 1e-4)")
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


def main(argv=None) -> int:
    import signal

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in the run, so its command can be rerun
    # a cancelled job unwinds normally, so atomic writes remove their temporary files
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.command in ("train", "cv", "loso", "reproduce", "calibrate"):
            from bt_core.quiet import import_keras
            import_keras()  # these need Keras: import it now, without the backend's start-up notices
        if args.command in ("train", "cv"):
            return cmd_train(args, args.command)
        if args.command == "loso":
            return cmd_loso(args)
        if args.command == "reproduce":
            from bt_core.evaluation.reproduce import main as reproduce_main
            return reproduce_main(args)
        if args.command == "calibrate":
            from bt_core.evaluation.posthoc import calibrate
            out = calibrate(args.run, args.data, args.target_sensitivity, args.ood_quantile,
                            loso_run=args.loso, abstain_target=args.abstain_target)
            from bt_core.serving import lite
            try:  # the fast first answer; without it the app answers with Keras
                out["lite"] = lite.export(args.run)
            except BTError as err:
                print(f"note: no LiteRT export ({err})", file=sys.stderr)
            print(json.dumps(out, default=float, indent=1))
            return 0
        if args.command == "sweep":
            return cmd_sweep(args)
        return {"evaluate": cmd_evaluate, "predict": cmd_predict, "audit": cmd_audit, "runs": cmd_runs}[args.command](args)
    except BTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permission denied, ...
        print(f"error: {err}", file=sys.stderr)
        return 2
