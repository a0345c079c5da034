"""Post-hoc steps for a finished cross-validated run: calibration, operating point, OOD check.

``python -m bt_core calibrate RUN`` (or :func:`calibrate`) adds to the run, using only its
*training* part:

- temperature scaling fitted on the out-of-fold predictions (Guo et al., 2017);
- an operating threshold chosen on those calibrated out-of-fold predictions for a target
  sensitivity (default 0.98: a missed tumour costs more than a false alarm);
- an out-of-distribution detector (:mod:`bt_core.evaluation.ood`) on the model's penultimate features, its
  threshold at the 0.99 quantile of held-out (out-of-fold) scores;

then reports, on the untouched test part, ECE before and after, sensitivity and specificity at the
chosen threshold, and the share of test images flagged. The run's ``run.json`` is rewritten
atomically (with ``calibrate_wall_time_s``, how long this took); ``ood.npz`` is written beside it.
"""
from __future__ import annotations

import time

import numpy as np

from bt_core.evaluation import calibration, metrics, ood
from bt_core import data, runs
from bt_core.errors import ConfigError
from bt_core.config import TrainConfig


def load_run_data(record: dict, data_root=None):
    """The data set a run was trained on: its folder, or its sources (names and roots from the record)."""
    srcs = record["data"].get("sources") or []
    if len(srcs) > 1 and not data_root:
        from bt_core.data import sources

        specs = [sources.SourceSpec(s["root"], s["name"], s["family"]) for s in srcs]
        return sources.load_sources(specs, data.DEFAULT_SIZE, record["data"]["classes"])
    return data.load_folder(data_root or record["data"]["root"], data.DEFAULT_SIZE, record["data"]["classes"])


