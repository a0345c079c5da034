"""The subcommands that use saved runs and data: ``evaluate``, ``predict``, ``audit`` and ``runs``.

``evaluate`` and ``predict`` default to the shipped transfer model (:func:`default_run`, from
``trained_models/shipped.json``); ``--json`` prints one JSON object on stdout. ``audit`` defaults to
distance 10, test size 0.2 and seed 42.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bt_core.errors import BTError


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
    results, unseen = [], None
    if loaded:  # keras is imported only when there is something to score
        from bt_core.serving.inference import Predictor
        pred = Predictor(args.model or default_run(), lazy=not args.gradcam)
        unseen = _unseen_clause(pred, args.threshold)
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
                          "unseen_sources": unseen, "disclaimer": DISCLAIMER}))
    else:
        for r in results:
            flag = f" [unlike training data, score {r['ood_score']:.2f}]" if r["ood"] else ""
            print(f"{r['name']}: tumour probability {r['prob']:.3f} -> {r['decision']}{flag}")
        if results:
            print("This model's answers, " + (unseen or "not yet measured on a source it never saw (no "
                                              "leave-one-source-out run of its recipe)") + ".")
            print(DISCLAIMER)
    return 2 if errors else 0


def _unseen_clause(pred, threshold) -> str | None:
    """What the run's recipe met on sources it never saw, at the threshold in use (None: not measured)."""
    from bt_core import runs
    from bt_core.evaluation import held_out

    try:
        lo = held_out.measured_by(pred.record)
        if lo is None:
            return None
        thr = pred.threshold if threshold is None else float(threshold)
        return held_out.expectation(held_out.unseen_at(runs.load_run(lo["dir"]), thr, pred.temperature), lo["id"], thr)
    except (BTError, OSError, ValueError, KeyError):  # a broken record costs the sentence, not the answers
        return None


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
