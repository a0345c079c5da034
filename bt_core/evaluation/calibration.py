"""Calibration of tumour probabilities: ECE, reliability curves and temperature scaling.

Label 1 = tumour; ``prob`` is the predicted tumour probability.

Binning (shared by ``expected_calibration_error`` and ``reliability_curve``): ``n_bins``
equal-width bins on [0, 1] of the predicted *tumour probability*, right-closed
``(a, b]`` except the first ``[0, b]`` -- the same rule as ``sklearn.calibration
.calibration_curve(strategy="uniform")``.

ECE definition (binary, positive-class form)::

    ECE = sum_b (n_b / N) * | mean(y in bin b) - mean(prob in bin b) |

i.e. the count-weighted gap between the observed tumour rate and the mean predicted tumour
probability. (This differs from the "top-label confidence" ECE of Guo et al. 2017, which bins
``max(prob, 1 - prob)``.)

Temperature scaling (Guo et al. 2017): ``prob_T = sigmoid(logit / T)``. ``T`` is fitted by
minimising the binary negative log-likelihood with ``scipy.optimize.minimize_scalar``
(bounded, ``T`` in [0.05, 20]). Probabilities are turned into logits after clipping to
``[EPS, 1 - EPS]`` with ``EPS = 1e-7``.

Defaults: ``n_bins = 15`` for ECE, ``n_bins = 10`` for the reliability curve.
"""

from __future__ import annotations

import numpy as np

from bt_core.errors import ConfigError, DataError
from bt_core.evaluation.metrics import check_binary

EPS = 1e-7
T_BOUNDS = (0.05, 20.0)


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}.")
    return int(n_bins)


def _bin_stats(y: np.ndarray, p: np.ndarray, n_bins: int):
    """Per-bin (count, sum of prob, sum of labels) for all ``n_bins`` bins."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y.astype(float), minlength=n_bins)
    return edges, count, sum_p, sum_y


def expected_calibration_error(y_true, prob, n_bins: int = 15) -> float:
    """Binary ECE over equal-width bins of the tumour probability (see module docstring)."""
    n_bins = _check_bins(n_bins)
    y, p = check_binary(y_true, prob)
    _, count, sum_p, sum_y = _bin_stats(y, p, n_bins)
    # sum_b (n_b/N) |sum_y/n_b - sum_p/n_b| == sum_b |sum_y - sum_p| / N (empty bins add 0)
    return float(np.abs(sum_y - sum_p).sum() / y.size)


def reliability_curve(y_true, prob, n_bins: int = 10) -> dict:
    """Reliability diagram data for the non-empty bins, as lists.

    ``bin_mid`` (bin centre), ``mean_pred`` (mean predicted tumour probability), ``frac_pos``
    (observed tumour fraction) and ``count`` (cases in the bin). ``mean_pred`` and ``frac_pos``
    equal sklearn's ``calibration_curve(..., strategy="uniform")``.
    """
    n_bins = _check_bins(n_bins)
    y, p = check_binary(y_true, prob)
    edges, count, sum_p, sum_y = _bin_stats(y, p, n_bins)
    keep = count > 0
    mid = (edges[:-1] + edges[1:]) / 2.0
    return {
        "bin_mid": mid[keep].tolist(),
        "mean_pred": (sum_p[keep] / count[keep]).tolist(),
        "frac_pos": (sum_y[keep] / count[keep]).tolist(),
        "count": count[keep].astype(int).tolist(),
    }


def _to_logits(values: np.ndarray, from_logits: bool) -> np.ndarray:
    # numpy, not scipy.special: answering an image then imports no scipy (a fresh process answers
    # while Keras, which imports scipy, loads in another thread)
    if from_logits:
        return values
    p = np.clip(values, EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean binary NLL of ``sigmoid(z / T)``, computed stably as log(1 + e^u) - y u."""
    u = z / temperature
    return float(np.mean(np.logaddexp(0.0, u) - y * u))


def fit_temperature(y_true, prob_or_logit, from_logits: bool = False) -> float:
    """Temperature ``T`` in [0.05, 20] minimising the NLL of ``sigmoid(logit / T)``.

    ``T > 1`` softens over-confident predictions, ``T < 1`` sharpens under-confident ones.
    Pass ``from_logits=True`` when giving the model's logits rather than probabilities.
    """
    y, z = check_binary(y_true, prob_or_logit, unit=not from_logits, name="prob_or_logit")
    from scipy.optimize import minimize_scalar

    z = _to_logits(z, from_logits)
    res = minimize_scalar(lambda t: _nll(z, y, t), bounds=T_BOUNDS, method="bounded",
                          options={"xatol": 1e-6})
    return float(res.x)


def apply_temperature(prob, T: float, from_logits: bool = False) -> np.ndarray:
    """Rescaled tumour probabilities ``sigmoid(logit(prob) / T)`` (float64 array, same shape)."""
    try:
        T = float(T)
    except (TypeError, ValueError):
        raise ConfigError(f"Temperature must be a positive number, got {T!r}.") from None
    if not np.isfinite(T) or T <= 0:
        raise ConfigError(f"Temperature must be a positive number, got {T}.")
    values = np.asarray(prob, dtype=float)
    if not np.isfinite(values).all():
        raise DataError("prob contains NaN or infinite values.")
    if not from_logits and (values.min(initial=0.0) < 0.0 or values.max(initial=1.0) > 1.0):
        raise DataError("prob must be probabilities in [0, 1].")
    return _sigmoid(_to_logits(values, from_logits) / T)
