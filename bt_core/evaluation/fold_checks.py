"""The app's refusal checks judged on sources they never saw: fitted per leave-one-source-out fold.

The served model refuses an image when its out-of-distribution check (:mod:`bt_core.evaluation.ood`:
backbone features or image statistics over their thresholds) or its plane detector
(:mod:`bt_core.evaluation.plane`: a coronal or sagittal slice) says so. Fitted on the shipped model's
training part, those checks have seen every source, so their effect on a new hospital's scans is
unknown. Here each check is fitted, for each held-out family, on the *other* families only, exactly as
``calibrate`` fits it (thresholds at the same quantile of out-of-fold scores, on group-aware folds of
the fitting rows), and applied to the held-out family. The record then says, per held-out source, the
share refused and the accuracy on the images left, which is what a new hospital meets.

Needs a leave-one-source-out record of the patch model with a frozen backbone: its features are the
ImageNet backbone's, the same in every fold, so one forward pass over the data serves every fold.
Defaults: quantile 0.96 (the shipped models' ``--ood-quantile``), 3 folds, the record's seed.
"""
from __future__ import annotations

import numpy as np

from bt_core.errors import ConfigError
from bt_core.evaluation import ood
from bt_core.evaluation.plane import PlaneDetector, plane_labels

DEFAULT_QUANTILE = 0.96
CHUNK = 512  # images per forward pass, so the float32 batch of every image never sits in memory at once


def backbone_features(cfg, images_u8: np.ndarray, progress=lambda e: None) -> np.ndarray:
    """Pooled features of the frozen patch backbone (what the served OOD check and plane detector use)."""
    from bt_core import data
    from bt_core.models import patch
    from bt_core.models.fast_pass import FastPass

    if cfg.model != "patch" or not cfg.freeze_backbone:
        raise ConfigError("the refusal checks need a leave-one-source-out run of the patch model with a frozen "
                          "backbone (--model patch --freeze-backbone): other models' features change per fold")
    model = patch.build(cfg.backbone_weights, cfg.image_size, fine_tune=False, seed=cfg.seed,
                        symmetry=False, backbone=cfg.backbone)  # the image's own map: what the symmetric model's checks pool
    out = []
    with FastPass(ood.feature_model(model, "backbone"), len(images_u8)) as run:
        for start in range(0, len(images_u8), CHUNK):
            batch = data.as_batch(images_u8[start:start + CHUNK], cfg.channels, cfg.preprocess)
            out.append(np.asarray(run(batch), np.float64))
            progress({"event": "stage", "stage": f"features {min(start + CHUNK, len(images_u8))}/{len(images_u8)}"
                                                 f" ({run.describe()})"})
    return np.concatenate(out)


def fold_refusals(family, labels, groups, strata, feats, stats, planes, quantile: float = DEFAULT_QUANTILE,
                  folds: int = 3, seed: int = 42) -> dict:
    """For each family F: fit both OOD detectors and the plane detector on the other families, apply
    them to F -> {F: {"ood": bool array, "plane": bool array or None (fewer than two planes to fit on)}}."""
    from bt_core.data import splits

    family, labels, planes = map(np.asarray, (family, labels, planes))
    q = 1 - (1 - quantile) / 2  # two detectors, each with half the false-flag budget (as calibrate)
    out = {}
    for fam in dict.fromkeys(family.tolist()):
        tr, te = np.flatnonzero(family != fam), np.flatnonzero(family == fam)
        kinds = "group" if groups is not None else "random"
        cv = list(splits.kfold(strata[tr], folds, kinds, None if groups is None else groups[tr], seed))
        flags = np.zeros(len(te), bool)
        for f in (feats, stats):
            thr, _ = ood.held_out_threshold(f[tr], labels[tr], cv, q)
            flags |= ood.OODDetector(threshold=thr).fit(f[tr], labels[tr]).flags(f[te])
        fit = tr[planes[tr] != ""]
        plane = None
        if len(set(planes[fit].tolist())) > 1:
            plane = np.asarray(PlaneDetector().fit(feats[fit], planes[fit]).predict(feats[te])) != "ax"
        out[str(fam)] = {"ood": flags, "plane": plane}
    return out


