"""Tests for bt_core.evaluation.stats: t-tests vs scipy/hand, McNemar textbook values, DeLong vs O(n^2)."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from bt_core.errors import ConfigError, DataError
from bt_core.evaluation.stats import (
    corrected_resampled_ttest, delong_test, interpret, mcnemar_test, paired_ttest,
)

# Paper (Jardim et al.) Table 1 per-fold accuracies
PAPER_A = [0.9794, 0.9734, 0.9770]
PAPER_B = [0.9826, 0.9778, 0.9725]


def test_paired_ttest_matches_scipy_and_hand():
    a = [0.81, 0.84, 0.79, 0.86, 0.83]
    b = [0.78, 0.80, 0.80, 0.82, 0.79]
    res = paired_ttest(a, b)
    ref = sps.ttest_rel(a, b)
    assert res["t"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)
    d = np.subtract(a, b)  # hand: mean(d) / (sd(d) / sqrt(k)), df = k - 1
    t_hand = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    assert res["t"] == pytest.approx(t_hand)
    assert res["p"] == pytest.approx(2 * sps.t.sf(abs(t_hand), 4))
    assert res["df"] == 4 and res["mean_diff"] == pytest.approx(0.028)


def test_paired_ttest_on_paper_table1():
    res = paired_ttest(PAPER_A, PAPER_B)
    # d = A - B = [-0.0032, -0.0044, 0.0045]: mean -0.001033, sd 0.004829 -> t = -0.3706, df 2.
    # This does NOT equal the paper's T = 0.3977 (|t| = 0.3706, two-sided p = 0.7465).
    assert res["t"] == pytest.approx(-0.37060, abs=1e-4)
    assert res["p"] == pytest.approx(0.74651, abs=1e-4)
    assert res["df"] == 2 and res["mean_diff"] == pytest.approx(-0.0031 / 3)
    # An independent (Student) or Welch t-test does not give 0.3977 either: t = -0.3041
    # (p = 0.776 Student df 4, p = 0.779 Welch df 3.27). Neither variant reproduces the paper.
    welch = sps.ttest_ind(PAPER_A, PAPER_B, equal_var=False)
    assert welch.statistic == pytest.approx(-0.30408, abs=1e-4)
    assert abs(abs(res["t"]) - 0.3977) > 0.02 and abs(abs(welch.statistic) - 0.3977) > 0.02
    assert "No significant difference" in interpret(res["p"], diff=res["mean_diff"])


def test_paired_ttest_zero_variance_and_errors():
    assert paired_ttest([0.9, 0.8], [0.9, 0.8])["p"] == 1.0
    assert paired_ttest([0.9, 0.8], [0.8, 0.7])["p"] == 0.0
    with pytest.raises(DataError):
        paired_ttest([0.9, 0.8], [0.9])
    with pytest.raises(DataError):
        paired_ttest([0.9], [0.8])


def test_corrected_ttest_reduces_to_plain_and_shrinks():
    a = [0.81, 0.84, 0.79, 0.86, 0.83, 0.85, 0.80, 0.82, 0.84, 0.83]
    b = [0.78, 0.80, 0.80, 0.82, 0.79, 0.81, 0.80, 0.79, 0.81, 0.82]
    plain = paired_ttest(a, b)
    zero = corrected_resampled_ttest(a, b, n_train=900, n_test=0)
    assert zero["t"] == pytest.approx(plain["t"]) and zero["p"] == pytest.approx(plain["p"])
    corr = corrected_resampled_ttest(a, b, n_train=900, n_test=100)  # 10-fold: ratio 1/9
    d = np.subtract(a, b)
    t_hand = d.mean() / math.sqrt((1 / 10 + 100 / 900) * d.var(ddof=1))
    assert corr["t"] == pytest.approx(t_hand)
    assert abs(corr["t"]) < abs(plain["t"]) and corr["p"] > plain["p"] and corr["df"] == 9
    paper = corrected_resampled_ttest(PAPER_A, PAPER_B, n_train=2, n_test=1)  # 3-fold: 1/2
    assert paper["t"] == pytest.approx(-0.37060 * math.sqrt((1 / 3) / (1 / 3 + 1 / 2)), abs=1e-4)
    with pytest.raises(ConfigError):
        corrected_resampled_ttest(a, b, n_train=0, n_test=10)


def _mcnemar_data(both_ok, b, c, both_wrong):
    """Labels and predictions with the given cells (b: A right/B wrong, c: A wrong/B right)."""
    y = np.ones(both_ok + b + c + both_wrong, dtype=int)
    pa = np.r_[np.ones(both_ok + b), np.zeros(c + both_wrong)].astype(int)
    pb = np.r_[np.ones(both_ok), np.zeros(b), np.ones(c), np.zeros(both_wrong)].astype(int)
    return y, pa, pb


def test_mcnemar_exact_textbook():
    # b = 10, c = 2: exact two-sided p = 2 * P(X <= 2 | n=12, 1/2) = 2 * 79 / 4096 = 0.038574
    y, pa, pb = _mcnemar_data(50, 10, 2, 5)
    res = mcnemar_test(y, pa, pb)
    assert (res["b"], res["c"], res["exact"]) == (10, 2, True)
    assert res["p"] == pytest.approx(158 / 4096)
    assert res["statistic"] == 2.0  # statsmodels reports min(b, c) for the exact test
    swapped = mcnemar_test(y, pb, pa)
    assert (swapped["b"], swapped["c"]) == (2, 10) and swapped["p"] == pytest.approx(res["p"])


def test_mcnemar_chi_square():
    # continuity-corrected chi2 = (|b - c| - 1)^2 / (b + c)
    y, pa, pb = _mcnemar_data(50, 10, 2, 5)
    res = mcnemar_test(y, pa, pb, exact=False)
    assert res["statistic"] == pytest.approx(49 / 12)
    assert res["p"] == pytest.approx(sps.chi2.sf(49 / 12, 1))
    y, pa, pb = _mcnemar_data(40, 20, 10, 3)  # b + c = 30 >= 25 -> chi-square by default
    res = mcnemar_test(y, pa, pb)
    assert res["exact"] is False and res["statistic"] == pytest.approx(81 / 30)
    assert res["p"] == pytest.approx(0.10035, abs=1e-4)


def test_mcnemar_no_discordant_and_bad_input():
    y, pa, _ = _mcnemar_data(20, 0, 0, 3)
    for exact in (None, False):
        res = mcnemar_test(y, pa, pa, exact=exact)
        assert res["p"] == 1.0 and res["statistic"] == 0.0
    with pytest.raises(DataError, match="0/1"):
        mcnemar_test([0, 1], [0.2, 0.8], [0, 1])


def _delong_slow(y, pa, pb):
    """Textbook DeLong (1988) with explicit pairwise kernels psi(x, y), O(m n)."""
    y = np.asarray(y)
    comps = []
    for s in (np.asarray(pa), np.asarray(pb)):
        x, w = s[y == 1][:, None], s[y == 0][None, :]
        psi = (x > w) + 0.5 * (x == w)
        comps.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = int(y.sum()), int((1 - y).sum())
    s10 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    s01 = np.cov(np.vstack([comps[0][2], comps[1][2]]))
    cov = s10 / m + s01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (comps[0][0] - comps[1][0]) / math.sqrt(var)
    return comps[0][0], comps[1][0], z, var


def _two_models(n=150, seed=0, round_to=2):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    pa = np.round(expit_(rng.normal(1.2 * y - 0.5, 1.0)), round_to)  # rounding makes ties
    pb = np.round(expit_(rng.normal(0.7 * y - 0.3, 1.0) + 0.3 * pa), round_to)
    return y, pa, pb


def expit_(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_slow_reference_and_sklearn(seed):
    y, pa, pb = _two_models(seed=seed)
    res = delong_test(y, pa, pb)
    auc_a, auc_b, z, var = _delong_slow(y, pa, pb)
    assert res["auc_a"] == pytest.approx(roc_auc_score(y, pa))
    assert res["auc_b"] == pytest.approx(roc_auc_score(y, pb))
    assert res["auc_a"] == pytest.approx(auc_a) and res["auc_b"] == pytest.approx(auc_b)
    assert res["var_diff"] == pytest.approx(var) and res["z"] == pytest.approx(z)
    assert res["p"] == pytest.approx(2 * sps.norm.sf(abs(z)))


def test_delong_self_comparison_and_antisymmetry():
    y, pa, pb = _two_models(seed=4)
    same = delong_test(y, pa, pa)
    assert same["z"] == 0.0 and same["p"] == 1.0 and same["var_diff"] == 0.0
    ab, ba = delong_test(y, pa, pb), delong_test(y, pb, pa)
    assert ab["z"] == pytest.approx(-ba["z"]) and ab["p"] == pytest.approx(ba["p"])


def test_delong_detects_a_clearly_better_model():
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(200), np.zeros(200)].astype(int)
    good = y + rng.normal(0, 0.5, 400)
    poor = y + rng.normal(0, 3.0, 400)
    res = delong_test(y, good, poor)  # scores need not be probabilities
    assert res["auc_a"] > res["auc_b"] and res["z"] > 0 and res["p"] < 1e-6
    with pytest.raises(DataError):
        delong_test([1, 1, 0], [0.2, 0.3, 0.1], [0.4, 0.5, 0.6])


def test_interpret_sentences():
    s = interpret(0.71)
    assert s == ("No significant difference in accuracy between Model A and Model B (p = 0.71): "
                 "the evidence from the folds does not show that one model is better.")
    assert interpret(0.012, diff=0.01) == (
        "Model A is significantly better than Model B in accuracy (p = 0.012).")
    assert interpret(0.0001, what="AUC", diff=-0.03).startswith(
        "Model B is significantly better than Model A in AUC (p < 0.001)")
    assert "differ significantly" in interpret(0.03)
    assert "could not be computed" in interpret(float("nan"))
    with pytest.raises(ConfigError):
        interpret(0.5, alpha=0)
