"""Splits: the paper's stratified holdout and k-fold, and their leak-free, group-aware twins.

Like scikit-learn's ``model_selection``, every function returns or yields index arrays, and every
random choice takes a ``seed`` (default 42).

- ``kind="random"``: the paper's protocol, a stratified 80/20 holdout and stratified 3-fold CV.
  On Br35H it *leaks*: near-duplicate slices of one scan land on both sides.
- ``kind="group"`` (the default everywhere): near-duplicate images (256-bit dHash of the 16x16
  gradient, Hamming distance <= 10, joined transitively) form groups that never straddle train and
  test or two folds (``StratifiedGroupKFold``).

:func:`leak_count` says how many test images have a near-duplicate in training.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from bt_core.errors import ConfigError

from bt_core.config import DEFAULT_MAX_DISTANCE, SPLIT_KINDS  # noqa: F401
HASH_SIZE = 16


def dhash_bits(images_u8: np.ndarray, hash_size: int = HASH_SIZE) -> np.ndarray:
    """Perceptual difference hash (imagehash.dhash) of each image, as a (N, hash_size**2) bool array."""
    import imagehash
    from PIL import Image

    return np.stack([imagehash.dhash(Image.fromarray(im), hash_size=hash_size).hash.ravel() for im in images_u8])


def hamming_matrix(bits: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances between rows of a bool matrix (N, B) -> (N, N) int."""
    a = bits.astype(np.float32)
    d = a @ (1.0 - a).T
    return np.rint(d + d.T).astype(np.int32)


def near_duplicate_groups(images_u8: np.ndarray | None = None, bits: np.ndarray | None = None,
                          max_distance: int = DEFAULT_MAX_DISTANCE) -> np.ndarray:
    """Group ids (N,): images within ``max_distance`` of each other, transitively, share a group."""
    if bits is None:
        bits = dhash_bits(images_u8)
    dist = hamming_matrix(bits)
    _, groups = connected_components(csr_matrix(dist <= max_distance), directed=False)
    return groups.astype(np.int64)


def duplicate_summary(bits: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE) -> dict:
    """Counts for the audit: exact-duplicate pairs, near pairs, images involved, groups, largest group."""
    dist = hamming_matrix(bits)
    iu = np.triu_indices(len(bits), k=1)
    near = dist[iu] <= max_distance
    involved = np.unique(np.concatenate([iu[0][near], iu[1][near]]))
    _, groups = connected_components(csr_matrix(dist <= max_distance), directed=False)
    sizes = np.bincount(groups)
    return {"images": int(len(bits)), "exact_pairs": int((dist[iu] == 0).sum()), "near_pairs": int(near.sum()),
            "images_with_duplicate": int(involved.size), "groups": int(sizes.size),
            "largest_group": int(sizes.max()), "max_distance": int(max_distance)}


def _check(kind: str, groups) -> None:
    if kind not in SPLIT_KINDS:
        raise ConfigError(f"unknown split kind {kind!r}; choose one of {', '.join(SPLIT_KINDS)}")
    if kind == "group" and groups is None:
        raise ConfigError("a group-aware split needs groups (see near_duplicate_groups)")


def holdout(y, kind: str = "group", groups=None, test_size: float = 0.2, seed: int = 42):
    """Stratified train/test split -> (train_idx, test_idx), both sorted int arrays."""
    _check(kind, groups)
    y = np.asarray(y)
    idx = np.arange(len(y))
    if not 0 < test_size < 1:
        raise ConfigError(f"test_size must lie between 0 and 1, got {test_size}")
    if kind == "random":
        tr, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
        return np.sort(tr), np.sort(te)
    n_splits = max(2, int(round(1 / test_size)))
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    tr, te = next(sgkf.split(idx, y, np.asarray(groups)))
    return np.sort(tr), np.sort(te)


def kfold(y, k: int = 3, kind: str = "group", groups=None, seed: int = 42) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (train_idx, val_idx) for k stratified folds (indices into ``y``)."""
    _check(kind, groups)
    if k < 2:
        raise ConfigError(f"need at least 2 folds, got {k}")
    y = np.asarray(y)
    idx = np.arange(len(y))
    if kind == "random":
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y)
    else:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y, np.asarray(groups))
    for tr, va in splitter:
        yield np.sort(tr), np.sort(va)


def leak_count(bits: np.ndarray, train_idx, test_idx, max_distance: int = DEFAULT_MAX_DISTANCE) -> int:
    """How many test images have a near-duplicate (distance <= max_distance) in training."""
    a = bits[np.asarray(test_idx)].astype(np.float32)
    b = bits[np.asarray(train_idx)].astype(np.float32)
    dist = a @ (1 - b).T + (1 - a) @ b.T
    return int((dist.min(axis=1) <= max_distance).sum()) if len(b) else 0
