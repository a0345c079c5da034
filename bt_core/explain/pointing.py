"""Pointing: do heatmaps point at the tumour the experts outlined?

Two standard checks of a saliency map against a ground-truth mask:

- the *pointing game* (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016):
  a hit when the map's maximum falls inside the mask (here within ``tolerance`` pixels of it,
  default 0, at the map's resolution after upsampling to the image size);
- the *energy share*: the fraction of the map's total mass that lies inside the mask (the
  "energy-based pointing game" of Score-CAM, Wang et al., CVPR-W 2020).

Both work on (N, S, S) maps in [0, 1] and (N, M, M) masks (any size; resized to S, > 0.5 inside),
and skip images whose mask is empty. A uniform map scores the mask's area share on both: the
report prints that chance level beside each figure.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def _resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    m = np.asarray(masks, np.float32)
    if m.max() > 1:
        m = m / 255.0
    if m.shape[1:] == (size, size):
        return m > 0.5
    return np.stack([np.asarray(Image.fromarray(x).resize((size, size), Image.BILINEAR)) for x in m]) > 0.5


def pointing(heatmaps: np.ndarray, masks: np.ndarray, tolerance: int = 0) -> dict:
    """-> {"n", "hit_rate", "energy_inside", "chance_hit", "chance_energy"} over images with a mask."""
    h = np.asarray(heatmaps, np.float64)
    inside = _resize_masks(masks, h.shape[1])
    keep = inside.reshape(len(inside), -1).any(1)
    h, inside = h[keep], inside[keep]
    if not len(h):
        return {"n": 0, "hit_rate": None, "energy_inside": None, "chance_hit": None, "chance_energy": None}
    if tolerance:
        from scipy.ndimage import binary_dilation

        inside_tol = np.stack([binary_dilation(m, iterations=tolerance) for m in inside])
    else:
        inside_tol = inside
    flat = h.reshape(len(h), -1)
    peak = flat.argmax(1)
    hits = inside_tol.reshape(len(h), -1)[np.arange(len(h)), peak]
    energy = (flat * inside.reshape(len(h), -1)).sum(1) / np.maximum(flat.sum(1), 1e-12)
    area = inside.reshape(len(h), -1).mean(1)
    return {"n": int(len(h)), "hit_rate": float(hits.mean()), "energy_inside": float(energy.mean()),
            "chance_hit": float(area.mean()), "chance_energy": float(area.mean())}
