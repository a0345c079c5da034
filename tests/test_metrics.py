"""Tests for bt_core.evaluation.metrics: hand-computed counts, published Wilson CI, bootstrap, fold table."""

import json
import math
import statistics

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bt_core.errors import BTError, ConfigError, DataError
from bt_core.evaluation.metrics import (
    binary_metrics, bootstrap_ci, confusion, fold_table, metrics_with_ci, roc_points,
    threshold_for_sensitivity, wilson_ci, youden_threshold,
)

# Hand example, threshold 0.5 (prob >= 0.5 -> tumour):
#   tumour cases   0.9 TP, 0.6 TP, 0.4 FN, 0.5 TP, 0.8 TP  -> tp=4, fn=1
#   no-tumour      0.1 TN, 0.5 FP, 0.3 TN, 0.7 FP, 0.2 TN  -> tn=3, fp=2
# AUC by pair counting over 25 pairs: 5 + 4 + 3 + 3.5 (one tie at 0.5) + 5 = 20.5 -> 0.82
Y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
P = [0.9, 0.6, 0.4, 0.5, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8]


def _synthetic(n=300, seed=1):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.45).astype(int)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0, 1)
    return y, p


def test_binary_metrics_hand_counts():
    m = binary_metrics(Y, P)
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"]) == (4, 2, 3, 1, 10)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["sensitivity"] == pytest.approx(0.8)
    assert m["specificity"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(8 / 11)
    assert m["auc"] == pytest.approx(0.82)
    assert m["threshold"] == 0.5
    json.dumps(m)  # plain Python numbers


def test_confusion_layout_and_threshold():
    assert confusion(Y, P) == [[3, 2], [1, 4]]
    # threshold 0.55: the two 0.5 scores become negative
    assert confusion(Y, P, threshold=0.55) == [[4, 1], [2, 3]]


def test_one_class_gives_nan_auc_and_nan_ratios():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(m["auc"]) and math.isnan(m["specificity"])
    assert m["sensitivity"] == pytest.approx(2 / 3)


def test_roc_points_finite_json_and_matches_sklearn_auc():
    pts = roc_points(Y, P)
    assert set(pts) == {"fpr", "tpr", "thresholds"}
    assert all(math.isfinite(t) for t in pts["thresholds"])
    assert pts["thresholds"][0] == 1.0 and pts["fpr"][0] == 0.0 and pts["tpr"][0] == 0.0
    assert np.trapezoid(pts["tpr"], pts["fpr"]) == pytest.approx(0.82)
    json.dumps(pts)
    # a score of exactly 1.0: the "nothing is tumour" threshold must stay above it
    pts = roc_points([0, 1, 1], [0.0, 0.5, 1.0])
    assert pts["thresholds"][0] > 1.0 and math.isfinite(pts["thresholds"][0])
    with pytest.raises(DataError):
        roc_points([1, 1], [0.3, 0.4])


def test_wilson_ci_published_value():
    # 81 successes of 263: Wilson 95% interval (0.2553, 0.3662) (Newcombe 1998 / Wikipedia)
    low, high = wilson_ci(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-5)
    assert high == pytest.approx(0.3662, abs=5e-5)
    # hand formula
    z, p, n = 1.959963984540054, 81 / 263, 263
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    lo90, hi90 = wilson_ci(81, 263, level=0.90)
    assert low < lo90 < hi90 < high


def test_wilson_ci_bad_input():
    with pytest.raises(ConfigError):
        wilson_ci(5, 3)
    with pytest.raises(ConfigError):
        wilson_ci(1, 10, level=1.5)


def test_bootstrap_ci_auc_is_seeded_and_brackets_estimate():
    y, p = _synthetic()
    auc = roc_auc_score(y, p)
    low, high = bootstrap_ci(y, p, "auc", n_boot=400, seed=3)
    assert low < auc < high and high - low < 0.2
    assert bootstrap_ci(y, p, "auc", n_boot=400, seed=3) == (low, high)
    assert bootstrap_ci(y, p, "auc", n_boot=400, seed=4) != (low, high)


def test_bootstrap_auc_equals_sklearn_on_the_resample():
    # n_boot=1: the interval collapses to the AUC of the single stratified resample, drawn as
    # positives then negatives from default_rng(seed); recompute it with sklearn.
    y, p = _synthetic(n=80, seed=5)
    pos, neg = p[y == 1], p[y == 0]
    rng = np.random.default_rng(7)
    sp = pos[rng.integers(0, pos.size, size=(1, pos.size))][0]
    sn = neg[rng.integers(0, neg.size, size=(1, neg.size))][0]
    expected = roc_auc_score(np.r_[np.ones(sp.size), np.zeros(sn.size)], np.r_[sp, sn])
    low, high = bootstrap_ci(y, p, "auc", n_boot=1, seed=7)
    assert low == pytest.approx(expected) and high == pytest.approx(expected)


def test_bootstrap_is_stratified_and_skips_degenerate():
    y = np.array([1] * 5 + [0] * 5)
    p = np.array([0.9] * 5 + [0.1, 0.1, 0.1, 0.1, 0.6])
    # every resample keeps 5 tumour cases, all caught -> sensitivity exactly 1
    assert bootstrap_ci(y, p, "sensitivity", n_boot=200) == (1.0, 1.0)
    # precision is undefined when no case is called tumour: those resamples are skipped
    low, high = bootstrap_ci(y, np.where(y == 1, 0.1, p), "precision", n_boot=200)
    assert 0.0 <= low <= high <= 1.0
    assert all(math.isnan(v) for v in bootstrap_ci(y, np.full(10, 0.1), "precision", n_boot=50))
    for metric in ("accuracy", "specificity", "f1"):
        lo, hi = bootstrap_ci(y, p, metric, n_boot=100)
        assert 0.0 <= lo <= hi <= 1.0
    with pytest.raises(ConfigError):
        bootstrap_ci(y, p, "kappa")


def test_metrics_with_ci_structure_and_values():
    y, p = _synthetic()
    m = binary_metrics(y, p)
    ci = metrics_with_ci(y, p, seed=0, n_boot=300)
    assert set(ci) == {"accuracy", "sensitivity", "specificity", "auc"}
    for key, entry in ci.items():
        assert set(entry) == {"value", "low", "high"}
        assert entry["low"] <= entry["value"] <= entry["high"]
        assert entry["value"] == pytest.approx(m[key])
    assert (ci["sensitivity"]["low"], ci["sensitivity"]["high"]) == wilson_ci(m["tp"],
                                                                              m["tp"] + m["fn"])
    one_class = metrics_with_ci([1, 1, 1, 1], [0.9, 0.8, 0.3, 0.7])
    assert math.isnan(one_class["auc"]["value"]) and math.isnan(one_class["specificity"]["low"])
    json.dumps(ci)


def test_fold_table_layout_mean_and_sample_variance():
    acc = [0.9794, 0.9734, 0.9770]  # paper Table 1, model A accuracies
    folds = [{"accuracy": a, "sensitivity": 0.98, "specificity": s}
             for a, s in zip(acc, [0.97, 0.96, 0.98])]
    table = fold_table(folds)
    assert list(table.index) == ["Fold 1", "Fold 2", "Fold 3", "Mean", "Variance"]
    assert list(table.columns) == ["accuracy", "sensitivity", "specificity"]
    assert table.loc["Mean", "accuracy"] == pytest.approx(statistics.mean(acc))
    assert table.loc["Variance", "accuracy"] == pytest.approx(statistics.variance(acc))  # ddof=1
    assert table.loc["Variance", "accuracy"] == pytest.approx(9.12e-6)
    assert table.loc["Variance", "sensitivity"] == 0.0
    assert table.loc["Variance", "specificity"] * 1e4 == pytest.approx(1.0)  # in percent^2
    with pytest.raises(ConfigError):
        fold_table(folds, keys=("accuracy", "auc"))
    with pytest.raises(DataError):
        fold_table([])


@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 0.98, 1.0])
def test_threshold_for_sensitivity_is_largest_meeting_target(target):
    y, p = _synthetic(n=250, seed=2)
    p = np.round(p, 2)  # ties
    t = threshold_for_sensitivity(y, p, target)
    assert binary_metrics(y, p, t)["sensitivity"] >= target
    assert binary_metrics(y, p, np.nextafter(t, 2.0))["sensitivity"] < target


