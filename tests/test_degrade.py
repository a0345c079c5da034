import numpy as np
import pytest

from bt_core import data
from bt_core.data import degrade
from bt_core.models import training


def _textured(n=3, size=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    bases = [128 + 100 * np.sin(xx / (2.0 + 3 * i)) * np.cos(yy / (3.0 + 5 * i)) for i in range(n)]
    return np.stack([np.clip(b + rng.normal(0, 5, b.shape), 0, 255).astype(np.uint8) for b in bases])


def test_copies_are_seeded_degraded_and_point_at_their_source():
    imgs = _textured()
    out, source = degrade.copies(imgs, 2, seed=5)
    assert out.shape == (6, 48, 48) and out.dtype == np.uint8
    assert source.tolist() == [0, 0, 1, 1, 2, 2]
    again, _ = degrade.copies(imgs, 2, seed=5)
    other, _ = degrade.copies(imgs, 2, seed=6)
    assert np.array_equal(out, again) and not np.array_equal(out, other)
    for row, i in enumerate(source):  # every copy is changed (at least one step applies) ...
        assert np.abs(out[row].astype(int) - imgs[i]).mean() > 1.0
        # ... but still looks like its source more than like another image
        corr = [np.corrcoef(out[row].ravel(), imgs[j].ravel())[0, 1] for j in range(3)]
        assert int(np.argmax(corr)) == i and corr[i] > 0.5
    empty, none = degrade.copies(imgs, 0)
    assert empty.shape == (0, 48, 48) and none.size == 0
    with pytest.raises(ValueError):
        degrade.copies(imgs, -1)


def test_each_random_step_does_what_it_says():
    im = _textured(1)[0]
    assert degrade.blur(im, 2).std() < im.std()  # blur removes texture
    assert np.abs(degrade.noise(im, 15, np.random.default_rng(0)).astype(int) - im).mean() > 5
    low = degrade.low_resolution(im, 12)
    assert low.shape == im.shape and np.abs(np.diff(low.astype(int), axis=1)).mean() < np.abs(np.diff(im.astype(int), axis=1)).mean()
    assert degrade.jpeg(im, 10).shape == im.shape and not np.array_equal(degrade.jpeg(im, 10), im)


def test_fixed_degradations_keep_shape_and_type():
    im = _textured(1)[0]
    named = degrade.fixed()
    assert {"blur (sigma 2)", "noise (sd 15)", "low resolution (64 px)", "JPEG quality 15", "inverted contrast"} <= set(named)
    for name, fn in named.items():
        out = fn(im)
        assert out.shape == im.shape and out.dtype == np.uint8, name
    assert np.array_equal(named["inverted contrast"](im), 255 - im)


def test_train_set_appends_copies_of_its_own_images_only():
    x_all = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 4, 4, 1), np.float32)
    y = np.array([0, 1, 0, 1, 1], np.float32)
    x_copy = 100 + np.repeat(np.arange(5), 2).astype(np.float32)[:, None, None, None] * np.ones((10, 4, 4, 1), np.float32)
    source = np.repeat(np.arange(5), 2)
    idx = np.array([1, 3])
    x, labels, f = training._train_set(idx, x_all, y, None, (x_copy, source, None))
    assert f is None and x.shape == (6, 4, 4, 1)
    assert sorted(x[:, 0, 0, 0].tolist()) == [1, 3, 101, 101, 103, 103]  # copies of images 1 and 3 only
    assert labels.tolist() == [1, 1, 1, 1, 1, 1]
    feats = np.arange(5, dtype=np.float32)[:, None]
    x, labels, f = training._train_set(idx, x_all, y, feats, (x_copy, source, 10 + source[:, None].astype(np.float32)))
    assert x is None and f[:, 0].tolist() == [1, 3, 11, 11, 13, 13] and labels.tolist() == [1] * 6
    x, labels, f = training._train_set(idx, x_all, y, None, None)
    assert x.shape == (2, 4, 4, 1) and f is None


def test_protocol_trains_on_copies_and_never_on_copies_of_held_out_images(tiny_folder, monkeypatch):
    ds = data.load_folder(tiny_folder, size=48)
    seen = []
    real_fit = training.fit

    def spy(cfg, x_train, y_train, *args, **kw):
        seen.append(len(y_train))
        return real_fit(cfg, x_train, y_train, *args, **kw)

    monkeypatch.setattr(training, "fit", spy)
    cfg = training.TrainConfig(model="compact_cnn", epochs=1, batch_size=8, folds=2, split="random", image_size=48,
                               lr=1e-3, head_pool=4, degrade_copies=2)
    _, record = training.run_protocol(cfg, ds, "cv")
    folds = [len(f["train_idx"]) for f in record["folds"]]
    assert seen == [3 * n for n in folds] + [3 * len(record["split"]["train_idx"])]  # originals + 2 copies each
    assert record["config"]["degrade_copies"] == 2 and record["test"]["metrics"]["n"] == len(record["split"]["test_idx"])
    with pytest.raises(Exception, match="degrade copies"):
        training.TrainConfig(degrade_copies=9).validate()
