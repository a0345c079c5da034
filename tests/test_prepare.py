"""bt_core.data.prepare: the intensity steps that training and inference share."""
import numpy as np
import pytest

from bt_core.data import prepare
from bt_core.errors import DataError


def _head(gain: float, gamma: float) -> np.ndarray:
    """A disc (the head) of smoothly varying intensity on black, as two scanners might render it."""
    yy, xx = np.mgrid[:64, :64]
    head = (yy - 32) ** 2 + (xx - 32) ** 2 < 26 ** 2
    tissue = (0.2 + 0.8 * xx / 63.0) ** gamma
    return np.where(head, np.clip(gain * 200 * tissue + 20, 0, 255), 0).astype(np.uint8)


def test_equalize_makes_two_renderings_of_one_head_alike_and_keeps_the_background():
    a, b = _head(1.0, 1.0), _head(0.6, 2.2)  # darker, and a very different contrast curve
    ea, eb = prepare.normalize(np.stack([a, b]), "equalize")
    pa, pb = prepare.normalize(np.stack([a, b]), "percentile")
    fg = a > 0
    assert np.abs(ea.astype(int) - eb)[fg].mean() < 0.5 * np.abs(pa.astype(int) - pb)[fg].mean()
    assert (ea[~fg] == 0).all() and (eb[~fg] == 0).all()
    assert ea[fg].min() > prepare.FOREGROUND  # the head never becomes background
    # equalised: the head's histogram is close to flat
    counts, _ = np.histogram(ea[fg], bins=8, range=(prepare.FOREGROUND, 256))
    assert counts.min() > 0.4 * counts.mean()


def test_equalize_leaves_an_empty_image_alone_and_unknown_steps_are_refused():
    blank = np.zeros((1, 32, 32), np.uint8)
    assert (prepare.normalize(blank, "equalize") == 0).all()
    with pytest.raises(DataError, match="unknown preprocess"):
        prepare.normalize(blank, "histogram")