def test_threshold_for_sensitivity_exact_fraction():
    # 50 tumour cases, target 0.98 -> 49 must be caught (0.98 * 50 is 49.000000000000004)
    pos = np.linspace(0.02, 1.0, 50)
    y = np.r_[np.ones(50), np.zeros(5)]
    t = threshold_for_sensitivity(y, np.r_[pos, np.full(5, 0.01)], 0.98)
    assert t == pytest.approx(pos[1])
    with pytest.raises(ConfigError):
        threshold_for_sensitivity(y, np.r_[pos, np.full(5, 0.01)], 0.0)
    with pytest.raises(DataError):
        threshold_for_sensitivity([0, 0], [0.1, 0.2])


def test_youden_threshold_matches_brute_force():
    y, p = _synthetic(n=200, seed=9)
    t = youden_threshold(y, p)

    def j(th):  # sensitivity + specificity - 1, by hand
        return np.mean(p[y == 1] >= th) + np.mean(p[y == 0] < th) - 1

    assert j(t) == pytest.approx(max(j(s) for s in np.unique(p)))
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.8]) == 0.6


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="labels"):
        binary_metrics([0, 1, 1], [0.1, 0.2])
    with pytest.raises(DataError, match="only 0"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        binary_metrics([0, 1], [0.1, 1.2])
    with pytest.raises(DataError, match="NaN"):
        confusion([0, 1], [0.1, float("nan")])
    with pytest.raises(DataError, match="empty"):
        binary_metrics([], [])
    with pytest.raises(BTError):
        binary_metrics([0, 1], ["a", "b"])
    # column vectors from model.predict are accepted
    assert binary_metrics(np.array([[0], [1]]), np.array([[0.2], [0.9]]))["accuracy"] == 1.0


def test_pct_formats_a_share_and_says_when_there_is_none():
    from bt_core.evaluation.metrics import pct

    assert pct(0.9316) == "93.2%" and pct(1) == "100.0%" and pct(np.float32(0.5)) == "50.0%"
    assert pct(None) == pct(float("nan")) == pct(float("inf")) == pct("x") == "n/a"


def test_best_threshold_accuracy_is_the_best_any_cut_reaches():
    from bt_core.evaluation.metrics import best_threshold_accuracy

    assert best_threshold_accuracy([0, 1], [0.2, 0.8]) == 1.0
    assert best_threshold_accuracy([1, 0], [0.2, 0.8]) == 0.5  # reversed ranking: calling nothing a tumour is best
    assert best_threshold_accuracy([0, 0, 1], [0.5, 0.5, 0.5]) == 2 / 3  # tied probabilities cannot be split
    rng = np.random.default_rng(1)
    for _ in range(50):
        y, p = rng.integers(0, 2, 25), np.round(rng.random(25), 1)
        brute = max(((p >= t) == (y == 1)).mean() for t in [*np.unique(p), 2.0])
        assert best_threshold_accuracy(y, p) == brute
    assert np.isnan(best_threshold_accuracy([], [])) and best_threshold_accuracy([1, 1], [0.1, 0.2]) == 1.0
