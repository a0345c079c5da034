"""Turn any uploaded file or file on disk into a greyscale ``uint8`` image, safely.

The one image-reading path of the CLI, the training data loader and the app. :func:`load_image`
takes bytes, a path or a binary file object and returns :class:`LoadedImage` (uint8 (H, W) pixels,
a safe name, human notes). Every failure is an ``ImageError`` whose one-line message names the file.

Defaults: files over ``MAX_UPLOAD_BYTES`` (20 MiB) and images over ``MAX_PIXELS`` (50,000,000
pixels, also Pillow's ``Image.MAX_IMAGE_PIXELS``; its bomb warning is an error inside the loader)
are refused. Pillow reads JPEG, PNG, BMP, TIFF, GIF, WebP (first frame, EXIF orientation applied,
truncated files refused); 16-bit/float images are min/max rescaled, alpha composited on black,
colour -> luminance. DICOM (``DICM`` magic or ``.dcm`` name): Modality LUT, then VOI LUT or window,
scaled to 0..255, MONOCHROME1 inverted, middle frame of multi-frame. :func:`to_model_input`:
bilinear 240x240 (aspect not kept, as the paper), float32 in [0, 255], 1 or 3 channels.
:func:`normalize_intensity`: clip to the 0.5/99.5 percentiles, rescale to 0..255.
"""

from __future__ import annotations

import io
import os
import re
import threading
import unicodedata
import warnings
from dataclasses import dataclass, field

import numpy as np
import pydicom
from PIL import Image, ImageOps
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from bt_core.errors import ConfigError, ImageError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow warns above this and errors above twice this
PIL_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "GIF", "WEBP")
_DECODE_LOCK = threading.Lock()  # warnings.catch_warnings is process-global: never interleave it
_FRAME_NOTES = {"GIF": "animated GIF: first frame of {} used",
                "TIFF": "multi-page TIFF: first page of {} used"}


@dataclass
class LoadedImage:
    """A decoded image: ``pixels`` uint8 (H, W), display ``name``, human ``notes``."""
    pixels: np.ndarray
    name: str
    notes: list[str] = field(default_factory=list)


def safe_name(name: str) -> str:
    """Readable basename without directories, control or odd characters; never empty, <= 100 chars."""
    if isinstance(name, (bytes, os.PathLike)):
        name = os.fsdecode(name)
    text = (name if isinstance(name, str) else "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    kept = (" " if unicodedata.category(c)[0] == "Z" else c if c.isalnum() or c in "._-+()[] " else "_"
            for c in unicodedata.normalize("NFC", text) if unicodedata.category(c)[0] != "C")
    text = re.sub(r"_{2,}", "_", re.sub(r"\s+", " ", "".join(kept))).strip(" .").lstrip("-")
    if len(text) > 100:
        stem, ext = os.path.splitext(text)
        text = stem[: 100 - len(ext)].rstrip(" .") + ext if 0 < len(ext) <= 10 else text[:100]
    return text or "upload"


def _short(exc: BaseException | str, limit: int = 160) -> str:
    """One printable line (hostile files put newlines and control bytes in names and UIDs)."""
    msg = " ".join("".join(c if c.isprintable() else " " for c in str(exc)).split()) or type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _read_source(source, max_bytes: int) -> bytes:
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        elif isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                data = fh.read(max_bytes + 1)
        elif callable(getattr(source, "read", None)):
            data = source.read(max_bytes + 1)
        else:
            raise ImageError(f"unsupported source {type(source).__name__} (need bytes, path or binary file)")
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is about the user's file
        raise ImageError(f"cannot read file ({getattr(exc, 'strerror', None) or _short(exc)})") from exc
    if not isinstance(data, (bytes, bytearray)):
        raise ImageError("file object returned no bytes (open files in binary mode, 'rb')")
    if not data:
        raise ImageError("empty file")
    if len(data) > max_bytes:
        raise ImageError(f"file is larger than the limit of {max_bytes / 2**20:.1f} MB ({max_bytes:,} bytes)")
    return bytes(data)


