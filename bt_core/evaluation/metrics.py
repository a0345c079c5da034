"""Classification metrics for binary tumour classifiers, with confidence intervals.

Label 1 = tumour, 0 = no tumour; ``prob`` is the predicted tumour probability. A case is called
tumour when ``prob >= threshold``.

Defaults:
- ``threshold = 0.5``; confidence ``level = 0.95``.
- Proportions (accuracy, sensitivity, specificity) get Wilson score intervals
  (``statsmodels`` ``proportion_confint(method="wilson")``).
- AUC gets a percentile bootstrap interval: ``n_boot = 1000`` stratified resamples (positives and
  negatives resampled separately, so every resample keeps both classes), ``seed = 0``. Resamples
  where the metric is undefined (e.g. precision with no predicted tumour) are skipped.
- Undefined ratios (e.g. sensitivity with no tumour cases, AUC with one class) are ``NaN``, without
  warnings; :func:`defined_metrics` names the figures that one set of labels defines.
- ``fold_table`` reports the Mean and the *sample* variance (``ddof=1``) of the per-fold values as
  fractions; the paper (Jardim et al.) prints variances of percentages, which are 10^4 times larger.

All returned values are plain Python ``int`` / ``float`` / ``list`` (JSON-friendly), except
``fold_table`` which returns a ``pandas.DataFrame``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve
from statsmodels.stats.proportion import proportion_confint

from bt_core.errors import ConfigError, DataError

METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")


def pct(value) -> str:
    """A share as a percentage with one decimal ("93.2%"), or "n/a" where it is missing or undefined."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not math.isfinite(v) else f"{100 * v:.1f}%"


def best_threshold_accuracy(y_true, prob) -> float:
    """The highest accuracy any threshold reaches on these labels (calling "tumour" at or above it, or never):
    an upper bound for every threshold rule, since it is chosen on the labels it is scored on. NaN if empty.
    Every cut of scikit-learn's ROC curve (ties kept together), each scored as (TP + TN) / n."""
    y, p = np.asarray(y_true).astype(int), np.asarray(prob, float)
    if not len(y):
        return float("nan")
    pos = int(y.sum())
    if pos in (0, len(y)):  # one class: one side of every cut is right for all
        return 1.0
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    return float(np.max(np.rint(tpr * pos + (1 - fpr) * (len(y) - pos))) / len(y))  # right answers, whole


