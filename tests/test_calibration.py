"""Tests for bt_core.evaluation.calibration: ECE by hand, reliability vs sklearn, temperature scaling."""


import numpy as np
import pytest
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.metrics import log_loss

from bt_core.evaluation.calibration import (
    apply_temperature, expected_calibration_error, fit_temperature, reliability_curve,
)
from bt_core.errors import ConfigError, DataError


def _perfect_bins():
    """20 cases at each of p = 0.05, 0.15, ..., 0.95 with exactly 20 p tumours."""
    ys, ps = [], []
    for p in np.arange(0.05, 1.0, 0.1):
        k = int(round(20 * p))
        ys += [1] * k + [0] * (20 - k)
        ps += [p] * 20
    return np.array(ys), np.array(ps)


def _overconfident(n=20000, seed=0):
    """True logits z (labels drawn from sigmoid(z)); the model reports doubled logits 2z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < expit(z)).astype(int)
    return y, z


@pytest.mark.parametrize("n_bins", [10, 15])
def test_ece_zero_when_perfectly_calibrated(n_bins):
    y, p = _perfect_bins()
    assert expected_calibration_error(y, p, n_bins=n_bins) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_computed():
    # all at 0.8, all tumours -> gap 0.2
    assert expected_calibration_error([1, 1, 1, 1], [0.8] * 4) == pytest.approx(0.2)
    # bin [0, 0.1]: p=0.05 x2, one tumour (rate 0.5, gap 0.45)
    # bin (0.9, 1]: p=0.95 x2, both tumours (gap 0.05)  -> ECE = (2*0.45 + 2*0.05) / 4 = 0.25
    ece = expected_calibration_error([0, 1, 1, 1], [0.05, 0.05, 0.95, 0.95], n_bins=10)
    assert ece == pytest.approx(0.25)


def test_reliability_curve_matches_sklearn_and_counts():
    rng = np.random.default_rng(1)
    p = np.r_[rng.random(300), [0.0, 0.1, 0.2, 1.0]]  # include bin edges
    y = (rng.random(p.size) < p).astype(int)
    rc = reliability_curve(y, p, n_bins=10)
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert rc["frac_pos"] == pytest.approx(frac.tolist())
    assert rc["mean_pred"] == pytest.approx(mean.tolist())
    assert sum(rc["count"]) == p.size
    edges = np.linspace(0, 1, 11)
    assert rc["count"][0] == int(np.sum(p <= 0.1))  # first bin is [0, 0.1]
    assert rc["count"][1] == int(np.sum((p > edges[1]) & (p <= edges[2])))
    assert rc["bin_mid"][:2] == pytest.approx([0.05, 0.15])


def test_reliability_curve_drops_empty_bins():
    rc = reliability_curve([0, 1, 1], [0.05, 0.92, 0.97], n_bins=10)
    assert rc == {"bin_mid": pytest.approx([0.05, 0.95]), "mean_pred": pytest.approx([0.05, 0.945]),
                  "frac_pos": [0.0, 1.0], "count": [1, 2]}


def test_temperature_recovers_two_for_doubled_logits():
    y, z = _overconfident()
    t_logit = fit_temperature(y, 2 * z, from_logits=True)
    t_prob = fit_temperature(y, expit(2 * z))
    assert t_logit == pytest.approx(2.0, abs=0.1)
    assert t_prob == pytest.approx(t_logit, abs=1e-3)


def test_temperature_near_one_when_already_calibrated():
    y, z = _overconfident(seed=3)
    assert fit_temperature(y, z, from_logits=True) == pytest.approx(1.0, abs=0.06)


def test_temperature_scaling_lowers_ece_and_nll():
    y, z = _overconfident(n=5000, seed=2)
    p = expit(2 * z)
    t = fit_temperature(y, p)
    q = apply_temperature(p, t)
    assert expected_calibration_error(y, q) < 0.5 * expected_calibration_error(y, p)
    assert log_loss(y, q) < log_loss(y, p)
    assert q.shape == p.shape and q.min() > 0 and q.max() < 1


def test_apply_temperature_basics():
    p = np.array([0.1, 0.5, 0.9])
    assert apply_temperature(p, 1.0) == pytest.approx(p)
    assert apply_temperature(p, 1e6) == pytest.approx([0.5, 0.5, 0.5], abs=1e-5)
    assert apply_temperature(np.array([2.0]), 2.0, from_logits=True) == pytest.approx(expit(1.0))
    # saturated probabilities are clipped, not turned into inf/nan
    assert np.isfinite(apply_temperature(np.array([0.0, 1.0]), 2.0)).all()
    for bad in (0.0, -1.0, float("nan"), "hot"):
        with pytest.raises(ConfigError):
            apply_temperature(p, bad)
    with pytest.raises(DataError):
        apply_temperature(np.array([1.5]), 2.0)


def test_fit_temperature_stays_in_bounds_and_validates():
    # perfectly separated data wants T -> 0: the bound stops it at 0.05
    t = fit_temperature([0, 0, 1, 1], [0.4, 0.45, 0.55, 0.6])
    assert 0.05 <= t <= 0.06
    with pytest.raises(DataError):
        fit_temperature([0, 1], [0.2, 1.5])
    fit_temperature([0, 1], [-3.0, 5.0], from_logits=True)  # logits need not lie in [0, 1]
    with pytest.raises(ConfigError):
        expected_calibration_error([0, 1], [0.2, 0.7], n_bins=0)
