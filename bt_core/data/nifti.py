"""NIfTI scans (``.nii``, ``.nii.gz``, NIfTI-1 or -2, via nibabel) as one volume of axial slices.

Reoriented to RAS, axial slices (third axis) shown as a DICOM viewer does (anterior up, patient's right
on the left), inferior first; 4-D files: the first volume. NIfTI stores no window: the volume's own
0.5-99.5 percentile range, the same for every slice. Called by :func:`bt_core.data.series.load_volume`.

Defaults: the limits of :mod:`bt_core.data.volume` (a gzip file may unpack to twice ``MAX_FILE_BYTES``).
"""
from __future__ import annotations

import gzip
import io

import numpy as np

from bt_core.data.images import _rescale, _short
from bt_core.data.volume import MAX_FILE_BYTES, MAX_SLICES, MAX_VOXELS, Volume
from bt_core.errors import ImageError


def _gunzip(data: bytes, limit: int, label: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            out = fh.read(limit + 1)
    except (OSError, EOFError) as exc:
        raise ImageError(f"{label}: broken gzip data ({_short(exc)})") from exc
    if len(out) > limit:
        raise ImageError(f"{label}: uncompressed volume is larger than {limit / 2**20:.0f} MB")
    return out


def is_nifti(name: str, data: bytes) -> bool:
    """A NIfTI name (``.nii``, ``.nii.gz``) or NIfTI-1/-2 magic (gzip-compressed or not)."""
    if str(name).lower().endswith((".nii", ".nii.gz")):
        return True
    head = data[:600]
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
                head = fh.read(600)
        except (OSError, EOFError):
            return False
    return head[344:348] in (b"n+1\0", b"ni1\0") or head[4:8] == b"n+2\0"


def _load_nifti(label: str, data: bytes) -> Volume:
    import nibabel as nib

    raw = _gunzip(data, 2 * MAX_FILE_BYTES, label) if data[:2] == b"\x1f\x8b" else data
    size = next((v for v in (int.from_bytes(raw[:4], e) for e in ("little", "big")) if v in (348, 540)), 0)
    if size not in (348, 540):
        raise ImageError(f"{label}: not a NIfTI-1 or NIfTI-2 file (header size {size})")
    if raw[344:348] == b"ni1\0":
        raise ImageError(f"{label}: a NIfTI .hdr/.img pair; convert it to one .nii or .nii.gz file")
    notes = []
    try:
        img = (nib.Nifti1Image if size == 348 else nib.Nifti2Image).from_bytes(raw)
        shape = tuple(int(s) for s in img.shape)
        if not 2 <= len(shape) <= 5 or 0 in shape:
            raise ImageError(f"a NIfTI volume of shape {shape} (need 2 to 4 dimensions)")
        if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
            notes.append(f"4-D NIfTI: the first of {int(np.prod(shape[3:]))} volumes used")
        if int(np.prod(shape[:3])) > MAX_VOXELS:
            raise ImageError(f"{int(np.prod(shape[:3])):,} voxels, over the limit of {MAX_VOXELS:,}")
        if len(shape) == 2:
            img = nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, None], img.affine)
        elif len(shape) > 3:
            img = img.slicer[(slice(None),) * 3 + (0,) * (len(shape) - 3)]
        img = nib.as_closest_canonical(img)
        vol = np.asarray(img.get_fdata(dtype=np.float32))
    except ImageError as exc:
        raise ImageError(f"{label}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds on broken files
        raise ImageError(f"{label}: not a readable NIfTI volume ({_short(exc)})") from exc
    if vol.shape[2] > MAX_SLICES:
        raise ImageError(f"{label}: {vol.shape[2]} slices: at most {MAX_SLICES} in one scan")
    finite = vol[np.isfinite(vol)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 0.0)
    if not hi > lo and finite.size:
        lo, hi = float(finite.min()), float(finite.max())
    slices = [_rescale(np.flip(vol[:, :, k], (0, 1)).T, lo, hi) for k in range(vol.shape[2])]
    notes = [f"NIfTI: {len(slices)} axial slices of {vol.shape[0]}x{vol.shape[1]} voxels (RAS, inferior first)",
             *notes, "NIfTI stores no window: the volume's 0.5-99.5 percentile range used for every slice"]
    return Volume(slices, [f"slice {k + 1}" for k in range(len(slices))], "NIfTI", label, notes)
