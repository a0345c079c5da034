"""Prepare: decoded greyscale images -> model input (resize, intensity normalisation, batch).

One concept shared by training, calibration and inference, so a model sees the same pixels
whichever path fed it. Every path decodes at :data:`DEFAULT_SIZE` (240, the paper's) first, then
resizes to the model's input size (:func:`at_size`). Models take float32 batches of shape
(N, size, size, channels) with raw values in [0, 255] (:func:`as_batch`);
``preprocess="percentile"`` clips each image to its 0.5 and 99.5 percentiles first;
``preprocess="equalize"`` does that and then equalises the histogram of the head (the pixels above
:data:`FOREGROUND` after clipping; Pillow's ``ImageOps.equalize`` with that mask), so that sources
whose sequences and scanners spread intensities differently look more alike. Background stays 0.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from bt_core.config import PREPROCESS_CHOICES
from bt_core.data import images
from bt_core.errors import DataError

DEFAULT_SIZE = 240
FOREGROUND = 12  # uint8 level above which a clipped pixel counts as head, not background


def resize(pixels: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Resize a greyscale uint8 image to size x size (aspect not kept, as in the paper)."""
    return images.to_model_input(pixels, size=size, channels=1)[..., 0].round().clip(0, 255).astype(np.uint8)


def at_size(images_u8: np.ndarray, size: int) -> np.ndarray:
    """(N, s, s) uint8 images at ``size`` x ``size``; the same array when they already are.

    Every path (training, calibration, inference) decodes at :data:`DEFAULT_SIZE` first and then
    comes here, so a model sees the same pixels whichever path fed it."""
    images_u8 = np.asarray(images_u8)
    if images_u8.shape[1:3] == (size, size):
        return images_u8
    return np.stack([resize(im, size) for im in images_u8])


def equalize_foreground(pixels_u8: np.ndarray, level: int = FOREGROUND) -> np.ndarray:
    """Percentile-clip one uint8 image, then equalise the histogram of its foreground (> ``level``)."""
    clipped = images.normalize_intensity(pixels_u8)
    fg = clipped > level
    if fg.sum() < 16:  # nothing that looks like a head: leave the clipped image as it is
        return clipped
    out = np.asarray(ImageOps.equalize(Image.fromarray(clipped), mask=Image.fromarray(fg.astype(np.uint8) * 255)))
    return np.where(fg, np.maximum(out, level + 1), 0).astype(np.uint8)


def normalize(batch_u8: np.ndarray, preprocess: str = "none") -> np.ndarray:
    """Apply the per-image intensity step named by ``preprocess`` to (N, H, W) uint8 images."""
    if preprocess not in PREPROCESS_CHOICES:
        raise DataError(f"unknown preprocess {preprocess!r}; choose one of {', '.join(PREPROCESS_CHOICES)}")
    if preprocess == "percentile":
        return np.stack([images.normalize_intensity(im) for im in batch_u8])
    if preprocess == "equalize":
        return np.stack([equalize_foreground(im) for im in batch_u8])
    return batch_u8


def as_batch(images_u8: np.ndarray, channels: int = 1, preprocess: str = "none") -> np.ndarray:
    """(N, H, W) uint8 -> float32 (N, H, W, channels) in [0, 255], ready for a model."""
    x = normalize(np.asarray(images_u8), preprocess).astype(np.float32)[..., None]
    return np.repeat(x, channels, axis=-1) if channels > 1 else x
