"""Tumour visibility: how much an expert-masked tumour stands out from the tissue around it in its own slice.

A crude contrast-to-noise ratio, :func:`tumour_contrast`: the absolute difference between the mean
intensity inside the mask and the mean of a ring around it (``ring`` pixels wide, default 6, head pixels
only), divided by the spread (standard deviation) of the head's intensities (tumour included). 0 means the masked region
has, on average, the brightness of its surroundings; 1 means it differs by one head-wide standard
deviation. Texture and shape are ignored, so a low value does not prove a tumour invisible, only that
its brightness does not give it away.

Why it matters here: the LGG masks outline the *FLAIR* abnormality (Buda, Saha & Mazurowski, Comput.
Biol. Med. 2019), and the ``lgg_t1c`` and ``lgg_t1pre`` labels come from the same masks, so a slice is
labelled "tumour" on T1 wherever the FLAIR abnormality is, whether or not T1 shows it.
:func:`detection_by_contrast` splits a model's sensitivity by this contrast (:data:`CONTRAST_BINS`);
:func:`run_detection_by_contrast` does it for the predictions of a run record on its masked sources.

Defaults: ring 6 pixels (in the slice's own pixels), head = pixels above the 5th percentile and above 4% of
the slice's maximum; undefined (NaN) when the mask or the ring has fewer than 5 pixels.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy import ndimage

CONTRAST_BINS = ((0.0, 0.25), (0.25, 0.5), (0.5, 1.0), (1.0, None))
MIN_PIXELS = 5


def tumour_contrast(image, mask, ring: int = 6) -> float:
    """|mean inside ``mask`` - mean of a ``ring``-pixel ring around it in the head| / std of head and tumour.

    ``image``: a grey slice (any numeric range, 2-D); ``mask``: the same size, tumour where > 0.5 of its
    maximum (0/1 or 0/255 alike). NaN where the mask or the ring has fewer than :data:`MIN_PIXELS` pixels."""
    img = np.asarray(image, np.float64)
    m = np.asarray(mask, np.float64)
    if img.ndim != 2 or img.shape != m.shape:
        raise ValueError(f"image and mask must be 2-D and of one size, not {img.shape} and {m.shape}")
    inside = m > 0.5 * max(m.max(), 1e-12)
    if inside.sum() < MIN_PIXELS:
        return float("nan")
    head = img > max(0.04 * img.max(), np.percentile(img, 5))
    around = ndimage.binary_dilation(inside, iterations=int(ring)) & ~inside & head
    if around.sum() < MIN_PIXELS:
        return float("nan")
    spread = img[head | inside].std()
    return float(abs(img[inside].mean() - img[around].mean()) / max(spread, 1e-9))


@functools.lru_cache(maxsize=16)
def _cached_contrasts(root: str, mtime: float) -> dict[str, float]:
    return source_contrasts(root)


def source_contrasts(root, mask_dir: str = "masks") -> dict[str, float]:
    """{file name of each ``yes/`` slice of the source folder ``root`` with a mask: :func:`tumour_contrast`}.

    Masks are ``masks/NAME.png`` for ``yes/NAME.*`` (the layout of ``../shared/data``); an unreadable
    slice or mask is left out."""
    from bt_core.data import images

    root = Path(root)
    out: dict[str, float] = {}
    yes, masks = root / "yes", root / mask_dir
    if not (yes.is_dir() and masks.is_dir()):
        return out
    for f in sorted(yes.iterdir()):
        mpath = masks / (f.stem + ".png")
        if not (f.is_file() and mpath.is_file()):
            continue
        try:
            img = images.load_image(f, name=f.name).pixels
            m = images.load_image(mpath, name=mpath.name).pixels
        except images.ImageError:
            continue
        if img.shape == m.shape:
            out[f.name] = tumour_contrast(img, m)
    return out


def bin_label(lo: float, hi: float | None) -> str:
    return f"{lo:g}-{hi:g}" if hi is not None else f"{lo:g} or more"


def detection_by_contrast(contrast, prob, threshold: float = 0.5) -> list[dict]:
    """Tumour slices split by :data:`CONTRAST_BINS` -> [{"bin", "n", "share", "sensitivity"}] (empty bins left
    out; NaN contrasts counted in none). ``prob``: the model's tumour probability of each slice."""
    c, p = np.asarray(contrast, float), np.asarray(prob, float)
    known = np.isfinite(c)
    rows = []
    for lo, hi in CONTRAST_BINS:
        sel = known & (c >= lo) & (c < hi if hi is not None else True)
        if sel.any():
            rows.append({"bin": bin_label(lo, hi), "n": int(sel.sum()), "share": float(sel.sum() / max(known.sum(), 1)),
                         "sensitivity": float((p[sel] >= threshold).mean())})
    return rows


def run_detection_by_contrast(rec: dict, idx, y, prob, source, threshold: float = 0.5) -> list[dict]:
    """For the images ``idx`` of run record ``rec`` (labels ``y``, probabilities ``prob``, source names
    ``source``): :func:`detection_by_contrast` of each source with ``masks/``, as
    [{"source", "bin", "n", "share", "sensitivity"}]. Each source's contrasts are computed once a process."""
    roots = {s["name"]: Path(s["root"]) for s in rec["data"]["sources"]}
    paths, out = rec["data"]["paths"], []
    for s in dict.fromkeys(source):
        root = roots.get(s)
        if root is None or not (root / "masks").is_dir():
            continue
        c = _cached_contrasts(str(root), (root / "masks").stat().st_mtime)
        pick = [(c.get(Path(paths[i]).name, np.nan), p) for i, yy, p, src in zip(idx, y, prob, source) if src == s and yy == 1]
        if pick:
            out += [{"source": s, **r} for r in detection_by_contrast(*zip(*pick), threshold=threshold)]
    return out
