"""Folders: read a two-class image folder once and cache the decoded arrays on disk (or a packed file).

Layout (Br35H's): ``<root>/yes/`` holds tumour slices (label 1), ``<root>/no/`` the others
(label 0); the class folder names are configurable. Every file goes through
:func:`bt_core.data.images.load_image` (EXIF orientation, 16-bit, DICOM, ...), is resized to
``size`` x ``size`` (240, as in the paper) and kept as greyscale ``uint8``.

Decoded arrays are cached in ``cache_dir`` (default ``$BT_CACHE_DIR`` or ``~/.cache/bt_core``) in
one ``.npz`` named by a hash of every file's *content* and label, and the size, so a second
run decodes nothing and a changed file is noticed. Files that cannot be decoded are skipped and
listed in :attr:`Dataset.skipped`, never silently.

A data set can also be packed into one ``.npz`` of JPEG bytes (:func:`pack`, ``tools/pack_data.py``;
45.6 MiB for Br35H at 240 px, JPEG quality 90), for a machine that cannot see the folder (a rented
GPU). :func:`load_folder` takes such a file in place of a folder.

Preparing decoded images for a model (resize, intensity normalisation, batching) is
:mod:`bt_core.data.prepare`, shared by training and inference.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bt_core.data import images
from bt_core.data.prepare import DEFAULT_SIZE, resize
from bt_core.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm"}
DEFAULT_CLASSES = ("no", "yes")
CACHE_VERSION = "1"


@dataclass
class Dataset:
    """Decoded images of one folder: ``images`` (N, size, size) uint8, ``labels`` (N,) int."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    root: str
    classes: tuple[str, str] = DEFAULT_CLASSES
    skipped: list[str] = field(default_factory=list)
    fingerprint: str = ""
    # several sources (bt_core.data.sources): the source index of each image, its group (patient) and metadata
    source: np.ndarray | None = None
    source_names: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    groups: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def source_of(self) -> np.ndarray:
        """Name of the source of every image (the folder name for a one-folder data set)."""
        if self.source is None:
            return np.full(len(self.labels), Path(self.root).name or "data")
        return np.asarray(self.source_names)[self.source]

    def family_of(self) -> np.ndarray:
        """Source family of every image (the unit of leave-one-source-out)."""
        if self.source is None:
            return self.source_of()
        return np.asarray(self.families)[self.source]


def default_cache_dir() -> Path:
    return Path(os.environ.get("BT_CACHE_DIR", Path.home() / ".cache" / "bt_core"))


def list_folder(root: str | os.PathLike, classes: Sequence[str] = DEFAULT_CLASSES, both: bool = True):
    """Return (relative paths, labels) of the images under ``root/<class>/``, sorted.

    ``both=False`` accepts a folder with one class only (a set of healthy scans: ``no/`` alone)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    if len(classes) != 2:
        raise DataError(f"need exactly two class folders (negative, positive), got {list(classes)}")
    paths, labels = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir() and not both and any((root / c).is_dir() for c in classes):
            continue
        if not folder.is_dir():
            raise DataError(f"class folder missing: {folder} (expected {root}/{classes[0]}/ and {root}/{classes[1]}/)")
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += [str(p.relative_to(root)) for p in found]
        labels += [label] * len(found)
    if not paths:
        raise DataError(f"no images found in {root}/{classes[0]}/ or {root}/{classes[1]}/")
    if both and len(set(labels)) < 2:
        raise DataError(f"only one class has images in {root}: need both {classes[0]}/ and {classes[1]}/")
    return paths, np.asarray(labels, dtype=np.int64)


def _fingerprint(root: Path, paths: list[str], labels: np.ndarray) -> str:
    """Hash of every file's content and label: the identity of a data set, whatever its size."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for rel, lab in zip(paths, labels):
        h.update(f"|{lab}|".encode())
        h.update(hashlib.sha1((root / rel).read_bytes()).digest())
    return h.hexdigest()[:24]


