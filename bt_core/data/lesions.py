"""Lesions: synthetic tumour-like lesions drawn into no-tumour slices, with their masks.

What it is for (issue 13): a model trained on a few sources learns what *their* tumours look like
(large, in Br35H's sequences) and misses the small or faint ones of a hospital it never saw. A
synthetic lesion, drawn into healthy slices of every training source, is a tumour-like change of
any size, brightness and place in any scanner's image, with an exact mask: a training signal that
belongs to no source. The idea is that of synthetic anomalies in anomaly detection (e.g. Tan et
al., "Detecting outliers with foreign patch interpolation", MELBA 2022; Schlüter et al., "Natural
synthetic anomalies for self-supervised anomaly detection and localization", ECCV 2022).

:func:`implant` draws one lesion into one greyscale uint8 slice:

- where: a random point of the head's interior (the largest region above
  :data:`bt_core.data.prepare.FOREGROUND`, holes filled, its outer 15% of radius left out) in brain-like
  tissue (local mean between the head's 30th and 95th intensity percentile: not air, sinuses, eyes or
  fluid, nor fat or bone);
- size: radius log-uniform from 2% to 15% of the side (about 5 to 36 pixels at 240; at least 3), an ellipse
  (axis ratio 0.5-1, any angle) with an uneven, smooth border;
- look: brighter (x1.3-1.9, as in FLAIR or T2), darker (x0.35-0.75, as in T1) or ring-enhancing
  (a bright rim around a darker core), each 1/3; a soft edge outside the mask (blur 0.5-2.5 px); a mottled texture;
  half of the brighter ones with a faint halo around them (oedema).

The mask is the lesion's core (255 inside). An image without a head comes back unchanged with an
empty mask, so the caller keeps its "no tumour" label. :func:`implant_views` applies it to a share of
the views of no-tumour images, seeded.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from bt_core.data import augment
from bt_core.data.prepare import FOREGROUND

MIN_PIXELS = 12  # a lesion smaller than this (after clipping to the head) is not drawn
VERSION = 2  # of the drawing rules, part of every cache key of views with drawn lesions (1: placed anywhere inside)


def _tissue(im: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Where a lesion may sit: brain-like tissue, whose local mean (blur 3 px) lies between the 30th and
    the 95th percentile of the head. Not air, sinuses, eyes or ventricles (dark), nor fat or skull (bright)."""
    local = ndimage.gaussian_filter(im.astype(np.float64), 3.0)
    lo, hi = np.percentile(im[head], [30, 95])
    return (local >= lo) & (local <= hi)


def _shape(shape, centre, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Signed distance-like field: < 1 inside an uneven ellipse of the given mean radius."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    a, ratio, th = radius, rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
    dy, dx = yy - centre[0], xx - centre[1]
    u = (dx * np.cos(th) + dy * np.sin(th)) / a
    v = (-dx * np.sin(th) + dy * np.cos(th)) / (a * ratio)
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape), max(radius / 2, 1.0))
    wobble *= 0.35 / (np.abs(wobble).max() + 1e-9)
    return np.sqrt(u * u + v * v) + wobble


def implant(im: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic lesion in ``im`` (uint8, H x W) -> (image, mask uint8 0/255); mask empty if none fits."""
    im = np.asarray(im, np.uint8)
    inside = augment.head_interior(im, 0.15, level=FOREGROUND)
    empty = np.zeros_like(im)
    if inside.sum() < MIN_PIXELS:
        return im, empty
    head = im > FOREGROUND
    tissue = _tissue(im, head) & inside
    pts = np.argwhere(tissue if tissue.sum() >= MIN_PIXELS else inside)
    for _ in range(3):  # a lesion clipped by the head's edge to a few pixels is drawn again elsewhere
        centre = pts[rng.integers(len(pts))]
        radius = max(float(np.exp(rng.uniform(np.log(0.02), np.log(0.15)))) * im.shape[0], 3.0)
        field = _shape(im.shape, centre, radius, rng)
        core = (field < 1.0) & head
        if core.sum() >= MIN_PIXELS:
            break
    else:
        return im, empty
    x = im.astype(np.float64)
    level = float(np.median(x[head]))
    tex = 1 + 0.12 * ndimage.gaussian_filter(rng.standard_normal(im.shape), rng.uniform(0.7, 2.0)) / 0.25
    kind = rng.integers(3)
    if kind == 0:  # brighter
        target = level * rng.uniform(1.3, 1.9) * tex
    elif kind == 1:  # darker
        target = level * rng.uniform(0.35, 0.75) * tex
    else:  # ring: bright rim, darker core
        rim = (field > rng.uniform(0.6, 0.8)).astype(np.float64)
        target = level * (rng.uniform(0.4, 0.8) * (1 - rim) + rng.uniform(1.4, 2.0) * rim) * tex
    alpha = np.maximum(ndimage.gaussian_filter(core.astype(np.float64), rng.uniform(0.5, 2.5)), core)  # soft outside only
    mix = rng.uniform(0.6, 0.95)  # how much of the anatomy the lesion replaces
    out = x * (1 - alpha * mix) + alpha * mix * np.clip(target, 0, 255)
    if kind == 0 and rng.random() < 0.5:  # oedema: a faint brighter halo
        halo = ndimage.gaussian_filter(((field < rng.uniform(1.5, 2.2)) & head).astype(np.float64), 2.0) * (1 - alpha)
        out = out * (1 + halo * rng.uniform(0.1, 0.3))
    out = np.where(head, out, x)
    return np.clip(out, 0, 255).astype(np.uint8), (core * 255).astype(np.uint8)


def implant_views(views: np.ndarray, view_labels: np.ndarray, share: float, seed: int = 0):
    """Draw a lesion into a share of the no-tumour views -> (views, masks (0/255), drawn: bool per view).

    Seeded and independent of the other augmentation draws; the input array is not changed."""
    views = np.array(views, np.uint8, copy=True)
    masks = np.zeros_like(views)
    drawn = np.zeros(len(views), bool)
    if share <= 0:
        return views, masks, drawn
    rng = np.random.default_rng([int(seed), 1301])
    pick = (np.asarray(view_labels) == 0) & (rng.random(len(views)) < share)
    for i in np.flatnonzero(pick):
        im, m = implant(views[i], rng)
        if m.any():
            views[i], masks[i], drawn[i] = im, m, True
    return views, masks, drawn
