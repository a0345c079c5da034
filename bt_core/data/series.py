"""Open a whole scan as one volume: a DICOM series, a multi-frame DICOM or a NIfTI file.

:func:`load_volume` takes ``(name, bytes)`` pairs (or paths) and returns a :class:`Volume`: greyscale
``uint8`` (H, W) slices in anatomical order, one label per slice, and human notes. Every failure is
an :class:`~bt_core.errors.ImageError` with a one-line message naming the file.

This module tells the kinds apart and refuses mixtures (a NIfTI or a multi-frame DICOM with other
files); the readers are :mod:`bt_core.data.dicom_series` (a DICOM series: one SeriesInstanceUID, one
size, one plane, ordered along the slice normal; a multi-frame DICOM) and :mod:`bt_core.data.nifti`
(reoriented to RAS, axial slices, inferior first, the volume's 0.5-99.5 percentile window).
:class:`Volume`, :func:`is_nifti` and the limits are importable from here too.

Defaults: files up to ``MAX_FILE_BYTES`` (256 MiB; single DICOM slices keep images' 20 MiB),
``MAX_SLICES`` (2000) slices, ``MAX_VOXELS`` (64 million) voxels (:mod:`bt_core.data.volume`).
"""
from __future__ import annotations

import os

from bt_core.data import images
from bt_core.data.dicom_series import _dicom_header, _load_multiframe, _load_series
from bt_core.data.images import safe_name
from bt_core.data.nifti import _load_nifti, is_nifti
from bt_core.data.volume import MAX_FILE_BYTES, MAX_SLICES, MAX_VOXELS, Volume  # noqa: F401 - as before
from bt_core.errors import ImageError

WHAT = "a scan is a DICOM series, one multi-frame DICOM or one NIfTI file (.nii, .nii.gz)"


def _read(source, name: str | None, limit: int) -> tuple[str, bytes]:
    if isinstance(source, tuple):
        name, source = source
    elif name is None and isinstance(source, (str, os.PathLike)):
        name = source
    label = safe_name(name)
    try:
        return label, images._read_source(source, limit)
    except ImageError as exc:
        raise ImageError(f"{label}: {exc}") from exc.__cause__


def load_volume(sources, max_bytes: int = MAX_FILE_BYTES) -> Volume:
    """``(name, bytes)`` pairs, paths or binary files of one scan -> :class:`Volume` (see the module)."""
    sources = list(sources)
    if not sources:
        raise ImageError(f"no files given: {WHAT}")
    if len(sources) > MAX_SLICES:
        raise ImageError(f"{len(sources)} files: at most {MAX_SLICES} slices in one scan")
    files = [_read(s, None, max_bytes) for s in sources]
    niftis = [label for label, data in files if is_nifti(label, data)]
    if niftis and len(files) > 1:
        raise ImageError(f"{niftis[0]}: a NIfTI file holds a whole scan; upload it alone, not with other files")
    if niftis:
        return _load_nifti(*files[0])
    headers = []
    for label, data in files:
        ds = _dicom_header(label, data)
        if ds is None:
            raise ImageError(f"{label}: not a DICOM or NIfTI file ({WHAT})")
        headers.append(ds)
    frames = [max(1, int(ds.get("NumberOfFrames") or 1)) for ds in headers]
    if len(files) == 1 and frames[0] > 1:
        return _load_multiframe(*files[0])
    if any(f > 1 for f in frames):
        label = files[frames.index(max(frames))][0]
        raise ImageError(f"{label}: a multi-frame DICOM holds a whole scan; upload it alone, not with other files")
    return _load_series(files, headers)
