"""Augment: random changes of a slice that another scanner, hospital or viewer could have made.

For training models that must hold up on sources they never saw (issue 13). :func:`random_view`
draws, for one greyscale uint8 image and its tumour mask (the same geometry for both):

- geometry: a rotation by 0, 90, 180 or 270 degrees (some sources store slices upside down or on
  their side; each with probability 1/4), a left-right flip (1/2), a small rotation (+-15 degrees),
  a crop-and-zoom to 80-100% of the side (1/2);
- intensity: gamma 0.6-1.6, contrast x0.6-1.4, a smooth bias field (1/3 each);
- texture: one or more of blur, noise, low resolution and JPEG artefacts
  (:func:`bt_core.data.degrade.random_degrade`, 1/2);
- skull stripping (probability ``strip``, default 0): :func:`strip_skull` blacks out the rim of the
  head (scalp and skull), as in BraTS and other skull-stripped collections;
- another sequence's contrast (probability ``remap``, default 0): :func:`remap_intensity` sends the
  head's intensities through a random curve, the inversion or a non-monotonic one, so that a tumour
  bright on FLAIR may turn dark as on T1 (random intensity curves for unseen MRI contrasts, as in the
  global intensity transforms of Ouyang et al. 2022 and the non-linear transform of Zhou et al. 2021).
  Histogram equalisation (``--preprocess equalize``) undoes any increasing curve, not these. Its draws
  come from a second generator, so the other changes of each view stay the same with or without it.

:func:`views` makes K such views of every image of a data set, seeded, with the source index of
each view, so only views of training images are trained on.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from bt_core.data import degrade
from bt_core.data.prepare import FOREGROUND


def _geometry(rng: np.random.Generator, size: int) -> dict:
    return {"rot90": int(rng.integers(4)), "flip": bool(rng.random() < 0.5),
            "angle": float(rng.uniform(-15, 15)) if rng.random() < 0.5 else 0.0,
            "crop": float(rng.uniform(0.8, 1.0)) if rng.random() < 0.5 else 1.0,
            "offset": rng.uniform(0, 1, 2)}


def _apply_geometry(im: np.ndarray, g: dict, resample) -> np.ndarray:
    out = np.rot90(im, g["rot90"])
    if g["flip"]:
        out = out[:, ::-1]
    h, w = out.shape
    pil = Image.fromarray(np.ascontiguousarray(out))
    if g["angle"]:
        pil = pil.rotate(g["angle"], resample=resample, fillcolor=0)
    if g["crop"] < 1.0:
        ch, cw = int(h * g["crop"]), int(w * g["crop"])
        y0, x0 = int((h - ch) * g["offset"][0]), int((w - cw) * g["offset"][1])
        pil = pil.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), resample)
    return np.asarray(pil)


def _intensity(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = im.astype(np.float64) / 255.0
    if rng.random() < 1 / 3:
        x = x ** rng.uniform(0.6, 1.6)
    if rng.random() < 1 / 3:
        x = 0.5 + rng.uniform(0.6, 1.4) * (x - 0.5)
    out = np.clip(x * 255, 0, 255).astype(np.uint8)
    if rng.random() < 1 / 3:
        out = degrade.bias_field(out, rng)
    return out


def head_interior(im: np.ndarray, rim: float, level: float | None = None) -> np.ndarray:
    """The head's interior: the largest region above ``level`` (default: :data:`FOREGROUND`, or a tenth of
    the 99th percentile if higher) with its holes filled, less its outer ``rim`` (a share of its radius).
    All False when there is no such region or it covers under 5% of the image."""
    im = np.asarray(im, np.uint8)
    head = im > (max(float(FOREGROUND), 0.1 * float(np.percentile(im, 99))) if level is None else level)
    labels, n = ndimage.label(head)
    if not n:
        return np.zeros(im.shape, bool)
    head = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(ndimage.sum(head, labels, range(1, n + 1)))))
    if head.sum() < 0.05 * im.size:
        return np.zeros(im.shape, bool)
    return ndimage.distance_transform_edt(head) > rim * np.sqrt(head.sum() / np.pi)


def strip_skull(im: np.ndarray, rim: float = 0.12) -> np.ndarray:
    """An approximate skull strip: keep the head's interior (:func:`head_interior`), black out its outer
    ``rim`` (a share of the head's radius: scalp and skull); an image without a head comes back unchanged."""
    im = np.asarray(im, np.uint8)
    keep = head_interior(im, rim)
    return np.where(keep, im, 0).astype(np.uint8) if keep.any() else im


def remap_intensity(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The head of ``im`` (uint8; :func:`head_interior` with no rim) with its intensities sent through a
    random curve: with probability 1/2 the inversion, else a piecewise-linear curve through four points
    at random heights (in general not monotonic). The head stays above :data:`FOREGROUND` and the
    background at its values; an image without a head comes back unchanged."""
    im = np.asarray(im, np.uint8)
    head = head_interior(im, 0.0)
    if not head.any():
        return im
    x = np.linspace(0.0, 1.0, 256)
    if rng.random() < 0.5:
        curve = 1.0 - x
    else:
        knots = np.concatenate([[0.0], np.sort(rng.uniform(0.1, 0.9, 2)), [1.0]])
        curve = np.interp(x, knots, rng.uniform(0.0, 1.0, 4))
    lo = FOREGROUND + 8
    lut = np.round(lo + (255 - lo) * curve).astype(np.uint8)
    return np.where(head, lut[im], im).astype(np.uint8)


def random_view(im: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator, strip: float = 0.0,
                remap: float = 0.0, remap_rng: np.random.Generator | None = None):
    """One random view of ``im`` (uint8, H x W) and of its mask (uint8, any size, or None) -> (image, mask).

    With ``strip`` > 0 the view is skull-stripped (:func:`strip_skull`, rim 8-16% of the head's radius)
    with that probability; with ``strip`` = 0 no extra number is drawn, so the views stay as they were.
    With ``remap`` > 0 the finished view's head takes a random intensity curve (:func:`remap_intensity`)
    with that probability, drawn from ``remap_rng`` (default: ``rng``)."""
    if strip > 0 and rng.random() < strip:
        im = strip_skull(im, float(rng.uniform(0.08, 0.16)))
    g = _geometry(rng, im.shape[0])
    out = _apply_geometry(np.asarray(im, np.uint8), g, Image.BILINEAR)
    out = _intensity(out, rng)
    if rng.random() < 0.5:
        out = degrade.random_degrade(out, rng)
    if remap > 0:
        r = remap_rng if remap_rng is not None else rng
        if r.random() < remap:
            out = remap_intensity(out, r)
    m = _apply_geometry(np.asarray(mask, np.uint8), g, Image.BILINEAR) if mask is not None else None
    return out, m


def views(images_u8: np.ndarray, k: int, seed: int = 0, masks: np.ndarray | None = None, strip: float = 0.0,
          remap: float = 0.0):
    """K random views of each image -> (views (N*K, H, W) uint8, masks of the views or None, source index).

    View j of image i is row ``i * k + j``; the draws depend only on ``seed`` (and ``strip``). The
    intensity curves (``remap``) come from a second generator seeded from ``seed``, so views with and
    without them differ only in those curves."""
    remap_rng = np.random.default_rng([seed, 1]) if remap > 0 else None
    return degrade.seeded_copies(images_u8, k, seed,
                                 lambda im, m, rng: random_view(im, m, rng, strip, remap, remap_rng), masks)
