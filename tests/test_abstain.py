"""The abstention band: fitted so every fitting source keeps its accuracy on answered images."""
import numpy as np

from bt_core.evaluation import abstain


def _source(rng, n, noise):
    y = rng.integers(0, 2, n)
    p = np.clip(y + rng.normal(0, noise, n) * np.where(rng.random(n) < 0.5, 1, -1), 0, 1)
    return y, np.clip(np.where(y == 1, 1 - np.abs(p - 1), np.abs(p)), 0, 1)


def test_band_meets_the_target_on_every_source_and_answers_as_many_as_it_can():
    rng = np.random.default_rng(0)
    (ya, pa), (yb, pb) = _source(rng, 400, 0.2), _source(rng, 400, 0.45)
    y, p = np.concatenate([ya, yb]), np.concatenate([pa, pb])
    groups = np.array(["easy"] * 400 + ["hard"] * 400)
    band = abstain.fit_band(y, p, groups, target=0.97)
    assert band["low"] <= 0.5 <= band["high"] and 0 < band["coverage"] < 1
    for g in ("easy", "hard"):
        m = groups == g
        keep = ~abstain.apply_band(p[m], band)
        assert ((p[m][keep] >= band["high"]) == (y[m][keep] == 1)).mean() >= 0.97
    # a lower target answers more
    assert abstain.fit_band(y, p, groups, target=0.9)["coverage"] >= band["coverage"]


def test_band_answers_everything_when_every_answer_is_right():
    y = np.array([0, 0, 1, 1])
    band = abstain.fit_band(y, np.array([0.1, 0.2, 0.8, 0.9]), np.zeros(4))
    assert band["coverage"] == 1.0


def test_held_out_check_fits_without_the_held_out_family():
    rng = np.random.default_rng(1)
    y, p = _source(rng, 600, 0.3)
    fam = np.repeat(["a", "b", "c"], 200)
    out = abstain.held_out_check(y, p, fam, fam, target=0.95)
    assert set(out) == {"a", "b", "c"}
    assert out["a"]["band"]["fitted_on"] == ["b", "c"]
    assert 0 < out["a"]["answered"] <= 1


def test_risk_coverage_is_monotone_for_a_well_ranked_model():
    y = np.array([1, 1, 0, 0, 1, 0])
    p = np.array([0.99, 0.9, 0.01, 0.1, 0.45, 0.55])  # the two wrong ones are the least confident
    curve = abstain.risk_coverage(y, p, points=6)
    assert curve[0][1] == 1.0 and curve[-1] == (1.0, 4 / 6)


def test_band_says_when_no_band_reaches_the_target_and_then_refuses_nothing():
    y = np.array([0, 1, 0, 1])
    p = np.array([0.99, 0.01, 0.9, 0.1])  # confidently wrong: no band can help
    band = abstain.fit_band(y, p, np.zeros(4), target=0.9)
    assert band["met"] is False and band["coverage"] == 1.0 and band["worst_accuracy"] == 0.0
    assert not abstain.apply_band(p, band).any()


def test_a_band_that_answers_almost_nothing_is_not_called_met():
    # 3 of 100 images have probabilities of exactly 0 or 1 and are right; the rest are coin flips.
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 100)
    p = rng.uniform(0.3, 0.7, 100)
    p[:3], y[:3] = [0.0, 1.0, 1.0], [0, 1, 1]
    band = abstain.fit_band(y, p, np.zeros(100), target=0.95)
    assert band["met"] is False and band["min_coverage"] == 0.1
    loose = abstain.fit_band(y, p, np.zeros(100), target=0.95, min_coverage=0.0)
    assert loose["met"] is True and loose["coverage"] <= 0.05


def test_a_run_that_held_out_one_family_has_no_band_to_fit():
    import pytest

    from bt_core.errors import BTError

    y = np.array([0, 1, 0, 1]); p = np.array([0.1, 0.9, 0.4, 0.6])
    check = abstain.held_out_check(y, p, np.array(["a", "a", "b", "b"]), np.array(["f"] * 4))
    assert check["f"]["band"] is None and check["f"]["answered"] is None
    assert check["f"]["per_source"] == {"a": {"n": 2, "answered": None, "accuracy_answered": None},
                                        "b": {"n": 2, "answered": None, "accuracy_answered": None}}
    with pytest.raises(BTError, match="no predictions"):
        abstain.fit_band([], [], [])