def load_folder(
    root: str | os.PathLike,
    size: int = DEFAULT_SIZE,
    classes: Sequence[str] = DEFAULT_CLASSES,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    both: bool = True,
) -> Dataset:
    """Decode every image of a two-class folder (or read them from the cache), or of a packed file.

    ``both=False``: a folder with one class only is accepted (see :func:`list_folder`)."""
    if Path(root).suffix == ".npz" and Path(root).is_file():
        return load_packed(root, size, cache_dir)
    root = Path(root).resolve()
    paths, labels = list_folder(root, classes, both)
    key = _fingerprint(root, paths, labels)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_file = cache / f"{key}-{size}.npz"
    if (ds := _from_cache(cache_file, str(root), tuple(classes), key)) is not None:
        return ds
    arrays, kept, kept_labels, skipped = [], [], [], []
    for i, (rel, lab) in enumerate(zip(paths, labels)):
        try:
            pix = images.load_image(root / rel, name=rel).pixels
            arrays.append(resize(pix, size))
            kept.append(rel)
            kept_labels.append(lab)
        except images.ImageError as err:
            skipped.append(str(err))
        if progress:
            progress(i + 1, len(paths))
    if not arrays:
        raise DataError(f"none of the {len(paths)} files in {root} could be decoded")
    return _to_cache(cache_file, Dataset(np.stack(arrays), np.asarray(kept_labels, np.int64), kept, str(root),
                                         tuple(classes), skipped, key))


def _from_cache(cache_file: Path, root: str, classes: tuple, key: str) -> Dataset | None:
    """The decoded data set cached in ``cache_file``, or None when there is none (or it is broken)."""
    if not cache_file.exists():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            return Dataset(z["images"], z["labels"], [str(p) for p in z["paths"]], root, classes,
                           [str(s) for s in z["skipped"]], key)
    except Exception:  # a broken cache is rebuilt, not trusted
        return None


def _to_cache(cache_file: Path, ds: Dataset) -> Dataset:
    save_cache(cache_file, images=ds.images, labels=ds.labels, paths=np.asarray(ds.paths),
               skipped=np.asarray(ds.skipped, dtype=str))
    return ds


def save_cache(path: Path, array: np.ndarray | None = None, **arrays) -> None:
    """Write a cache file atomically (temp file + rename): one array as .npy, or several as .npz.

    Parallel processes may write and read the same file; a read-only or full disk only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp" + path.suffix)
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array) if array is not None else np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass


PACK_VERSION = 1


def pack(ds: Dataset, out: str | os.PathLike, quality: int = 90) -> Path:
    """Write ``ds`` as one ``.npz`` of JPEG bytes (greyscale, at the data set's size) -> the file."""
    from io import BytesIO

    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise DataError(f"JPEG quality must be between 1 and 100, got {quality}")
    out = Path(out)
    if out.suffix != ".npz":
        raise DataError(f"a packed data set is a .npz file, got {out}")
    blobs = []
    for im in ds.images:
        buf = BytesIO()
        Image.fromarray(np.asarray(im, np.uint8)).save(buf, "JPEG", quality=int(quality))
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, version=PACK_VERSION, jpeg=np.concatenate(blobs), offsets=np.cumsum([0] + [len(b) for b in blobs]),
             labels=ds.labels, paths=np.asarray(ds.paths, dtype=str), classes=np.asarray(ds.classes, dtype=str),
             source=np.asarray(ds.root), source_fingerprint=np.asarray(ds.fingerprint))
    return out


def load_packed(path: str | os.PathLike, size: int = DEFAULT_SIZE, cache_dir: str | os.PathLike | None = None) -> Dataset:
    """Read a file written by :func:`pack`, decoded once and cached as :func:`load_folder` caches a
    folder; its fingerprint is a hash of the file's content."""
    from io import BytesIO

    path = Path(path).resolve()
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    key = hashlib.sha256(raw).hexdigest()[:24]
    cache_file = (Path(cache_dir) if cache_dir else default_cache_dir()) / f"{key}-{size}.npz"
    try:
        with np.load(BytesIO(raw), allow_pickle=False) as z:
            if int(z["version"]) != PACK_VERSION:
                raise DataError(f"{path}: packed with format {int(z['version'])}, this version reads {PACK_VERSION}")
            jpeg, offsets, labels = z["jpeg"], z["offsets"], z["labels"].astype(np.int64)
            paths, classes = [str(p) for p in z["paths"]], tuple(str(c) for c in z["classes"])
        if (ds := _from_cache(cache_file, str(path), classes, key)) is not None:
            return ds
    except DataError:
        raise
    except Exception as err:  # not a zip, a missing array, a truncated file
        raise DataError(f"{path.name} is not a packed data set ({type(err).__name__}); make one with "
                        "tools/pack_data.py") from None
    if len(offsets) != len(labels) + 1 or len(paths) != len(labels) or len(set(labels.tolist())) < 2:
        raise DataError(f"{path.name}: a packed data set needs images of both classes, with one label and path each")
    arrays = [resize(images.load_image(jpeg[a:b].tobytes(), name=rel).pixels, size)
              for a, b, rel in zip(offsets[:-1], offsets[1:], paths)]
    return _to_cache(cache_file, Dataset(np.stack(arrays), labels, paths, str(path), classes, [], key))
