"""Sampling weights and draws for training on several sources.

- :func:`balance_weights`: every distinct key (e.g. "family|class") the same total weight;
- :func:`position_weights`: within a family with slice positions and both classes (LGG, BraTS), each class
  alike along the volume, so slice position cannot predict the label (4 position bins; ``strength`` 1, the
  full balance, by default; below 1 part of the way; ``reference="tumour"``: only the no-tumour slices move;
  ``reference="middle"``: only the middle half of the volume is evened, the edge quarters keep weight 1 before
  each class is scaled back to its total);
- :func:`sample_weights`: what ``TrainConfig.balance`` asks for ("none": all 1; "source": balance weights;
  "position": both), shared by the patch trainer and the CNN's sample weights;
- :func:`draw_rows`: one epoch's rows drawn with those weights (seeded by the caller's generator).
"""
from __future__ import annotations

import numpy as np

from bt_core.config import TrainConfig


def balance_weights(keys: np.ndarray) -> np.ndarray:
    """Weights (mean 1) that give every distinct key (e.g. "family|class") the same total weight."""
    _, inv, counts = np.unique(np.asarray(keys).astype(str), return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    return w / w.mean()


def position_weights(family: np.ndarray, labels: np.ndarray, position: np.ndarray, bins: int = 4,
                     strength: float = 1.0, reference: str = "both") -> np.ndarray:
    """Weights that take slice position out of the label within each family with positions and both classes.

    Each class's rows in position quarter ``b`` weigh ``target(b) / p(b | class)``, where ``target`` is the mean of
    the two classes' position distributions: both classes then lie alike along the volume (LGG's tumour slices
    crowd its middle) and each class keeps its total weight. Rows without a position (NaN) weigh 1.

    ``strength`` below 1 tempers it: the weights are raised to that power (then scaled so each class keeps
    its total), part of the way from no position balance (0) to the full one (1). ``reference="tumour"`` brings
    the no-tumour slices to the tumour slices' position distribution instead of the mean, and leaves the tumour
    slices at 1 (no rare edge-of-volume tumour slice is weighted up). ``reference="middle"`` evens the classes
    (towards their mean) only in the middle bins and leaves the first and last bin's rows at 1 before the
    per-class scaling, which then moves them by the class's scale alone (on LGG FLAIR that leaves the mean
    weights within 0.02 of half strength's: healthy edge slices 0.83, tumour edge slices 1.26)."""
    w = np.ones(len(labels))
    family, labels, position = np.asarray(family), np.asarray(labels), np.asarray(position, float)
    known = np.isfinite(position)
    where = np.minimum(bins - 1, (np.where(known, position, 0) * bins).astype(int))
    for f in np.unique(family[known]):
        in_f = known & (family == f)
        if len(np.unique(labels[in_f])) < 2:
            continue
        share = {c: np.bincount(where[in_f & (labels == c)], minlength=bins) / (in_f & (labels == c)).sum()
                 for c in np.unique(labels[in_f])}
        target = share[1] if reference == "tumour" else np.mean(list(share.values()), axis=0)  # 1: tumour
        for c, p in share.items():
            sel = in_f & (labels == c)
            ratio = (target[where[sel]] / p[where[sel]]) ** strength
            if reference == "middle":
                ratio[(where[sel] == 0) | (where[sel] == bins - 1)] = 1.0
            w[sel] = ratio / ratio.mean()
    return w


def sample_weights(cfg: TrainConfig, family, labels, position=None, keys=None) -> np.ndarray:
    """Training weights of rows for ``cfg.balance``: all 1 for "none"; every (family, class) pair alike (or every
    distinct ``keys`` value, when given) for "source"; that times :func:`position_weights` with
    ``cfg.position_strength`` and ``cfg.position_reference`` for "position" (``position`` then required: NaN
    where unknown)."""
    family, labels = np.asarray(family).astype(str), np.asarray(labels)
    if cfg.balance not in ("source", "position"):
        return np.ones(len(labels))
    w = balance_weights(np.char.add(np.char.add(family, "|"), labels.astype(str)) if keys is None else keys)
    if cfg.balance != "position":
        return w
    return w * position_weights(family, labels, position, strength=cfg.position_strength,
                                reference=cfg.position_reference)


def draw_rows(rows: np.ndarray, w: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch's rows: ``n`` (0: as many as there are) drawn with probabilities ``w``, sorted.

    Fewer than there are: without replacement. As many or more: with replacement when the weights are
    not all equal, since drawing every row once would ignore them (the balance of a small training set)."""
    n = int(n) or len(rows)
    weighted = not np.allclose(w, w[0])
    replace = n > len(rows) or (n == len(rows) and weighted)
    return np.sort(rng.choice(rows, n, replace=replace, p=w / w.sum()))