def calibrate(run, data_root=None, target_sensitivity: float = 0.98, ood_quantile: float = 0.99,
              progress=print, loso_run=None, abstain_target: float = 0.97) -> dict:
    """Calibrate a cv run (see the module docstring). With several sources, also fit the plane
    detector (:mod:`bt_core.evaluation.plane`); with ``loso_run`` (a leave-one-source-out run of the
    same recipe), the abstention band (:mod:`bt_core.evaluation.abstain`) on its predictions."""
    t0 = time.perf_counter()
    record = runs.load_run(run)
    folder = record["dir"]
    if not record.get("folds"):
        raise ConfigError("calibration needs a cross-validated run (python -m bt_core cv ...)")
    cfg = TrainConfig.from_dict(record["config"])
    labels = np.asarray(record["data"]["labels"])
    oof_idx, oof_prob = np.asarray(record["oof"]["idx"]), np.asarray(record["oof"]["prob"])
    temperature = calibration.fit_temperature(labels[oof_idx], oof_prob)
    oof_cal = calibration.apply_temperature(oof_prob, temperature)
    threshold = metrics.threshold_for_sensitivity(labels[oof_idx], oof_cal, target_sensitivity)

    test_y, test_p = np.asarray(record["test"]["y"]), np.asarray(record["test"]["prob"])
    test_cal = calibration.apply_temperature(test_p, temperature)
    out = {"calibration": {"temperature": temperature, "method": "temperature scaling on out-of-fold predictions",
                           "ece_test_before": calibration.expected_calibration_error(test_y, test_p),
                           "ece_test_after": calibration.expected_calibration_error(test_y, test_cal)},
           "operating_point": {"threshold": threshold, "target_sensitivity": target_sensitivity,
                               "chosen_on": "calibrated out-of-fold predictions",
                               "test": metrics.binary_metrics(test_y, test_cal, threshold)}}

    ds = load_run_data(record, data_root)
    ds.images = data.at_size(ds.images, cfg.image_size)  # as run_protocol does
    if ds.fingerprint != record["data"].get("fingerprint"):
        raise ConfigError("the data folder differs from the one this run was trained on")
    progress("computing features for the out-of-distribution check")
    from bt_core.models.fast_pass import FastPass

    model = runs.load_model(folder)
    layer = ood.DEFAULT_LAYER.get(cfg.model, "fc")
    with FastPass(ood.feature_model(model, layer), len(ds.images), batch_size=32) as run:
        progress(f"features of {len(ds.images)} images ({run.describe()})")
        feats = np.asarray(run(data.as_batch(ds.images, cfg.channels, cfg.preprocess)), np.float64)
    train_idx, test_idx = np.asarray(record["split"]["train_idx"]), np.asarray(record["split"]["test_idx"])
    pos = {int(i): k for k, i in enumerate(train_idx)}
    folds = [(np.array([pos[i] for i in f["train_idx"]]), np.array([pos[i] for i in f["val_idx"]]))
             for f in record["folds"]]
    q = 1 - (1 - ood_quantile) / 2  # two detectors, each with half the false-flag budget
    stats = ood.image_statistics(ds.images)
    dets = {}
    for name, f in (("features", feats), ("image_stats", stats)):
        thr, _ = ood.held_out_threshold(f[train_idx], labels[train_idx], folds, q)
        dets[name] = ood.OODDetector(threshold=thr).fit(f[train_idx], labels[train_idx])
    dets["features"].save(folder)
    dets["image_stats"].save(folder, ood.STATS_FILE)
    test_flags = dets["features"].flags(feats[test_idx]) | dets["image_stats"].flags(stats[test_idx])
    out["ood"] = {"file": ood.OOD_FILE, "layer": layer, "threshold": dets["features"].threshold,
                  "stats_file": ood.STATS_FILE, "stats_threshold": dets["image_stats"].threshold,
                  "quantile": ood_quantile,
                  "method": "class-conditional Mahalanobis (PCA 64, Ledoit-Wolf) on penultimate features "
                            "and on image statistics; flagged when either is over its threshold",
                  "test_flagged": int(test_flags.sum()), "test_n": int(len(test_idx))}
    if ds.meta.get("plane") is not None or len(record["data"].get("sources") or []) > 1:
        from bt_core.evaluation.plane import PlaneDetector, plane_labels

        planes = plane_labels(ds.meta.get("plane"), ds.family_of())
        fit = np.intersect1d(train_idx, np.flatnonzero(planes != ""))
        if len(set(planes[fit].tolist())) > 1:
            det = PlaneDetector().fit(feats[fit], planes[fit])
            det.save(folder)
            te = np.intersect1d(test_idx, np.flatnonzero(planes != ""))
            pred = np.asarray(det.predict(feats[te]))
            out["plane"] = {"file": "plane.npz", "layer": layer, "classes": det.classes.tolist(),
                            "test_accuracy": float((pred == planes[te]).mean()), "test_n": int(len(te)),
                            "test_per_plane": {str(c): float((pred[planes[te] == c] == c).mean())
                                               for c in np.unique(planes[te])}}
    if loso_run:
        from bt_core.evaluation import abstain

        lo = runs.load_run(loso_run)
        y_l, p_l, s_l = [], [], []
        for r in lo["held_out"].values():
            y_l += r["y"]
            p_l += list(calibration.apply_temperature(np.asarray(r["prob"]), temperature))
            s_l += r["source"]
        band = abstain.fit_band(np.asarray(y_l), np.asarray(p_l), np.asarray(s_l), abstain_target, threshold)
        out["abstain"] = {**band, "loso_run": lo["id"],
                          "method": "uncertain band of calibrated probabilities around the operating threshold, "
                                    "fitted on leave-one-source-out predictions so that accuracy on answered "
                                    f"images is at least {abstain_target} on every source"}
    out["calibrate_wall_time_s"] = round(time.perf_counter() - t0, 2)
    record.update(out)
    record.pop("dir", None)
    runs.write_json_atomic(runs.resolve(folder) / runs.RUN_FILE, record)
    return out
