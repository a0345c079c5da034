"""Archives: read an uploaded zip of labelled slices in memory, safely (nothing is extracted to disk).

Two layouts are understood:

- class folders: ``yes/`` (tumour, label 1) and/or ``no/`` (label 0), at the top or under one common
  folder (``mydata/yes/...``); one class alone is fine (a set of healthy scans). Files deeper inside a
  class folder keep its label.
- a CSV (used when there are no class folders) with the columns ``file`` (relative to the CSV's folder
  or to the archive's top) and ``label`` (``yes``/``no``, ``1``/``0``, ``tumour``/``no tumour``, ``true``/``false``).

Every image goes through :func:`bt_core.data.images.load_image` (bytes) and is resized to the canonical
``size`` (240, :data:`bt_core.data.prepare.DEFAULT_SIZE`). Files that are not images, images that cannot be
decoded and CSV rows that do not match are listed in :attr:`LabelledArchive.skipped`; the rest are used.
``__MACOSX/`` and ``.DS_Store`` entries are ignored.

Refused with one line (:class:`ArchiveError`, a :class:`~bt_core.errors.DataError`): not a zip, an archive
over ``MAX_ARCHIVE_BYTES`` (200 MiB), more than ``MAX_FILES`` (5000) files, entry names with ``..``, an
absolute path or a drive letter, symbolic links (``S_IFLNK`` in the entry's Unix mode), encrypted entries,
a zip bomb: declared uncompressed sizes over ``MAX_TOTAL_BYTES`` (1 GiB) in all or over
``MAX_ENTRY_BYTES`` (:data:`~bt_core.data.images.MAX_UPLOAD_BYTES`, 20 MiB) for one entry, an entry
larger than ``MAX_RATIO_MIN_BYTES`` (1 MiB) that expands more than ``MAX_RATIO`` (100) times, and the
bytes actually decompressed are counted while reading, against the same limits.
"""
from __future__ import annotations

import csv
import io
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable

import numpy as np

from bt_core.data import images
from bt_core.data.folders import DEFAULT_CLASSES, IMAGE_EXTENSIONS
from bt_core.data.prepare import DEFAULT_SIZE, resize
from bt_core.errors import DataError

MAX_ARCHIVE_BYTES = 200 * 1024 * 1024
MAX_FILES = 5000
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
MAX_ENTRY_BYTES = images.MAX_UPLOAD_BYTES
MAX_RATIO = 100
MAX_RATIO_MIN_BYTES = 1024 * 1024
MAX_CSV_BYTES = 5 * 1024 * 1024
CHUNK = 1024 * 1024
LABELS = {"yes": 1, "1": 1, "tumour": 1, "tumor": 1, "true": 1, "no": 0, "0": 0, "no tumour": 0, "no tumor": 0,
          "false": 0}
_IGNORED = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$)")


class ArchiveError(DataError):
    """An archive that is refused as a whole (not a zip, unsafe, or nothing usable in it)."""


@dataclass
class LabelledArchive:
    """Decoded labelled images of an archive: ``pixels`` (N, size, size) uint8, ``labels`` (N,) int."""

    pixels: np.ndarray
    labels: np.ndarray
    names: list[str]
    layout: str  # "folders" or "csv"
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class _Limits:
    total: int = MAX_TOTAL_BYTES
    entry: int = MAX_ENTRY_BYTES
    ratio: float = MAX_RATIO
    read: int = 0  # bytes decompressed so far


def read_archive(source, classes=DEFAULT_CLASSES, size: int = DEFAULT_SIZE, max_files: int = MAX_FILES,
                 max_total_bytes: int = MAX_TOTAL_BYTES, max_ratio: float = MAX_RATIO,
                 progress: Callable[[int, int], None] | None = None) -> LabelledArchive:
    """Read a zip (bytes or a binary file object) of labelled slices; see the module docstring."""
    data = source if isinstance(source, (bytes, bytearray, memoryview)) else source.read(MAX_ARCHIVE_BYTES + 1)
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ArchiveError(f"the archive is larger than the limit of {MAX_ARCHIVE_BYTES // 2**20} MB")
    try:
        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError):
        raise ArchiveError("not a zip archive: upload a .zip of yes/ and no/ folders or of images with a CSV "
                           "of file,label") from None
    limits = _Limits(max_total_bytes, MAX_ENTRY_BYTES, max_ratio)
    files = _check_entries(infos, max_files, limits)
    with zf:
        labelled, skipped, layout = _labelled(zf, files, tuple(classes), limits)
        if not labelled:
            raise ArchiveError("no labelled images in the archive: put them in yes/ and no/ folders, or list them "
                               "in a CSV with the columns file,label" + (f" ({len(skipped)} file(s) skipped)"
                                                                          if skipped else ""))
        pixels, labels, names = [], [], []
        for i, (info, name, label) in enumerate(labelled):
            try:
                img = images.load_image(_read(zf, info, limits), name=PurePosixPath(name).name)
                pixels.append(resize(img.pixels, size))
                labels.append(label)
                names.append(name)
            except images.ImageError as err:
                skipped.append(f"{name}: {str(err).split(': ', 1)[-1]}")
            if progress:
                progress(i + 1, len(labelled))
    if not pixels:
        raise ArchiveError(f"none of the {len(labelled)} images in the archive could be read "
                           f"(first: {skipped[0] if skipped else 'unknown'})")
    return LabelledArchive(np.stack(pixels), np.asarray(labels, np.int64), names, layout, skipped)


