"""DICOM scans as one volume: a series of single-frame files, or one multi-frame file.

- **DICOM series** (several single-frame files): one SeriesInstanceUID only (files of two series are
  refused), the same rows and columns, one orientation. Ordered by ImagePositionPatient projected on
  the slice normal (row x column of ImageOrientationPatient), else by InstanceNumber, else by name.
  Each slice is decoded by :func:`bt_core.data.images.load_image`, exactly as a single DICOM is
  (Modality LUT, VOI LUT or window, else the slice's min/max; MONOCHROME1 inverted).
- **Multi-frame DICOM** (one file): every frame, through the same helpers (per-frame window and
  rescale of enhanced objects where stored), ordered by per-frame position when given.

Called by :func:`bt_core.data.series.load_volume`; failures are one-line
:class:`~bt_core.errors.ImageError` naming the file. Defaults: the limits of :mod:`bt_core.data.volume`.
"""
from __future__ import annotations

import copy
import io
from collections import Counter

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, pixel_array

from bt_core.data import images
from bt_core.data.images import _apply_voi, _rescale, _short, safe_name
from bt_core.data.volume import MAX_FILE_BYTES, MAX_SLICES, MAX_VOXELS, Volume
from bt_core.errors import ImageError


def _dicom_header(label: str, data: bytes):
    """The dataset without pixels, or None when this is not DICOM at all."""
    dicom = data[128:132] == b"DICM" or label.lower().endswith((".dcm", ".dicom"))
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        if "Rows" in ds and "Columns" in ds:
            return ds
    except Exception as exc:  # noqa: BLE001 - hostile headers raise anything
        if dicom:
            raise ImageError(f"{label}: unreadable DICOM header ({_short(exc)})") from exc
        return None
    if dicom:
        raise ImageError(f"{label}: DICOM file without image rows and columns")
    return None


