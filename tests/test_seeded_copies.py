"""degrade.copies and augment.views share one seeded loop (degrade.seeded_copies): the same arrays for the
same seeds as before they shared it (digests computed from the code before the change)."""
import hashlib

import numpy as np
import pytest

from bt_core.data import augment, degrade


def _inputs():
    rng = np.random.default_rng(123)
    imgs = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    masks = (rng.random((3, 16, 16)) < 0.3).astype(np.uint8) * 255
    return imgs, masks


def _digest(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def test_copies_unchanged_for_a_fixed_seed():
    imgs, _ = _inputs()
    out, source = degrade.copies(imgs, 2, seed=5)
    assert out.shape == (6, 32, 32) and out.dtype == np.uint8 and source.tolist() == [0, 0, 1, 1, 2, 2]
    assert _digest(out) == "7d2b1af163180016"


def test_views_unchanged_for_a_fixed_seed_with_and_without_masks():
    imgs, masks = _inputs()
    v, m, source = augment.views(imgs, 2, seed=7, masks=masks)
    assert v.shape == (6, 32, 32) and m.shape == (6, 16, 16) and source.tolist() == [0, 0, 1, 1, 2, 2]
    assert (_digest(v), _digest(m)) == ("64e2fd9e60260482", "4ce555b48a09f043")
    v, m, source = augment.views(imgs, 3, seed=7)
    assert m is None and source.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and _digest(v) == "7e5caaacba50f825"


@pytest.mark.parametrize("make", [lambda x: degrade.copies(x, -1), lambda x: augment.views(x, -1)])
def test_negative_k_is_refused(make):
    with pytest.raises(ValueError, match="k must be >= 0"):
        make(_inputs()[0])