def check_binary(y_true, prob, *, unit: bool = True, name: str = "prob"):
    """Validate labels and scores; return ``(y int64 array, scores float64 array)``.

    ``unit=False`` allows any finite score (e.g. logits). Arrays of shape (n, 1) are flattened.
    """
    y = np.asarray(y_true)
    try:
        p = np.asarray(prob, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be numeric.") from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if y.ndim != 1 or p.ndim != 1:
        raise DataError(f"y_true and {name} must be 1-D arrays.")
    if y.size == 0:
        raise DataError("No predictions to evaluate (empty input).")
    if y.size != p.size:
        raise DataError(f"y_true has {y.size} labels but {name} has {p.size} values.")
    if not np.isin(y, (0, 1)).all():
        raise DataError("y_true must contain only 0 (no tumour) and 1 (tumour).")
    if not np.isfinite(p).all():
        raise DataError(f"{name} contains NaN or infinite values.")
    if unit and (p.min() < 0.0 or p.max() > 1.0):
        raise DataError(f"{name} must be probabilities in [0, 1].")
    return y.astype(np.int64), p


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"Confidence level must be between 0 and 1, got {level}.")
    return float(level)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _counts(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    pred = (p >= threshold).astype(np.int64)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return int(tn), int(fp), int(fn), int(tp)


def confusion(y_true, prob, threshold: float = 0.5) -> list[list[int]]:
    """2x2 confusion matrix ``[[tn, fp], [fn, tp]]`` (rows = truth, columns = prediction)."""
    y, p = check_binary(y_true, prob)
    tn, fp, fn, tp = _counts(y, p, threshold)
    return [[tn, fp], [fn, tp]]


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict:
    """Accuracy, sensitivity, specificity, precision, F1, AUC and the confusion counts."""
    y, p = check_binary(y_true, prob)
    tn, fp, fn, tp = _counts(y, p, threshold)
    n = tn + fp + fn + tp
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < n else float("nan")
    return {
        "accuracy": _ratio(tp + tn, n),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc": auc,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": n,
        "threshold": float(threshold),
    }


def per_source_metrics(y_true, prob, source, threshold: float = 0.5) -> dict:
    """{source: :func:`binary_metrics` of its predictions} (a source with one class is fine)."""
    y, p, src = np.asarray(y_true), np.asarray(prob), np.asarray(source)
    return {str(s): binary_metrics(y[src == s], p[src == s], threshold) for s in np.unique(src)}


def defined_metrics(y_true) -> tuple[str, ...]:
    """The headline figures defined for these labels: all four with both classes; ``specificity`` and
    ``accuracy`` with only no-tumour cases; ``sensitivity`` and ``accuracy`` with only tumour cases."""
    y = np.asarray(y_true).reshape(-1)
    if y.size == 0:
        return ()
    has_pos, has_neg = bool((y == 1).any()), bool((y == 0).any())
    if has_pos and has_neg:
        return ("accuracy", "sensitivity", "specificity", "auc")
    return ("accuracy", "sensitivity") if has_pos else ("accuracy", "specificity")


def _need_both_classes(y: np.ndarray, what: str) -> None:
    if y.min() == y.max():
        raise DataError(f"{what} needs both tumour and no-tumour cases; only one class is present.")


def roc_points(y_true, prob) -> dict:
    """ROC curve as lists ``fpr``, ``tpr``, ``thresholds`` (sklearn ``roc_curve``).

    sklearn's first threshold is ``inf`` ("call nothing tumour"); it is replaced by a finite value
    that still lies above every score (1.0, or just above 1.0 when a score equals 1.0).
    """
    y, p = check_binary(y_true, prob)
    _need_both_classes(y, "A ROC curve")
    fpr, tpr, thr = roc_curve(y, p)
    top = 1.0 if p.max() < 1.0 else float(np.nextafter(1.0, 2.0))
    thr = np.where(np.isfinite(thr), thr, top)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes / n`` (statsmodels ``proportion_confint``)."""
    level = _check_level(level)
    if n <= 0 or successes < 0 or successes > n:
        raise ConfigError(f"Need 0 <= successes <= n and n > 0, got successes={successes}, n={n}.")
    low, high = proportion_confint(successes, n, alpha=1.0 - level, method="wilson")
    return float(low), float(high)


def _boot_values(y, p, metric, threshold, n_boot, rng) -> np.ndarray:
    """Metric on ``n_boot`` stratified resamples, vectorised; undefined values are NaN."""
    pos, neg = p[y == 1], p[y == 0]
    n1, n0 = pos.size, neg.size
    out = []
    chunk = max(1, 2_000_000 // (n1 + n0))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        sp = pos[rng.integers(0, n1, size=(b, n1))] if n1 else np.empty((b, 0))
        sn = neg[rng.integers(0, n0, size=(b, n0))] if n0 else np.empty((b, 0))
        if metric == "auc":
            ranks = rankdata(np.concatenate([sp, sn], axis=1), axis=1)  # midranks
            out.append((ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2.0) / (n1 * n0))
            continue
        tp = (sp >= threshold).sum(axis=1).astype(float)
        fp = (sn >= threshold).sum(axis=1).astype(float)
        fn, tn = n1 - tp, n0 - fp
        with np.errstate(invalid="ignore", divide="ignore"):
            val = {
                "accuracy": lambda: (tp + tn) / (n1 + n0),
                "sensitivity": lambda: tp / n1,
                "specificity": lambda: tn / n0,
                "precision": lambda: tp / (tp + fp),
                "f1": lambda: 2 * tp / (2 * tp + fp + fn),
            }[metric]()
        out.append(val)
    return np.concatenate(out)


def bootstrap_ci(y_true, prob, metric: str = "auc", n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0, threshold: float = 0.5) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` with stratified resampling.

    ``metric`` is one of ``accuracy, sensitivity, specificity, precision, f1, auc``. Each resample
    draws the tumour and the no-tumour cases separately with replacement (class sizes kept).
    Resamples where the metric is undefined are skipped; ``(nan, nan)`` if none is defined.
    AUC is computed with the Mann-Whitney midrank formula, identical to ``roc_auc_score``.
    """
    level = _check_level(level)
    if metric not in METRICS:
        raise ConfigError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    if int(n_boot) < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}.")
    y, p = check_binary(y_true, prob)
    if metric == "auc":
        _need_both_classes(y, "A bootstrap interval for AUC")
    vals = _boot_values(y, p, metric, threshold, int(n_boot), np.random.default_rng(seed))
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(vals, [tail, 100.0 - tail])
    return float(low), float(high)