def _floats(ds, key: str, n: int) -> np.ndarray | None:
    try:
        values = np.asarray([float(v) for v in ds.get(key) or []], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return values if values.size == n and np.all(np.isfinite(values)) else None


def _series_order(labels, headers) -> tuple[list[int], str | None]:
    """Slice order and a note on how it was found; ImageError when the slices lie in different planes."""
    orient = [_floats(ds, "ImageOrientationPatient", 6) for ds in headers]
    pos = [_floats(ds, "ImagePositionPatient", 3) for ds in headers]
    if all(o is not None for o in orient) and all(p is not None for p in pos):
        for label, o in zip(labels, orient):
            if not np.allclose(o, orient[0], atol=1e-3):
                raise ImageError(f"{label}: lies in another plane than {labels[0]} (ImageOrientationPatient "
                                 "differs); upload the slices of one plane")
        normal = np.cross(orient[0][:3], orient[0][3:])
        depth = [float(p @ normal) for p in pos]
        order = sorted(range(len(headers)), key=lambda i: (depth[i], labels[i]))
        same = len(depth) - len(set(np.round(depth, 3)))
        return order, (f"{same} slice(s) share a position with another slice" if same else None)
    try:
        numbers = [int(ds.get("InstanceNumber")) for ds in headers]
    except (TypeError, ValueError):
        numbers = None
    if numbers is not None:
        return sorted(range(len(headers)), key=lambda i: (numbers[i], labels[i])), \
            "no slice positions stored: ordered by InstanceNumber"
    return sorted(range(len(headers)), key=lambda i: labels[i]), "no slice positions or numbers: ordered by file name"


def _load_series(files, headers) -> Volume:
    labels = [label for label, _ in files]
    uids = Counter(str(ds.get("SeriesInstanceUID", "")).strip() for ds in headers)
    if len(uids) > 1:
        raise ImageError(f"the {len(files)} files belong to {len(uids)} different series (SeriesInstanceUID); "
                         "upload one series at a time")
    shape0 = (int(headers[0].Rows), int(headers[0].Columns))
    for label, ds in zip(labels, headers):
        shape = (int(ds.Rows), int(ds.Columns))
        if shape != shape0:
            raise ImageError(f"{label}: {shape[1]}x{shape[0]} pixels, unlike {labels[0]} ({shape0[1]}x{shape0[0]}); "
                             "the slices of one series share their size")
    if len(files) * shape0[0] * shape0[1] > MAX_VOXELS:
        raise ImageError(f"the series has {len(files) * shape0[0] * shape0[1]:,} voxels, over the limit of {MAX_VOXELS:,}")
    order, how = _series_order(labels, headers)
    slices, notes = [], Counter()
    for i in order:
        img = images.load_image(files[i][1], name=labels[i])  # the single-DICOM path, per slice
        slices.append(img.pixels)
        notes.update(img.notes)
    kind = "DICOM series" if len(files) > 1 else "DICOM slice"
    out = [f"{kind}: {len(files)} slice(s) of {shape0[1]}x{shape0[0]} pixels"] + ([how] if how else [])
    out += [note if n == len(files) else f"{note} ({n} of {len(files)} slices)" for note, n in notes.items()]
    description = str(headers[0].get("SeriesDescription", "") or "").strip()
    name = safe_name(description) if description else labels[order[0]]
    return Volume(slices, [f"slice {k + 1} ({labels[i]})" for k, i in enumerate(order)], kind, name, out)


def _frame_view(ds, groups, i: int):
    """The dataset as frame ``i`` sees it: enhanced objects' shared and per-frame window and rescale."""
    found = {}
    for seq in (groups.get("shared"), groups.get("per_frame")[i] if groups.get("per_frame") else None):
        if seq is None:
            continue
        for item_key, keys in (("FrameVOILUTSequence", ("WindowCenter", "WindowWidth")),
                               ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept"))):
            items = seq.get(item_key)
            if items:
                found.update({k: items[0].get(k) for k in keys if items[0].get(k) is not None})
    if not found:
        return ds
    view = copy.copy(ds)
    for key, value in found.items():
        setattr(view, key, value)
    return view


def _frame_depths(groups, n: int) -> list[float] | None:
    per_frame = groups.get("per_frame")
    if not per_frame or len(per_frame) != n:
        return None
    orient = None
    for seq in (groups.get("shared"), per_frame[0]):
        items = seq.get("PlaneOrientationSequence") if seq is not None else None
        orient = _floats(items[0], "ImageOrientationPatient", 6) if items else orient
    pos = [_floats(item.PlanePositionSequence[0], "ImagePositionPatient", 3) if item.get("PlanePositionSequence")
           else None for item in per_frame]
    if orient is None or any(p is None for p in pos):
        return None
    normal = np.cross(orient[:3], orient[3:])
    return [float(p @ normal) for p in pos]


def _load_multiframe(label: str, data: bytes) -> Volume:
    images.load_image(data, name=label, max_bytes=MAX_FILE_BYTES)  # every check of the single-DICOM path
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        n, rows, cols = int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)
        if n * rows * cols > MAX_VOXELS:
            raise ImageError(f"{n} frames of {cols}x{rows} pixels, over the limit of {MAX_VOXELS:,} voxels")
        if n > MAX_SLICES:
            raise ImageError(f"{n} frames: at most {MAX_SLICES} slices in one scan")
        arr = pixel_array(ds)
    except ImageError as exc:
        raise ImageError(f"{label}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{label}: cannot decode the DICOM frames ({_short(exc)})") from exc
    if arr.ndim == 2:
        arr = arr[None]
    groups = {"shared": (ds.get("SharedFunctionalGroupsSequence") or [None])[0],
              "per_frame": ds.get("PerFrameFunctionalGroupsSequence")}
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    slices, notes = [], Counter()
    for i, frame in enumerate(arr):
        note: list[str] = []
        if frame.ndim == 3:
            grey = frame[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
            slices.append(_rescale(grey, 0, 255) if arr.dtype == np.uint8 else _rescale(grey))
            notes.update(["RGB DICOM made greyscale"])
            continue
        view = _frame_view(ds, groups, i)
        try:
            frame = apply_modality_lut(frame, view)
        except Exception:  # noqa: BLE001 - keep the stored values
            note.append("invalid DICOM Modality LUT ignored")
        pixels = _apply_voi(frame, view, note)
        slices.append(255 - pixels if photometric == "MONOCHROME1" else pixels)
        notes.update(note + (["MONOCHROME1 inverted (higher values shown brighter)"]
                             if photometric == "MONOCHROME1" else []))
    depths = _frame_depths(groups, len(slices))
    order = sorted(range(len(slices)), key=lambda i: depths[i]) if depths else list(range(len(slices)))
    out = [f"DICOM multi-frame: {len(slices)} frames of {cols}x{rows} pixels, "
           + ("ordered by frame position" if depths else "in stored order")]
    out += [nt if k == len(slices) else f"{nt} ({k} of {len(slices)} frames)" for nt, k in notes.items()]
    return Volume([slices[i] for i in order], [f"frame {i + 1}" for i in order], "DICOM multi-frame", label, out)
