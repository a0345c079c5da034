"""Significance tests for comparing two tumour classifiers, plus a plain-language verdict.

- ``paired_ttest``: paired t-test on per-fold scores (``scipy.stats.ttest_rel``), the test the
  paper (Jardim et al.) uses on per-fold accuracies. Differences are ``a - b``.
- ``corrected_resampled_ttest``: Nadeau & Bengio's corrected resampled t-test, which accounts for
  the overlap of training sets across folds: the variance of the differences is multiplied by
  ``1/k + n_test/n_train`` instead of ``1/k``.
  Reference: C. Nadeau and Y. Bengio (2003), "Inference for the Generalization Error",
  Machine Learning 52(3):239-281.
- ``mcnemar_test``: McNemar's test on the two models' predictions for the same test cases
  (``statsmodels.stats.contingency_tables.mcnemar``); by default exact (binomial) when the number
  of discordant cases ``b + c < 25``, otherwise chi-square with continuity correction.
- ``delong_test``: DeLong's test for two correlated AUCs measured on the same cases.
  References: E.R. DeLong, D.M. DeLong and D.L. Clarke-Pearson (1988), "Comparing the Areas under
  Two or More Correlated Receiver Operating Characteristic Curves: A Nonparametric Approach",
  Biometrics 44(3):837-845; fast midrank algorithm from X. Sun and W. Xu (2014), "Fast
  Implementation of DeLong's Algorithm for Comparing the Areas Under Correlated Receiver
  Operating Characteristic Curves", IEEE Signal Processing Letters 21(11):1389-1393.
- ``interpret``: one sentence for users, default ``alpha = 0.05``.

All p-values are two-sided. Results are dicts of plain Python numbers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

from bt_core.errors import ConfigError, DataError
from bt_core.evaluation.metrics import check_binary


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    try:
        x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    except (TypeError, ValueError):
        raise DataError("Scores to compare must be numbers.") from None
    if x.size != y.size:
        raise DataError(f"Paired scores need equal lengths, got {x.size} and {y.size}.")
    if x.size < 2:
        raise DataError("A paired t-test needs at least two folds.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataError("Scores to compare contain NaN or infinite values.")
    return x, y


def _var(d: np.ndarray) -> float:
    """Sample variance of the differences; exactly 0 when they agree up to rounding (1e-12)."""
    return 0.0 if np.ptp(d) <= 1e-12 else float(np.var(d, ddof=1))


def _t_from(mean: float, var: float, df: int) -> tuple[float, float]:
    """t statistic and two-sided p; a zero variance gives t = 0 / p = 1 when mean is 0 too."""
    if var <= 0.0:
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / math.sqrt(var)
    return float(t), float(2.0 * sps.t.sf(abs(t), df))


def paired_ttest(a, b) -> dict:
    """Paired t-test of per-fold scores ``a`` vs ``b`` (``scipy.stats.ttest_rel``).

    Returns ``t``, ``p`` (two-sided), ``df = k - 1`` and ``mean_diff = mean(a - b)``.
    """
    x, y = _paired(a, b)
    d = x - y
    if _var(d) == 0.0:  # scipy would return NaN or a huge t from rounding noise
        t, p = _t_from(float(d.mean()), 0.0, d.size - 1)
    else:
        res = sps.ttest_rel(x, y)
        t, p = float(res.statistic), float(res.pvalue)
    return {"t": t, "p": p, "df": int(d.size - 1), "mean_diff": float(d.mean())}


def corrected_resampled_ttest(a, b, n_train: int, n_test: int) -> dict:
    """Nadeau & Bengio (2003) corrected resampled t-test on per-fold scores ``a`` vs ``b``.

    ``t = mean(d) / sqrt((1/k + n_test/n_train) * var(d, ddof=1))`` with ``d = a - b`` and
    ``k`` folds, compared with Student's t on ``k - 1`` df. With ``n_test = 0`` it equals the
    plain paired t-test; for k-fold cross-validation ``n_test / n_train = 1 / (k - 1)``.
    """
    x, y = _paired(a, b)
    if n_train <= 0 or n_test < 0:
        raise ConfigError(f"Need n_train > 0 and n_test >= 0, got {n_train} and {n_test}.")
    d = x - y
    k = d.size
    var = (1.0 / k + float(n_test) / float(n_train)) * _var(d)
    t, p = _t_from(float(d.mean()), var, k - 1)
    return {"t": t, "p": p, "df": int(k - 1), "mean_diff": float(d.mean())}


def mcnemar_test(y_true, pred_a, pred_b, exact: bool | None = None) -> dict:
    """McNemar's test on paired predictions (0/1 labels) of models A and B on the same cases.

    ``b`` = cases A gets right and B wrong, ``c`` = cases A gets wrong and B right.
    ``exact=None`` uses the exact binomial test when ``b + c < 25``.
    """
    y, pa = check_binary(y_true, pred_a, name="pred_a")
    _, pb = check_binary(y_true, pred_b, name="pred_b")
    if not (np.isin(pa, (0, 1)).all() and np.isin(pb, (0, 1)).all()):
        raise DataError("pred_a and pred_b must be predicted labels 0/1, not probabilities.")
    ok_a, ok_b = pa == y, pb == y
    table = [[int(np.sum(ok_a & ok_b)), int(np.sum(ok_a & ~ok_b))],
             [int(np.sum(~ok_a & ok_b)), int(np.sum(~ok_a & ~ok_b))]]
    b, c = table[0][1], table[1][0]
    use_exact = (b + c < 25) if exact is None else bool(exact)
    if b + c == 0:  # no discordant cases: no evidence of a difference
        statistic, p = 0.0, 1.0
    else:
        res = mcnemar(table, exact=use_exact, correction=True)
        statistic, p = float(res.statistic), float(res.pvalue)
    return {"statistic": statistic, "p": min(p, 1.0), "b": b, "c": c, "exact": use_exact}


def _midrank_components(pos: np.ndarray, neg: np.ndarray):
    """AUC and DeLong structural components of one score (Sun & Xu 2014, midranks)."""
    m, n = pos.size, neg.size
    tx = sps.rankdata(pos)
    ty = sps.rankdata(neg)
    tz = sps.rankdata(np.concatenate([pos, neg]))
    auc = tz[:m].sum() / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:m] - tx) / n          # per tumour case: share of no-tumour cases ranked below
    v01 = 1.0 - (tz[m:] - ty) / m    # per no-tumour case: share of tumour cases ranked above
    return float(auc), v10, v01


def delong_test(y_true, prob_a, prob_b) -> dict:
    """DeLong et al. (1988) test that two correlated AUCs (same cases) are equal.

    Uses the O(n log n) midrank algorithm of Sun & Xu (2014). Returns ``auc_a``, ``auc_b``,
    ``z = (auc_a - auc_b) / sqrt(var_diff)``, two-sided ``p`` and ``var_diff``.
    """
    y, pa = check_binary(y_true, prob_a, unit=False, name="prob_a")
    _, pb = check_binary(y_true, prob_b, unit=False, name="prob_b")
    m, n = int(y.sum()), int(y.size - y.sum())
    if m < 2 or n < 2:
        raise DataError("DeLong's test needs at least two tumour and two no-tumour cases.")
    auc_a, v10_a, v01_a = _midrank_components(pa[y == 1], pa[y == 0])
    auc_b, v10_b, v01_b = _midrank_components(pb[y == 1], pb[y == 0])
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    cov = s10 / m + s01 / n
    var_diff = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    diff = auc_a - auc_b
    if var_diff <= 1e-15:
        z, p = (0.0, 1.0) if abs(diff) < 1e-12 else (math.copysign(math.inf, diff), 0.0)
    else:
        z = diff / math.sqrt(var_diff)
        p = float(2.0 * sps.norm.sf(abs(z)))
    return {"auc_a": auc_a, "auc_b": auc_b, "z": float(z), "p": float(p),
            "var_diff": max(var_diff, 0.0)}


def _fmt_p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def interpret(p: float, alpha: float = 0.05, what: str = "accuracy", diff: float | None = None,
              names: tuple[str, str] = ("Model A", "Model B"),
              source: str = "the folds") -> str:
    """One plain sentence about a p-value for users.

    ``diff`` (A minus B, e.g. ``mean_diff`` or ``auc_a - auc_b``) says which model is better when
    the difference is significant; ``source`` names the evidence ("the folds", "the test set").
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha must be between 0 and 1, got {alpha}.")
    if p is None or not np.isfinite(p):
        return f"The test could not be computed for {what}, so no comparison can be made."
    a, b = names
    if p >= alpha:
        return (f"No significant difference in {what} between {a} and {b} ({_fmt_p(p)}): "
                f"the evidence from {source} does not show that one model is better.")
    if diff is None or diff == 0:
        return f"{a} and {b} differ significantly in {what} ({_fmt_p(p)})."
    better, worse = (a, b) if diff > 0 else (b, a)
    return f"{better} is significantly better than {worse} in {what} ({_fmt_p(p)})."
