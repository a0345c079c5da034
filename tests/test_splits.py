import numpy as np
import pytest

from bt_core.data import splits
from bt_core.errors import ConfigError


def _labels(n=120, seed=0):
    return np.random.default_rng(seed).permutation(np.repeat([0, 1], n // 2))


def test_random_holdout_is_stratified_and_seeded():
    y = _labels()
    tr, te = splits.holdout(y, "random", test_size=0.2, seed=1)
    assert len(te) == 24 and len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(y)
    assert y[te].mean() == pytest.approx(0.5)
    tr2, te2 = splits.holdout(y, "random", test_size=0.2, seed=1)
    assert np.array_equal(te, te2)
    assert not np.array_equal(te, splits.holdout(y, "random", test_size=0.2, seed=2)[1])


def test_group_holdout_and_folds_never_split_a_group():
    y = _labels()
    groups = np.arange(len(y)) // 4  # groups of 4 ...
    y = np.repeat(y[::4], 4)         # ... with one label each
    tr, te = splits.holdout(y, "group", groups, 0.2, seed=3)
    assert not set(groups[tr]) & set(groups[te])
    folds = list(splits.kfold(y[tr], 3, "group", groups[tr], seed=3))
    assert len(folds) == 3
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen) == list(range(len(tr)))
    for a, b in folds:
        assert not set(groups[tr][a]) & set(groups[tr][b])


def test_group_split_needs_groups_and_rejects_bad_kind():
    with pytest.raises(ConfigError):
        splits.holdout(_labels(), "group", None)
    with pytest.raises(ConfigError):
        list(splits.kfold(_labels(), 3, "bogus"))


def test_near_duplicates_are_grouped_and_leaks_counted():
    rng = np.random.default_rng(0)
    base = [rng.integers(0, 255, (32, 32)).astype(np.uint8) for _ in range(5)]
    imgs = []
    for b in base:  # each base image plus a slightly brightened copy
        imgs += [b, np.clip(b.astype(int) + 3, 0, 255).astype(np.uint8)]
    imgs = np.stack(imgs)
    bits = splits.dhash_bits(imgs)
    groups = splits.near_duplicate_groups(bits=bits)
    assert len(set(groups)) == 5
    assert all(groups[2 * i] == groups[2 * i + 1] for i in range(5))
    summary = splits.duplicate_summary(bits)
    assert summary["groups"] == 5 and summary["near_pairs"] == 5 and summary["largest_group"] == 2
    # test = the copies, train = the originals: every test image leaks
    assert splits.leak_count(bits, np.arange(0, 10, 2), np.arange(1, 10, 2)) == 5
    # test = whole groups: nothing leaks
    assert splits.leak_count(bits, np.arange(0, 6), np.arange(6, 10)) == 0
