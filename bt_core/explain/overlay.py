"""Turn a heatmap into colours and blend it over an MRI slice (presentation only).

The heatmap maths lives in :mod:`bt_core.explain.gradcam`; this module only colours a map in [0, 1] and
alpha-blends it over the image, the same split MONAI makes between computing class-activation maps
(``monai.visualize.class_activation_maps``) and drawing them (``monai.visualize.utils``, e.g.
``blend_images``).

Defaults: the matplotlib colour map ``"jet"`` and ``alpha=0.4`` (weight of the heatmap colour;
``0`` returns the image itself as RGB); a heatmap of another size is resized bilinearly to the
image.
"""

import io

import numpy as np
from PIL import Image

from bt_core.errors import ConfigError, ImageError

DEFAULT_CMAP = "jet"
DEFAULT_ALPHA = 0.4


def _heatmap(heatmap):
    h = np.asarray(heatmap, dtype=np.float32)
    if h.ndim != 2:
        raise ImageError(f"a heatmap must be 2-D (H, W); got shape {h.shape}")
    return np.clip(np.nan_to_num(h, nan=0.0), 0.0, 1.0)


def colorize(heatmap, cmap=DEFAULT_CMAP):
    """Colour a heatmap (H, W) in [0, 1] with a matplotlib colour map -> uint8 RGB (H, W, 3)."""
    import matplotlib

    try:
        colour_map = matplotlib.colormaps[cmap]
    except KeyError:
        raise ConfigError(f"unknown matplotlib colour map {cmap!r}") from None
    rgba = colour_map(_heatmap(heatmap))
    return np.round(rgba[..., :3] * 255.0).astype(np.uint8)


def _to_rgb(image):
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ImageError(f"the image must be uint8; got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ImageError(f"the image must be grey (H, W) or RGB (H, W, 3); got shape {img.shape}")


def overlay(image, heatmap, alpha=DEFAULT_ALPHA, cmap=DEFAULT_CMAP):
    """Blend the coloured ``heatmap`` over ``image`` (uint8 grey or RGB) -> uint8 RGB (H, W, 3).

    ``out = (1 - alpha) * image + alpha * colour``; the heatmap is resized to the image if needed.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1]; got {alpha}")
    rgb = _to_rgb(image)
    height, width = rgb.shape[:2]
    h = _heatmap(heatmap)
    if h.shape != (height, width):
        resized = Image.fromarray(np.ascontiguousarray(h)).resize(
            (width, height), Image.Resampling.BILINEAR
        )
        h = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    colour = colorize(h, cmap).astype(np.float32)
    out = (1.0 - float(alpha)) * rgb.astype(np.float32) + float(alpha) * colour
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def to_png_bytes(rgb):
    """Encode a uint8 RGB (H, W, 3) or grey (H, W) array as PNG bytes."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ImageError(f"PNG export needs uint8 (H, W) or (H, W, 3); got {arr.dtype} {arr.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buffer, format="PNG")
    return buffer.getvalue()


def outline(image, mask, color=(0, 255, 0), width: int = 1):
    """RGB uint8 copy of ``image`` with the boundary of ``mask`` (any size; > 127 inside) drawn in ``color``:
    the expert tumour outline beside a heatmap."""
    rgb = _to_rgb(image).copy()
    h, w = rgb.shape[:2]
    m = np.asarray(Image.fromarray(np.asarray(mask, np.uint8)).resize((w, h), Image.NEAREST)) > 127
    edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
    for _ in range(max(0, int(width) - 1)):
        edge = edge | np.roll(edge, 1, 0) | np.roll(edge, 1, 1)
    rgb[edge] = color
    return rgb

