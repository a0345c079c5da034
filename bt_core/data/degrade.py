"""Image degradations that imitate other scanners: fixed ones to measure robustness, random ones to train for it.

:func:`fixed` gives the named degradations of ``reports/generalisation.md`` (blur sigma 2, noise sd 15,
gamma 0.6 and 1.6, contrast x0.5, a bias field, 64-px resolution, JPEG quality 15, inverted
contrast). :func:`random_degrade` draws a texture degradation for training, from wider ranges:
each of blur (sigma 0.5 to 2.5), noise (sd 3 to 20), low resolution (a quarter to 0.7 of the side)
and JPEG artefacts (quality 10 to 50) is applied with probability one half, at least one of them.
:func:`copies` makes K degraded copies of every image (``TrainConfig.degrade_copies``), through the seeded
loop :func:`seeded_copies` that :func:`bt_core.data.augment.views` shares. Every
function works on greyscale uint8 images and takes a seed or a ``numpy`` Generator.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

RANDOM_RANGES = {"blur": (0.5, 2.5), "noise": (3.0, 20.0), "low_resolution": (0.25, 0.7), "jpeg": (10, 50)}


def blur(im: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(sigma)))


def noise(im: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(im + rng.normal(0, sd, im.shape), 0, 255).astype(np.uint8)


def low_resolution(im: np.ndarray, side: int) -> np.ndarray:
    h, w = im.shape
    return np.asarray(Image.fromarray(im).resize((side, side), Image.BILINEAR).resize((w, h), Image.BILINEAR))


def jpeg(im: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, "JPEG", quality=int(quality))
    return np.asarray(Image.open(buf).convert("L"))


def bias_field(im: np.ndarray, rng: np.random.Generator, strength: float = 0.35) -> np.ndarray:
    h, w = im.shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    a, b = rng.uniform(-1, 1, 2)
    field = 1 + strength * np.sin(np.pi * (a * xx + b * yy + rng.uniform()))
    return np.clip(im * field, 0, 255).astype(np.uint8)


def fixed(seed: int = 0) -> dict:
    """The named degradations of the generalisation report: name -> function of one uint8 image."""
    rng = np.random.default_rng(seed)
    return {
        "blur (sigma 2)": lambda im: blur(im, 2),
        "noise (sd 15)": lambda im: noise(im, 15, rng),
        "gamma 0.6": lambda im: (255 * (im / 255.0) ** 0.6).astype(np.uint8),
        "gamma 1.6": lambda im: (255 * (im / 255.0) ** 1.6).astype(np.uint8),
        "contrast x0.5": lambda im: np.clip(128 + 0.5 * (im.astype(float) - 128), 0, 255).astype(np.uint8),
        "bias field": lambda im: bias_field(im, rng),
        "low resolution (64 px)": lambda im: np.asarray(Image.fromarray(im).resize((64, 64)).resize(im.shape[::-1])),
        "JPEG quality 15": lambda im: jpeg(im, 15),
        "inverted contrast": lambda im: (255 - im).astype(np.uint8),
    }


def random_degrade(im: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random texture degradation of a uint8 image (see the module docstring for the ranges)."""
    steps = rng.random(4) < 0.5
    if not steps.any():
        steps[rng.integers(4)] = True
    out = np.asarray(im, np.uint8)
    if steps[0]:
        out = blur(out, rng.uniform(*RANDOM_RANGES["blur"]))
    if steps[1]:
        out = low_resolution(out, max(8, round(min(out.shape) * rng.uniform(*RANDOM_RANGES["low_resolution"]))))
    if steps[2]:
        out = noise(out, rng.uniform(*RANDOM_RANGES["noise"]), rng)
    if steps[3]:
        out = jpeg(out, rng.integers(RANDOM_RANGES["jpeg"][0], RANDOM_RANGES["jpeg"][1] + 1))
    return out


def seeded_copies(images_u8: np.ndarray, k: int, seed: int, make, masks: np.ndarray | None = None):
    """K outputs of ``make(image, mask or None, rng) -> (image, mask or None)`` for each image, all drawn
    from one generator seeded with ``seed`` in row order -> (images (N*K, H, W) uint8, their masks or None,
    source index of each row). Row ``i * k + j`` is output j of image i. Used by :func:`copies` and
    :func:`bt_core.data.augment.views`."""
    images_u8 = np.asarray(images_u8, np.uint8)
    if k < 0:
        raise ValueError("k must be >= 0")
    rng = np.random.default_rng(seed)
    source = np.repeat(np.arange(len(images_u8)), k)
    out = np.empty((len(source), *images_u8.shape[1:]), np.uint8)
    out_m = np.empty((len(source), *masks.shape[1:]), np.uint8) if masks is not None else None
    for row, i in enumerate(source):
        out[row], m = make(images_u8[i], masks[i] if masks is not None else None, rng)
        if out_m is not None:
            out_m[row] = m
    return out, out_m, source


def copies(images_u8: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K randomly degraded copies of each image -> (copies (N*K, H, W) uint8, source index of each copy).

    Copy j of image i is row ``i * k + j``; the draws depend only on ``seed``, so a run is repeatable.
    """
    out, _, source = seeded_copies(images_u8, k, seed, lambda im, _mask, rng: (random_degrade(im, rng), None))
    return out, source
