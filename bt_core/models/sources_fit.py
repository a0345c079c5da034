"""Several sources in training: stratification, per-source summaries and figures, views and balance weights.

Used by :mod:`bt_core.models.training` (the protocol) and :mod:`bt_core.models.loso`:

- :func:`strata_for`: splits stratify on the (source, label) pair when a data set has several sources;
- :func:`sources_summary`: what a run record says per source (its figures: ``bt_core.evaluation.metrics.per_source_metrics``);
- :func:`views`: ``TrainConfig.views`` augmented views of every image (:mod:`bt_core.data.augment`) as
  extra training rows, in the form ``bt_core.models.training._train_set`` takes;
- :func:`balance`: sample weights that give every (source family, class) pair the same weight
  (``TrainConfig.balance="source"``; ``"position"`` also evens each class along the volume); :func:`no_masks`: empty masks for the patch model.
"""
from __future__ import annotations

import numpy as np

from bt_core import data as data_mod
from bt_core.config import TrainConfig


def strata_for(ds: data_mod.Dataset) -> np.ndarray:
    """What splits stratify on: the label, and with several sources the (source, label) pair, so every
    source keeps its share of each class on each side."""
    if ds.source is None or len(ds.source_names) < 2:
        return ds.labels
    return ds.source * 2 + ds.labels


def sources_summary(ds: data_mod.Dataset) -> list[dict]:
    """Per source: name, family, root, images, tumour and non-tumour counts (for the run record)."""
    names = ds.source_of()
    roots = ds.root.split(";") if ds.source is not None and len(ds.source_names) > 1 else [ds.root]
    out = []
    for k, name in enumerate(ds.source_names or [names[0]]):
        m = names == name
        out.append({"name": str(name), "family": str(ds.family_of()[m][0]) if m.any() else "",
                    "root": roots[k] if k < len(roots) else "", "n": int(m.sum()),
                    "yes": int(ds.labels[m].sum()), "no": int((ds.labels[m] == 0).sum())})
    return out


def no_masks(ds):
    from bt_core.data.sources import MASK_SIZE
    return np.zeros((len(ds), MASK_SIZE, MASK_SIZE), np.uint8), np.asarray(ds.labels) == 0


def views(cfg: TrainConfig, ds: data_mod.Dataset, progress):
    """``cfg.views`` augmented views of every image (:mod:`bt_core.data.augment`) as extra training rows,
    in the form ``bt_core.models.training._train_set`` takes, or None."""
    if not cfg.views:
        return None
    from bt_core.data import augment

    progress({"event": "stage", "stage": f"augmented views ({cfg.views} per image)"})
    imgs, _, source = augment.views(ds.images, cfg.views, cfg.seed, strip=cfg.strip_skull,
                                     remap=cfg.remap_intensity)
    return data_mod.as_batch(data_mod.at_size(imgs, cfg.image_size), cfg.channels, cfg.preprocess), source, None


def balance(cfg: TrainConfig, ds: data_mod.Dataset, idx):
    """Sample weights of the training rows of images ``idx`` (views follow their image), or None."""
    if cfg.balance not in ("source", "position"):
        return None
    from bt_core.data.sources import slice_positions
    from bt_core.models.sampling import sample_weights

    idx = np.asarray(idx)
    n_extra = cfg.degrade_copies or cfg.views  # as _degraded(...) or views(...) in run_protocol
    rows = np.concatenate([idx, np.repeat(idx, n_extra)]) if n_extra else idx
    position = slice_positions(ds)[rows] if cfg.balance == "position" else None
    return sample_weights(cfg, ds.family_of()[rows], ds.labels[rows], position)
