"""Probe images that are not brain MRI, for checking the out-of-distribution detector.

:func:`non_brain_images` returns ``(name, uint8 grey image)`` pairs: natural photos, text, a CT
phantom, retina and microscopy images shipped with scikit-image (used when it is installed), plus
generated noise, gradients, text, constant images and checkerboards (always, seeded). None of
them is an MRI slice, so a good detector flags all of them.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SKIMAGE_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "horse", "coins", "moon", "page",
                  "text", "clock", "hubble_deep_field", "immunohistochemistry", "retina",
                  "shepp_logan_phantom", "cell", "grass", "gravel", "brick", "colorwheel", "logo",
                  "checkerboard", "binary_blobs", "microaneurysms")


def _grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 3:
        a = a[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]
    a = a.astype(np.float64)
    if a.max() <= 1.0:
        a = a * 255
    return np.clip(a, 0, 255).astype(np.uint8)


def generated_images(size: int = 240, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / (size - 1)
    out = [("uniform noise", rng.integers(0, 256, (size, size))),
           ("gaussian noise", np.clip(rng.normal(128, 40, (size, size)), 0, 255)),
           ("salt and pepper", (rng.random((size, size)) > 0.5) * 255),
           ("horizontal gradient", xx * 255), ("vertical gradient", yy * 255),
           ("radial gradient", np.clip(np.hypot(xx - 0.5, yy - 0.5) * 360, 0, 255)),
           ("black", np.zeros((size, size))), ("white", np.full((size, size), 255)),
           ("checkerboard", ((np.floor(xx * 8) + np.floor(yy * 8)) % 2) * 255),
           ("stripes", (np.sin(xx * 40) > 0) * 255)]
    for k, (text, bg) in enumerate([("Patient report\nno findings", 255), ("LOREM IPSUM\n12345", 0)]):
        img = Image.new("L", (size, size), bg)
        draw = ImageDraw.Draw(img)
        for line in range(6):
            draw.text((10, 10 + 38 * line), text.split("\n")[line % 2], fill=255 - bg, font_size=22)
        out.append((f"text {k + 1}", np.asarray(img)))
    return [(n, np.asarray(a).astype(np.uint8)) for n, a in out]


def package_images() -> list[tuple[str, np.ndarray]]:
    """scikit-image's sample images (those that ship with the package); empty without it."""
    try:
        import skimage.data as sk
    except ImportError:
        return []
    out = []
    for name in SKIMAGE_IMAGES:
        try:
            out.append((f"skimage {name}", _grey(getattr(sk, name)())))
        except Exception:  # an image that would need a download is skipped
            continue
    return out


def non_brain_images(size: int = 240, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    return package_images() + generated_images(size, seed)
