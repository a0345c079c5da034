"""Abstain: when the model should not answer, fitted on sources it was *not* trained on.

The rule is an *uncertain band* of calibrated probabilities: the model answers when ``p <= low``
("no tumour") or ``p >= high`` ("tumour") and abstains in between. It is chosen on
leave-one-source-out predictions (:mod:`bt_core.models.loso`): every prediction comes from a model
that never saw that image's source, which is what a new hospital's scans meet. Among all bands,
:func:`fit_band` keeps the one that answers the most images while accuracy on the answered images
is at least ``target`` (default 0.97) on *every* fitting source, so no single source is sacrificed
to the average, and every fitting source still gets at least ``min_coverage`` (default 0.1) of its
images answered: a band that answers only probabilities of exactly 0 or 1 is no rule. When no band reaches the target on every source (confidently wrong answers), the
result says so (``met: False``) and the band is empty: this rule then refuses nothing, and the
report shows the accuracy as it is. :func:`held_out_check` judges the rule honestly: for each family it fits the band
on the other families only and applies it to the held-out one.

:func:`risk_coverage` gives the curve of accuracy against the share answered (confidence ranking).
"""
from __future__ import annotations

import numpy as np

from bt_core.errors import BTError

DEFAULT_TARGET = 0.97
DEFAULT_MIN_COVERAGE = 0.1
GRID = np.round(np.concatenate([np.linspace(0.0, 0.5, 51), np.linspace(0.5, 1.0, 51)[1:]]), 3)


def _accepted_accuracy(y, p, low, high):
    y, p = np.asarray(y), np.asarray(p)
    keep = (p <= low) | (p >= high)
    if not keep.any():
        return 1.0, 0.0
    return float(((p[keep] >= high) == (y[keep] == 1)).mean()), float(keep.mean())


def fit_band(y, prob, groups, target: float = DEFAULT_TARGET, threshold: float = 0.5,
             min_coverage: float = DEFAULT_MIN_COVERAGE) -> dict:
    """The widest-answering band (low, high) around ``threshold`` with accepted accuracy >= ``target``
    and a share answered >= ``min_coverage`` in every group (source)
    -> {"low", "high", "coverage", "worst_accuracy", "met", "target", "min_coverage", "fitted_on"}."""
    y, prob, groups = np.asarray(y), np.asarray(prob, float), np.asarray(groups)
    if not len(y):
        raise BTError("no predictions to fit an abstention band on")
    lows = [g for g in GRID if g <= threshold]
    highs = [g for g in GRID if g >= threshold]
    best = {"low": 0.0, "high": 1.0, "coverage": 0.0, "worst_accuracy": 1.0}
    names = np.unique(groups)
    for low in lows:
        for high in highs:
            accs, covs = zip(*(_accepted_accuracy(y[groups == g], prob[groups == g], low, high) for g in names))
            coverage = float(np.mean(covs))  # each source counts the same
            if min(accs) >= target and min(covs) >= min_coverage and coverage > best["coverage"]:
                best = {"low": float(low), "high": float(high), "coverage": coverage, "worst_accuracy": float(min(accs))}
    met = best["coverage"] > 0.0
    if not met:  # no band reaches the target: say so, and abstain on nothing by this rule
        accs = [_accepted_accuracy(y[groups == g], prob[groups == g], threshold, threshold)[0] for g in names]
        best = {"low": float(threshold), "high": float(threshold), "coverage": 1.0, "worst_accuracy": float(min(accs))}
    return {**best, "met": met, "target": float(target), "min_coverage": float(min_coverage),
            "fitted_on": [str(n) for n in names]}


def apply_band(prob, band: dict) -> np.ndarray:
    """True where the model abstains (the probability lies strictly inside the band)."""
    p = np.asarray(prob, float)
    return (p > band["low"]) & (p < band["high"])


def held_out_check(y, prob, source, family, target: float = DEFAULT_TARGET,
                   min_coverage: float = DEFAULT_MIN_COVERAGE) -> dict:
    """For each family F: fit the band on the other families' predictions, apply it to F ->
    {F: {"band", "answered", "accuracy_answered", "per_source": {...}}}. With no other family (a run that
    held out one family only) F's band, shares and accuracies are None: nothing to fit the band on."""
    y, prob, source, family = map(np.asarray, (y, prob, source, family))
    out = {}
    for f in np.unique(family):
        fit = family != f
        if not fit.any():
            out[str(f)] = {"band": None, "answered": None, "accuracy_answered": None,
                           "per_source": {str(s): {"n": int((source == s).sum()), "answered": None,
                                                   "accuracy_answered": None} for s in np.unique(source)}}
            continue
        band = fit_band(y[fit], prob[fit], source[fit], target, min_coverage=min_coverage)
        held = family == f
        abstain = apply_band(prob[held], band)
        per = {}
        for s in np.unique(source[held]):
            m = source[held] == s
            ans = ~abstain[m]
            yy, pp = y[held][m][ans], prob[held][m][ans]
            per[str(s)] = {"n": int(m.sum()), "answered": float(ans.mean()),
                           "accuracy_answered": float(((pp >= band["high"]) == (yy == 1)).mean()) if ans.any() else None}
        ans = ~abstain
        yy, pp = y[held][ans], prob[held][ans]
        out[str(f)] = {"band": band, "answered": float(ans.mean()), "per_source": per,
                       "accuracy_answered": float(((pp >= band["high"]) == (yy == 1)).mean()) if ans.any() else None}
    return out


def risk_coverage(y, prob, threshold: float = 0.5, points: int = 21) -> list[tuple[float, float]]:
    """(share answered, accuracy on the answered) when answering the most confident images first."""
    y, p = np.asarray(y), np.asarray(prob, float)
    if not len(y):
        return []
    order = np.argsort(-np.abs(p - threshold), kind="stable")
    correct = ((p >= threshold) == (y == 1))[order]
    out = []
    for c in np.linspace(1 / len(y), 1.0, points):
        k = max(1, int(round(c * len(y))))
        out.append((k / len(y), float(correct[:k].mean())))
    return out