def load_image(source, name: str | None = None, max_bytes: int = MAX_UPLOAD_BYTES) -> LoadedImage:
    """Decode bytes, a path or a binary file object (read from its current position) to grey uint8.

    Raises ImageError("<safe name>: <reason>") for anything that is not a usable image."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if name is None:
        name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)
    label = safe_name(name)
    try:
        data = _read_source(source, max_bytes)
        magic = data[128:132] == b"DICM"
        dicom = magic or label.lower().endswith((".dcm", ".dicom"))
        try:
            pixels, notes = _guarded(_decode_dicom if dicom else _decode_pillow, data)
        except ImageError as first:
            if magic or not dicom:
                raise
            try:  # a .dcm name on an ordinary picture; else the DICOM reason is the useful one
                pixels, notes = _guarded(_decode_pillow, data)
            except ImageError:
                raise first from first.__cause__
    except ImageError as exc:
        raise ImageError(_short(f"{label}: {exc}", 400)) from exc.__cause__
    return LoadedImage(pixels=pixels, name=label, notes=notes)


def _guarded(decode, data: bytes) -> tuple[np.ndarray, list[str]]:
    """Run a decoder with bombs as errors and other warnings silenced; map exceptions to ImageError."""
    try:
        with _DECODE_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pixels, notes = decode(data)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"image has {int(found.group(1)):,} pixels" if found else "image is too large"
        raise ImageError(f"{size}, over the limit of {MAX_PIXELS:,} (possible decompression bomb)") from exc
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on hostile input
        raise ImageError("not enough memory to decode this image" if isinstance(exc, MemoryError)
                         else "not a recognised image (expected JPEG, PNG, BMP, TIFF, GIF, WebP or DICOM)"
                         if isinstance(exc, Image.UnidentifiedImageError)
                         else f"cannot decode image: {_short(exc)}") from exc
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim != 2 or 0 in pixels.shape:
        raise ImageError(f"decoded image has unusable shape {pixels.shape}")
    return pixels, notes


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(f"image is {width}x{height}, over the limit of {MAX_PIXELS:,} pixels")


def _rescale(values, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Map [lo, hi] (default: finite min/max) to 0..255 uint8; NaN/inf -> 0; empty range -> zeros."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if lo is None or hi is None:
        lo, hi = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    if not hi > lo:
        return np.zeros(values.shape, np.uint8)
    scaled = np.clip((np.where(finite, values, lo) - lo) * (255.0 / (hi - lo)), 0, 255)
    return np.rint(scaled).astype(np.uint8)


def _decode_pillow(data: bytes) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
        _check_size(*im.size)
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(_FRAME_NOTES.get(im.format, f"animated {im.format}: first frame of {{}} used")
                         .format(frames))  # counting frames leaves the image on frame 0
        im.load()  # full decode now: truncated or corrupt data raises here
        try:
            orientation = im.getexif().get(0x0112)
            upright = ImageOps.exif_transpose(im)
            if orientation in range(2, 9):
                notes.append(f"EXIF orientation {orientation} applied")
        except Exception:  # noqa: BLE001 - unreadable EXIF must not cost the image
            upright = im.copy()
            notes.append("unreadable EXIF data ignored")
    return _pil_to_grey(upright, notes), notes


def _pil_to_grey(im: Image.Image, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("L", "1", "RGB"):  # RGB is the usual container of a grey MRI: no note
        return np.asarray(im.convert("L"))
    if mode.startswith("I") or mode == "F":
        values = np.asarray(im, dtype=np.float64)
        is16 = mode.startswith("I;16") or (values.min() >= 0 and values.max() < 65536)
        kind = "floating-point" if mode == "F" else "16-bit" if is16 else "32-bit"
        notes.append(f"{kind} image rescaled to 8-bit")
        return _rescale(values)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        notes.append(f"{'palette' if mode == 'P' else mode} image with transparency composited on black")
        return np.asarray(Image.alpha_composite(black, im.convert("RGBA")).convert("L"))
    notes.append(f"{'palette' if mode == 'P' else mode} image converted to greyscale")  # CMYK, YCbCr...
    return np.asarray(im.convert("L") if mode == "P" else im.convert("RGB").convert("L"))


def _decode_dicom(data: bytes) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageError("DICOM file has no pixel data")
    _check_size(int(ds.get("Columns") or 0), int(ds.get("Rows") or 0))
    if "TransferSyntaxUID" not in ds.file_meta:  # raw dataset without file meta: use how it was read
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit or implicit is None
                                          else ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    what = f"DICOM transfer syntax '{ts.name}' ({ts}) cannot be decoded"
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise ImageError(f"{what}: pydicom has no decoder for it") from exc
    if not decoder.is_available:
        raise ImageError(f"{what}: no decoder plugin is installed for it (needs e.g. pylibjpeg or GDCM)")
    frames = max(1, int(ds.get("NumberOfFrames") or 1))
    index = (frames - 1) // 2
    try:
        arr = pixel_array(ds, index=index if frames > 1 else None)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{what}: {_short(exc)}" if ts.is_compressed
                         else f"cannot decode DICOM pixel data: {_short(exc)}") from exc
    if frames > 1:
        notes.append(f"DICOM multi-frame: middle slice {index + 1} of {frames} used")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3 and arr.shape[-1] >= 3:
        notes.append(f"{'palette' if photometric == 'PALETTE COLOR' else 'RGB'} DICOM made greyscale")
        grey = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return (np.rint(grey).astype(np.uint8) if arr.dtype == np.uint8 else _rescale(grey)), notes
    if arr.ndim != 2:
        raise ImageError(f"DICOM pixel data has unexpected shape {arr.shape}")
    try:
        arr = apply_modality_lut(arr, ds)
    except Exception:  # noqa: BLE001 - keep the stored values
        notes.append("invalid DICOM Modality LUT ignored")
    pixels = _apply_voi(arr, ds, notes)
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
        notes.append("MONOCHROME1 inverted (higher values shown brighter)")
    return pixels, notes


def _apply_voi(arr: np.ndarray, ds, notes: list[str]) -> np.ndarray:
    """VOI LUT (preferred) or window via pydicom, then its output range -> 0..255; else min/max."""
    seq = ds.get("VOILUTSequence")
    use_lut = bool(seq) and None not in (seq[0].get("LUTDescriptor"), seq[0].get("LUTData"))
    use_window = None not in (ds.get("WindowCenter"), ds.get("WindowWidth"))
    if not (use_lut or use_window):
        return _rescale(arr)
    try:
        out = np.asarray(apply_voi_lut(arr, ds, index=0), dtype=np.float64)
        if use_lut:  # output range = the range of the LUT entries themselves
            desc = [int(v) for v in seq[0].LUTDescriptor]
            probe = apply_voi_lut(np.arange(desc[1], desc[1] + (desc[0] or 65536)), ds, index=0)
        else:  # window output spans [y_min, y_max]; probe far below and above the window
            probe = apply_voi_lut(np.array([-1e300, 1e300]), ds, index=0)
        lo, hi = float(np.min(probe)), float(np.max(probe))
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError("empty VOI output range")
    except Exception:  # noqa: BLE001 - a broken window must not cost the image
        notes.append("invalid DICOM VOI LUT/window ignored")
        return _rescale(arr)
    notes.append("DICOM VOI LUT applied" if use_lut else "DICOM window applied")
    return _rescale(out, lo, hi)


def to_model_input(pixels: np.ndarray, size: int = 240, channels: int = 1) -> np.ndarray:
    """Resize a grey (H, W) image to float32 (size, size, channels) in [0, 255] (aspect not kept)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= 4096:
        raise ConfigError(f"size must be an integer in 1..4096, got {size!r}")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels!r}")
    arr = np.asarray(pixels)
    arr = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    if arr.ndim != 2 or 0 in arr.shape or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ImageError(f"expected a 2-D greyscale array, got shape {arr.shape} dtype {arr.dtype}")
    if arr.dtype != np.uint8:  # resize non-uint8 input in float ("F") mode, clipped to [0, 255]
        arr = np.clip(np.nan_to_num(arr.astype(np.float32)), 0, 255).astype(np.float32)
    im = Image.fromarray(arr)
    out = np.asarray(im.resize((int(size), int(size)), Image.Resampling.BILINEAR), dtype=np.float32)
    return np.repeat(np.clip(out, 0, 255)[:, :, None], channels, axis=2)


def normalize_intensity(pixels: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip to the [low, high] percentiles of this image and rescale to uint8 0..255."""
    if not 0 <= low < high <= 100:
        raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    arr = np.asarray(pixels, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    lo, hi = np.percentile(finite, [low, high]) if finite.size else (0.0, 0.0)
    return _rescale(arr, lo, hi)
