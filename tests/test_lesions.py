"""bt_core.data.lesions: synthetic lesions with exact masks, drawn into no-tumour views for training."""
import numpy as np
import pytest
from scipy import ndimage

from bt_core.config import TrainConfig
from bt_core.data import lesions
from bt_core.errors import ConfigError


def _head(size=96, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    img = np.zeros((size, size))
    img[r < 40] = 100 + rng.normal(0, 4, (r < 40).sum())
    return img.clip(0, 255).astype(np.uint8), r


def test_a_lesion_lies_inside_the_head_changes_the_slice_there_and_nowhere_else():
    img, r = _head()
    changed = 0
    for seed in range(20):
        out, mask = lesions.implant(img, np.random.default_rng(seed))
        m = mask > 0
        assert m.sum() >= lesions.MIN_PIXELS and set(np.unique(mask)) <= {0, 255}
        assert (r[m] < 40).all()  # inside the head
        assert (out[r >= 40] == img[r >= 40]).all()  # the background is untouched
        diff = np.abs(out.astype(int) - img.astype(int)) > 8
        near = ndimage.binary_dilation(m, iterations=12)
        assert diff[m].mean() > 0.3  # the lesion shows
        assert not diff[~near].any()  # and nothing changes far from it
        changed += int(diff.sum())
    assert changed > 0


def test_lesions_vary_in_size_and_brightness():
    img, _ = _head()
    rng = np.random.default_rng(1)
    sizes, signs = [], []
    for _ in range(30):
        out, mask = lesions.implant(img, rng)
        m = mask > 0
        sizes.append(m.sum())
        signs.append(np.sign(out[m].astype(float).mean() - img[m].astype(float).mean()))
    assert max(sizes) > 4 * min(sizes)
    assert {-1.0, 1.0} <= set(signs)  # brighter and darker lesions both


def test_no_head_no_lesion():
    blank = np.zeros((64, 64), np.uint8)
    out, mask = lesions.implant(blank, np.random.default_rng(0))
    assert (out == blank).all() and not mask.any()


def test_implant_views_draws_into_the_share_of_no_tumour_views_asked_for_and_is_seeded():
    img, _ = _head(64)
    views = np.repeat(img[None], 60, axis=0)
    labels = np.array([0, 1] * 30)
    before = views.copy()
    out, masks, drawn = lesions.implant_views(views, labels, 0.5, seed=4)
    assert (views == before).all()  # the input is not changed
    assert not drawn[labels == 1].any()  # tumour views are left alone
    assert 8 <= drawn.sum() <= 22  # about half of the 30 no-tumour views
    assert all(masks[i].any() for i in np.flatnonzero(drawn)) and not masks[~drawn].any()
    assert (out[~drawn] == views[~drawn]).all() and (out[drawn] != views[drawn]).any(axis=(1, 2)).all()
    again = lesions.implant_views(views, labels, 0.5, seed=4)
    assert (again[0] == out).all() and (again[2] == drawn).all()
    assert not lesions.implant_views(views, labels, 0.0, seed=4)[2].any()


def test_synth_lesions_option_is_checked():
    assert TrainConfig(model="patch", image_size=64, views=1, synth_lesions=0.5).validate().synth_lesions == 0.5
    for bad in ({"views": 0, "synth_lesions": 0.5}, {"views": 1, "synth_lesions": 2.0},
                {"model": "compact_cnn", "views": 1, "synth_lesions": 0.5}, {"lesion_weight": 0.0}):
        with pytest.raises(ConfigError, match="synth_lesions|lesion_weight"):
            TrainConfig(**({"model": "patch", "image_size": 64} | bad)).validate()


def test_patch_trainer_trains_drawn_lesions_as_tumours_with_their_masks(tmp_path):
    from bt_core.data import sources
    from bt_core.models.patch_training import SYNTHETIC, PatchTrainer
    from tests.test_sources import make_source

    a = make_source(tmp_path / "lgg_flair", patients=3, seed=1)
    b = make_source(tmp_path / "ixi_t1", patients=3, seed=2, classes=("no",))
    specs = sources.specs_from([str(a), str(b)])
    ds = sources.load_sources(specs, size=64)
    cfg = TrainConfig(model="patch", backbone_weights=None, epochs=1, batch_size=8, image_size=64, views=1,
                      synth_lesions=1.0, freeze_backbone=True, balance="source", lesion_weight=0.5).validate()
    trainer = PatchTrainer(cfg, ds, *sources.load_masks(ds, specs))
    n = len(ds)
    views = np.arange(n, len(trainer.source))
    no_view = views[ds.labels[trainer.source[views]] == 0]
    drawn = no_view[trainer.keys[no_view] == SYNTHETIC]
    assert len(drawn) > 0.8 * len(no_view)  # nearly every no-tumour view got one (blank ones cannot)
    assert (trainer.labels[drawn] == 1).all() and (trainer.labels[:n] == ds.labels).all()
    t = trainer.targets[drawn]
    assert (t[..., 1] == 1).all() and (t[..., 0].max(axis=(1, 2)) > 0).all()  # known cells, with the lesion in them
    w = trainer.row_weights(np.arange(len(trainer.source)))
    pair = w[trainer.keys == "lgg|1"].sum()  # one (source family, class) pair's total weight
    assert pair > 0 and w[trainer.keys == SYNTHETIC].sum() == pytest.approx(0.5 * pair)
    model, hist = trainer.fit(np.arange(n))
    assert np.isfinite(hist["loss"]).all()
