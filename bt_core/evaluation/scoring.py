"""Scoring: how well a loaded model does on a labelled set of images (yours, not its test set).

:func:`score_predictor` runs a :class:`bt_core.serving.inference.Predictor` over the images in
batches (default ``BATCH_SIZE = 32``, with a progress callback) and :func:`summarise` turns the
answers into one JSON-friendly report:

- ``metrics``: :func:`bt_core.evaluation.metrics.binary_metrics` at the model's threshold (its own
  operating point unless one is given);
- ``ci``: accuracy, sensitivity, specificity with Wilson intervals and AUC with a stratified bootstrap
  interval (:func:`~bt_core.evaluation.metrics.metrics_with_ci`; ``level = 0.95``, ``n_boot = 1000``,
  ``seed = 0``);
- ``shown``: the figures these labels define (:func:`~bt_core.evaluation.metrics.defined_metrics`:
  one class alone gives accuracy and specificity, or accuracy and sensitivity; AUC needs both);
- ``roc`` (both classes only, else None), ``confusion`` ``[[tn, fp], [fn, tp]]``, ``reliability``
  (10 bins, :func:`~bt_core.evaluation.calibration.reliability_curve`) and ``ece`` (15 bins);
- ``flagged`` (count and share the out-of-distribution check flags, None without a detector) and
  ``accepted`` (the metrics on the images it accepts, None where there are none);
- ``per_source``: the same headline metrics for each source, when sources are given;
- ``table``: one row per image (name, source, label, prob, decision, correct, flagged, and ``index``, its
  position in the input), misses first (the most confident misses at the top), then the rest by name.

Undefined figures are NaN inside; :func:`jsonable` turns them into None for JSON. No streamlit here.
Results are decision support, not a diagnosis.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from bt_core.evaluation import calibration, metrics

BATCH_SIZE = 32
HEADLINE = ("accuracy", "sensitivity", "specificity", "auc", "n", "tp", "fp", "tn", "fn", "threshold")
CLASS_NAMES = ("no tumour", "tumour")


def score_predictor(predictor, pixels_list: Sequence[np.ndarray], labels, names: Sequence[str] | None = None,
                    threshold: float | None = None, sources: Sequence[str] | None = None,
                    batch_size: int = BATCH_SIZE, progress: Callable[[int, int], None] | None = None,
                    **summary_options) -> dict:
    """Answer every image (``batch_size`` at a time, ``progress(done, total)`` after each batch) and
    :func:`summarise` the answers against ``labels`` (1 = tumour, 0 = no tumour)."""
    names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(pixels_list))]
    answers, total = [], len(pixels_list)
    for start in range(0, total, max(1, int(batch_size))):
        stop = min(total, start + max(1, int(batch_size)))
        answers += predictor.answer(list(pixels_list[start:stop]), names[start:stop], threshold)
        if progress:
            progress(stop, total)
    has_ood = getattr(predictor, "ood", None) is not None
    return summarise(labels, answers, sources=sources, has_ood=has_ood, **summary_options)


def summarise(labels, answers, sources: Sequence[str] | None = None, has_ood: bool = True, level: float = 0.95,
              n_boot: int = 1000, seed: int = 0, n_bins: int = 10) -> dict:
    """The report (see the module docstring) from ``answers`` (objects with ``name``, ``prob``,
    ``threshold``, ``ood``) and their true ``labels``."""
    y = np.asarray(labels, np.int64).reshape(-1)
    prob = np.asarray([a.prob for a in answers], np.float64)
    flagged = np.asarray([bool(a.ood) for a in answers], bool)
    thr = float(answers[0].threshold) if answers else 0.5
    m = metrics.binary_metrics(y, prob, thr)  # validates: same lengths, 0/1 labels, probabilities
    both = 0 < y.sum() < y.size
    report = {
        "n": int(y.size), "n_tumour": int(y.sum()), "n_no_tumour": int(y.size - y.sum()), "threshold": thr,
        "classes": "both" if both else ("yes" if y[0] == 1 else "no"),
        "shown": list(metrics.defined_metrics(y)),
        "metrics": m,
        "ci": metrics.metrics_with_ci(y, prob, thr, seed=seed, level=level, n_boot=n_boot),
        "roc": metrics.roc_points(y, prob) if both else None,
        "confusion": [[m["tn"], m["fp"]], [m["fn"], m["tp"]]],
        "reliability": calibration.reliability_curve(y, prob, n_bins=n_bins),
        "ece": calibration.expected_calibration_error(y, prob),
        "flagged": None, "accepted": None, "per_source": None,
    }
    if has_ood:
        report["flagged"] = {"count": int(flagged.sum()), "share": float(flagged.mean())}
        keep = ~flagged
        if keep.any():
            report["accepted"] = {**metrics.binary_metrics(y[keep], prob[keep], thr),
                                  "shown": list(metrics.defined_metrics(y[keep]))}
    if sources is not None:
        src = np.asarray(sources)
        report["per_source"] = {str(name): {**_headline(y[src == name], prob[src == name], thr),
                                            "flagged": int(flagged[src == name].sum()) if has_ood else None,
                                            "shown": list(metrics.defined_metrics(y[src == name]))}
                                for name in dict.fromkeys(src.tolist())}
    report["table"] = image_table(answers, y, sources)
    return report


def _headline(y, prob, thr) -> dict:
    m = metrics.binary_metrics(y, prob, thr)
    return {k: m[k] for k in HEADLINE}


def image_table(answers, labels, sources: Sequence[str] | None = None) -> list[dict]:
    """One row per image, misses first (most confident miss first), then the rest by name."""
    rows = []
    for i, (a, lab) in enumerate(zip(answers, np.asarray(labels).tolist())):
        called = int(a.prob >= a.threshold)
        rows.append({"name": a.name, **({"source": str(sources[i])} if sources is not None else {}),
                     "label": CLASS_NAMES[int(lab)], "prob": float(a.prob), "decision": CLASS_NAMES[called],
                     "correct": called == int(lab), "flagged": bool(a.ood), "_miss_by": abs(int(lab) - float(a.prob)),
                     "index": i})
    rows.sort(key=lambda r: (r["correct"], -r["_miss_by"] if not r["correct"] else 0.0, r["name"]))
    for r in rows:
        del r["_miss_by"]
    return rows


def jsonable(value):
    """``value`` with every NaN or infinite float replaced by None, numpy scalars as Python ones."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
