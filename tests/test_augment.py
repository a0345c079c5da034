"""bt_core.data.augment: skull-stripped views (BraTS-like slices) and views in another sequence's contrast."""
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


def test_remap_intensity_inverts_or_bends_the_head_and_keeps_the_background():
    img, r = _head_with_skull()
    img[r >= 40] = 5  # a little background noise level, below FOREGROUND
    head = r < 39
    lo = augment.FOREGROUND + 8
    inversion = np.round(lo + (255 - lo) * (1 - img / 255.0)).astype(np.uint8)
    inverted = 0
    for seed in range(12):
        out = augment.remap_intensity(img, np.random.default_rng(seed))
        assert (out[r >= 41] == 5).all()  # the background keeps its values
        assert (out[head] > augment.FOREGROUND).all()  # the head stays head
        for v in (90, 200, 230):  # a curve: one input level, one output level
            assert len(np.unique(out[head & (img == v)])) == 1
        inverted += bool((out[head] == inversion[head]).all())
    assert 2 <= inverted <= 10  # about half of the curves are the inversion, the rest random curves


def test_remap_intensity_leaves_an_image_without_a_head_alone():
    blank = np.zeros((32, 32), np.uint8)
    assert (augment.remap_intensity(blank, np.random.default_rng(0)) == blank).all()


def test_views_with_remapped_contrast_keep_every_other_change():
    img, r = _head_with_skull()
    imgs = np.repeat(img[None], 30, axis=0)
    plain, _, src = augment.views(imgs, 1, seed=4, strip=0.5)
    remapped, _, src2 = augment.views(imgs, 1, seed=4, strip=0.5, remap=1.0)
    same_again, _, _ = augment.views(imgs, 1, seed=4, strip=0.5, remap=0.0)
    assert (plain == same_again).all() and (src == src2).all()
    changed = [(a != b).mean() for a, b in zip(plain, remapped)]
    assert min(changed) > 0.05  # every view's head took a curve
    for a, b in zip(plain, remapped):  # the same geometry: the same pixels are background (black) in both
        head = augment.head_interior(a, 0.0)
        if head.any():
            assert (a[~head] == b[~head]).all()


def test_remap_intensity_option_is_checked():
    import pytest

    from bt_core.config import TrainConfig
    from bt_core.errors import ConfigError

    assert TrainConfig(model="patch", image_size=64, views=1, remap_intensity=0.5).validate().remap_intensity == 0.5
    for bad in ({"views": 0, "remap_intensity": 0.5}, {"views": 1, "remap_intensity": -0.1}):
        with pytest.raises(ConfigError, match="remap_intensity"):
            TrainConfig(model="patch", image_size=64, **bad).validate()