def metrics_with_ci(y_true, prob, threshold: float = 0.5, seed: int = 0, level: float = 0.95,
                    n_boot: int = 1000) -> dict:
    """Accuracy, sensitivity, specificity (Wilson CI) and AUC (stratified bootstrap CI).

    Returns ``{"accuracy": {"value", "low", "high"}, ..., "auc": {...}}``; NaN where undefined.
    """
    m = binary_metrics(y_true, prob, threshold)
    nan = float("nan")

    def wilson(k: int, n: int) -> dict:
        value = _ratio(k, n)
        low, high = wilson_ci(k, n, level) if n else (nan, nan)
        return {"value": value, "low": low, "high": high}

    out = {
        "accuracy": wilson(m["tp"] + m["tn"], m["n"]),
        "sensitivity": wilson(m["tp"], m["tp"] + m["fn"]),
        "specificity": wilson(m["tn"], m["tn"] + m["fp"]),
    }
    if math.isnan(m["auc"]):
        out["auc"] = {"value": nan, "low": nan, "high": nan}
    else:
        low, high = bootstrap_ci(y_true, prob, "auc", n_boot=n_boot, level=level, seed=seed)
        out["auc"] = {"value": m["auc"], "low": low, "high": high}
    return out


def fold_table(fold_metrics: list[dict],
               keys: tuple[str, ...] = ("accuracy", "sensitivity", "specificity")) -> pd.DataFrame:
    """Per-fold table in the layout of the paper's Table 1: rows Fold 1..k, Mean, Variance.

    Values are fractions. "Variance" is the *sample* variance (``ddof=1``, NaN for one fold) of
    the fractions; the paper reports the variance of percentages (multiply by 10^4 to compare).
    """
    if not fold_metrics:
        raise DataError("fold_table needs the metrics of at least one fold.")
    missing = sorted({k for fm in fold_metrics for k in keys if k not in fm})
    if missing:
        raise ConfigError(f"Fold metrics lack the key(s): {', '.join(missing)}.")
    folds = pd.DataFrame([{k: float(fm[k]) for k in keys} for fm in fold_metrics],
                         columns=list(keys))
    folds.index = [f"Fold {i}" for i in range(1, len(folds) + 1)]
    summary = pd.DataFrame([folds.mean(axis=0), folds.var(axis=0, ddof=1)],
                           index=["Mean", "Variance"])
    return pd.concat([folds, summary])


def threshold_for_sensitivity(y_true, prob, target: float = 0.98) -> float:
    """Largest threshold ``t`` whose sensitivity (``prob >= t`` called tumour) is ``>= target``.

    It is the ``ceil(target * n_pos)``-th largest tumour-case score.
    """
    if not 0.0 < float(target) <= 1.0:
        raise ConfigError(f"Target sensitivity must be in (0, 1], got {target}.")
    y, p = check_binary(y_true, prob)
    pos = np.sort(p[y == 1])[::-1]
    if pos.size == 0:
        raise DataError("Cannot set a sensitivity threshold without tumour cases.")
    need = max(1, math.ceil(float(target) * pos.size - 1e-9))
    return float(pos[need - 1])


def youden_threshold(y_true, prob) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1 (the largest if tied)."""
    pts = roc_points(y_true, prob)
    j = np.asarray(pts["tpr"]) - np.asarray(pts["fpr"])
    return float(pts["thresholds"][int(np.argmax(j))])