def summarise(y, prob, source, ood_flags, plane_flags, threshold: float = 0.5) -> dict:
    """Per source and overall: share refused (either check), by each check, and accuracy on the rest;
    the plane share is None when no plane detector could be fitted (the fitting families had one plane)."""
    y, prob, source = np.asarray(y), np.asarray(prob, float), np.asarray(source)
    fitted = plane_flags is not None
    plane_flags = np.asarray(plane_flags, bool) if fitted else np.zeros(len(y), bool)
    refused = np.asarray(ood_flags, bool) | plane_flags
    correct = (prob >= threshold) == (y == 1)

    def part(m):
        kept = m & ~refused
        return {"n": int(m.sum()), "refused": float(refused[m].mean()), "ood": float(np.asarray(ood_flags)[m].mean()),
                "plane": float(plane_flags[m].mean()) if fitted else None,
                "accuracy_accepted": float(correct[kept].mean()) if kept.any() else None}

    return {"all": part(np.ones(len(y), bool)),
            "per_source": {str(s): part(source == s) for s in dict.fromkeys(source.tolist())}}


def add_checks(record: dict, ds, quantile: float = DEFAULT_QUANTILE, progress=lambda e: None) -> dict:
    """Fit and apply the checks for every held-out family of a leave-one-source-out ``record`` on its data
    set ``ds`` (images at any size) -> the ``checks`` entry, also written into ``record``."""
    from bt_core import data
    from bt_core.config import TrainConfig
    from bt_core.data import sources
    from bt_core.models import sources_fit

    if record.get("mode") != "loso":
        raise ConfigError("the refusal checks are for leave-one-source-out runs (python -m bt_core loso ...)")
    if ds.fingerprint != record["data"].get("fingerprint"):
        raise ConfigError("the data differ from those this leave-one-source-out run was trained on")
    cfg = TrainConfig.from_dict(record["config"])
    images = data.at_size(ds.images, cfg.image_size)
    feats = backbone_features(cfg, images, progress)
    stats = ood.image_statistics(images)
    family = ds.family_of()
    planes = plane_labels(ds.meta.get("plane"), family)
    refusals = fold_refusals(family, ds.labels, sources.group_ids(ds), sources_fit.strata_for(ds),
                             feats, stats, planes, quantile, seed=cfg.seed)
    checks = {"quantile": quantile, "method": "out-of-distribution check (backbone features and image statistics) "
              "and plane detector, fitted on the other families only, as calibrate fits them", "held_out": {}}
    for fam, r in record["held_out"].items():
        flags = refusals[fam]
        pos = {int(i): k for k, i in enumerate(np.flatnonzero(family == fam))}
        order = np.asarray([pos[int(i)] for i in r["idx"]])  # the record's order of the held-out images
        plane = None if flags["plane"] is None else flags["plane"][order]
        checks["held_out"][fam] = {**summarise(r["y"], r["prob"], r["source"], flags["ood"][order], plane),
                                   "ood_flags": flags["ood"][order].tolist(),
                                   "plane_flags": None if plane is None else plane.tolist()}
    record["checks"] = checks
    return checks


def check_run(run, data_root=None, quantile: float = DEFAULT_QUANTILE, progress=lambda e: None) -> dict:
    """``python -m bt_core loso-checks RUN``: :func:`add_checks` on a saved leave-one-source-out run, whose
    ``run.json`` is rewritten atomically with the ``checks`` entry -> that entry."""
    from bt_core import runs
    from bt_core.evaluation.posthoc import load_run_data

    record = runs.load_run(run)
    folder = record.pop("dir")
    checks = add_checks(record, load_run_data(record, data_root), quantile, progress)
    runs.write_json_atomic(runs.resolve(folder) / runs.RUN_FILE, record)
    return checks
