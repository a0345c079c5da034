"""bt_core.data.augment.strip_skull: the skull-stripped views that teach the model BraTS-like slices."""
import numpy as np

from bt_core.data import augment


def _head_with_skull(size=96):
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    img = np.zeros((size, size))
    img[r < 40] = 230  # skull and scalp: a bright rim
    img[r < 34] = 90  # brain
    img[np.hypot(yy - 48, xx - 40) < 6] = 200  # a tumour inside the brain
    return img.astype(np.uint8), r


def test_strip_skull_removes_the_rim_and_keeps_the_brain_and_tumour():
    img, r = _head_with_skull()
    out = augment.strip_skull(img, rim=0.2)
    assert (out[r >= 36] == 0).all()  # the skull is gone
    assert (out[r < 30] == img[r < 30]).all()  # the brain, tumour included, is untouched
    assert (img[r >= 36] > 0).sum() > 500  # and there was a skull to remove


def test_strip_skull_leaves_an_image_without_a_head_alone():
    blank = np.zeros((32, 32), np.uint8)
    assert (augment.strip_skull(blank) == blank).all()
    speck = blank.copy()
    speck[3, 3] = 255
    assert (augment.strip_skull(speck) == speck).all()


def test_views_strip_the_share_asked_for():
    img, r = _head_with_skull()
    imgs = np.repeat(img[None], 40, axis=0)
    stripped = lambda v: (v > 150).sum(axis=(1, 2)) < 0.5 * (img > 150).sum()  # noqa: E731  (the bright rim gone)
    none, _, _ = augment.views(imgs, 1, seed=3)
    every, _, _ = augment.views(imgs, 1, seed=3, strip=1.0)
    assert stripped(every).mean() > 0.9 and stripped(none).mean() < 0.1


def test_strip_skull_option_is_checked():
    import pytest

    from bt_core.config import TrainConfig
    from bt_core.errors import ConfigError

    assert TrainConfig(model="patch", image_size=64, views=1, strip_skull=0.5).validate().strip_skull == 0.5
    for bad in ({"views": 0, "strip_skull": 0.5}, {"views": 1, "strip_skull": 1.5}):
        with pytest.raises(ConfigError, match="strip_skull"):
            TrainConfig(model="patch", image_size=64, **bad).validate()