def _check_entries(infos, max_files: int, limits: _Limits) -> list[zipfile.ZipInfo]:
    """The file entries, after refusing the archive if any entry is unsafe."""
    files = [i for i in infos if not i.is_dir() and not _IGNORED.search(i.filename)]
    if len(infos) > 2 * max_files or len(files) > max_files:
        raise ArchiveError(f"the archive holds {len(files)} files; the limit is {max_files}")
    declared = 0
    for info in infos:
        name = info.filename
        shown = images._short(name, 80)
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\0" in name:
            raise ArchiveError(f"unsafe path in the archive: {shown} (no absolute paths or '..')")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArchiveError(f"the archive holds a symbolic link ({shown}); links are not accepted")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"the archive is encrypted ({shown}); upload it without a password")
        if info.is_dir() or _IGNORED.search(name):
            continue
        declared += info.file_size
        big = info.file_size > MAX_RATIO_MIN_BYTES
        if big and info.file_size > limits.ratio * max(info.compress_size, 1):
            raise ArchiveError(f"{shown} expands {info.file_size / max(info.compress_size, 1):.0f} times: "
                               f"refused as a possible zip bomb (limit {limits.ratio:.0f})")
    if declared > limits.total:
        raise ArchiveError(f"the archive expands to {declared / 2**20:.0f} MB: refused as a possible zip bomb "
                           f"(limit {limits.total / 2**20:.0f} MB)")
    return files


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: _Limits, cap: int | None = None) -> bytes:
    """An entry's bytes, counting what is actually decompressed against the limits."""
    cap = limits.entry if cap is None else cap
    if info.file_size > cap:
        raise images.ImageError(f"{info.filename}: larger than the limit of {cap / 2**20:.0f} MB")
    out = bytearray()
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(CHUNK):
                out += chunk
                limits.read += len(chunk)
                if len(out) > cap or len(out) > info.file_size or limits.read > limits.total:
                    raise ArchiveError(f"{images._short(info.filename, 80)} decompresses to more than its "
                                       "stated size or the limits: refused as a possible zip bomb")
                if len(out) > MAX_RATIO_MIN_BYTES and len(out) > limits.ratio * max(info.compress_size, 1):
                    raise ArchiveError(f"{images._short(info.filename, 80)} expands more than "
                                       f"{limits.ratio:.0f} times: refused as a possible zip bomb")
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as err:
        raise ArchiveError(f"the archive is damaged or uses an unsupported method "
                           f"({images._short(info.filename, 80)}: {images._short(err, 80)})") from None
    return bytes(out)


def _labelled(zf, files, classes, limits):
    """-> ([(info, name shown, label)], skipped, layout)."""
    skipped: list[str] = []
    by_path = {i.filename.replace("\\", "/"): i for i in files}
    prefixes = {}
    for path in by_path:
        parts = path.split("/")
        for depth in range(len(parts) - 1):
            if parts[depth] in classes:
                prefixes.setdefault("/".join(parts[:depth]), set()).add(parts[depth])
                break
    if prefixes:
        top = min(prefixes, key=lambda p: (p.count("/") + bool(p), p))
        others = [p for p in prefixes if p != top]
        if others:
            raise ArchiveError(f"the archive holds class folders in several places ({top or '(top)'}, {others[0]}): "
                               "zip one data set")
        out = []
        base = f"{top}/" if top else ""
        for path, info in sorted(by_path.items()):
            rel = path[len(base):] if path.startswith(base) else None
            cls = rel.split("/", 1)[0] if rel and "/" in rel else None
            if cls not in classes:
                if not path.lower().endswith(".csv"):
                    skipped.append(f"{path}: not in a {classes[1]}/ or {classes[0]}/ folder")
                continue
            if PurePosixPath(path).suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(f"{path}: not an image")
                continue
            out.append((info, rel, classes.index(cls)))
        return out, skipped, "folders"
    csvs = sorted((p for p in by_path if p.lower().endswith(".csv")), key=lambda p: (p.count("/"), p))
    for path in csvs:
        rows = _csv_rows(zf, by_path[path], limits)
        if rows is not None:
            return _from_csv(path, rows, by_path, skipped), skipped, "csv"
    return [], [f"{p}: not in a {classes[1]}/ or {classes[0]}/ folder and no CSV lists it" for p in sorted(by_path)], "none"


def _csv_rows(zf, info, limits) -> list[dict] | None:
    """The rows of a CSV with ``file`` and ``label`` columns, or None when it is not one."""
    try:
        text = _read(zf, info, limits, cap=MAX_CSV_BYTES).decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text))
        fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
        if "file" not in fields or "label" not in fields:
            return None
        return [{"file": (r.get(fields["file"]) or "").strip(), "label": (r.get(fields["label"]) or "").strip()}
                for r in reader]
    except (UnicodeDecodeError, csv.Error, images.ImageError):
        return None


def _from_csv(csv_path: str, rows, by_path, skipped):
    folder = csv_path.rsplit("/", 1)[0] + "/" if "/" in csv_path else ""
    out, used = [], {csv_path}
    for row in rows:
        rel = row["file"].replace("\\", "/")
        rel = rel[2:] if rel.startswith("./") else rel
        label = LABELS.get(row["label"].lower())
        path = folder + rel if folder + rel in by_path else rel
        if path not in by_path or ".." in rel.split("/"):
            skipped.append(f"{images._short(rel, 80)}: listed in {csv_path} but not in the archive")
            continue
        used.add(path)
        if label is None:
            skipped.append(f"{path}: label {images._short(row['label'], 20)!r} is not yes/no or 1/0")
            continue
        if PurePosixPath(path).suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append(f"{path}: not an image")
            continue
        out.append((by_path[path], path[len(folder):] if path.startswith(folder) else path, label))
    skipped += [f"{p}: not listed in {csv_path}" for p in sorted(by_path) if p not in used]
    return out
