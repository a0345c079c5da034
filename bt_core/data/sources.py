"""Sources: a data set made of several labelled sources (folders laid out like ``../shared/data``).

A *source* is one folder with ``yes/`` and/or ``no/`` (one class alone is fine: IXI has only
healthy slices) and an optional ``metadata.csv`` with a row per image: ``file`` (relative to the
folder), ``label`` and ``group`` (the patient), and where known ``plane``, ``slice``, ``seq``,
``mask_px``. Expert tumour masks, where a source has them, lie in ``masks/NAME.png`` beside
``yes/NAME.jpg``.

Defaults and rules:

- The *family* of a source is its folder name up to the first ``_`` (``lgg_flair``, ``lgg_t1c``
  and ``lgg_t1pre`` are family ``lgg``): the unit that leave-one-source-out holds out, and the
  namespace of its groups, so one patient's FLAIR and T1 slices share a group and never straddle
  a split. A sources file (TOML, :func:`read_sources_file`) may name the family explicitly.
- Groups come from ``metadata.csv``'s ``group`` column; a source without one (Br35H) is grouped by
  near-duplicate hashing (:func:`bt_core.data.splits.near_duplicate_groups`), within itself.
- Images are decoded at 240 px and cached per folder (:func:`bt_core.data.folders.load_folder`);
  masks at :data:`MASK_SIZE` px (:func:`load_masks`).
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bt_core.config import DEFAULT_MAX_DISTANCE
from bt_core.data import folders, images
from bt_core.data.prepare import DEFAULT_SIZE
from bt_core.errors import DataError

META_FILE = "metadata.csv"
MASK_DIR = "masks"
MASK_SIZE = 60  # masks are kept at 60 x 60 (fraction of tumour per cell, 0..255)
META_COLUMNS = ("plane", "slice", "seq", "mask_px", "fg_frac")


@dataclass(frozen=True)
class SourceSpec:
    """One labelled source: a folder, its name and its family."""

    path: str
    name: str = ""
    family: str = ""

    def resolved(self) -> "SourceSpec":
        p = Path(self.path)
        name = self.name or (p.stem if p.suffix == ".npz" else p.resolve().name)
        return SourceSpec(str(p), name, self.family or family_of(name))


def family_of(name: str) -> str:
    """The family of a source named ``name``: its name up to the first underscore."""
    return name.split("_")[0] or name


def read_sources_file(path: str | os.PathLike) -> list[SourceSpec]:
    """A TOML file of ``[[source]]`` tables with ``path`` (relative to the file), and optional ``name``
    and ``family``."""
    import tomllib

    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read sources file {path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise DataError(f"{path.name} is not valid TOML: {err}") from None
    rows = spec.get("source")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "path" in r for r in rows):
        raise DataError(f"{path.name}: expected [[source]] tables, each with a path")
    return [SourceSpec(str((path.parent / r["path"]).resolve()), str(r.get("name", "")), str(r.get("family", "")))
            for r in rows]


def specs_from(paths: Sequence[str] = (), sources_file: str | None = None) -> list[SourceSpec]:
    """Sources from repeated ``--data`` options and/or a sources file; names must be unique."""
    specs = [SourceSpec(p).resolved() for p in paths]
    if sources_file:
        specs += [s.resolved() for s in read_sources_file(sources_file)]
    if not specs:
        raise DataError("no data given: pass --data FOLDER (repeat it for several sources) or --sources FILE")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise DataError(f"two sources share a name: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    return specs


def read_metadata(root: Path) -> dict[str, dict]:
    """``metadata.csv`` of a source as {file: row}, or {} when it has none."""
    path = Path(root) / META_FILE
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if rows and "file" not in rows[0]:
        raise DataError(f"{path} has no 'file' column")
    return {r["file"]: r for r in rows}


def load_sources(specs: Sequence[SourceSpec | str], size: int = DEFAULT_SIZE, classes=folders.DEFAULT_CLASSES,
                 cache_dir=None, max_distance: int = DEFAULT_MAX_DISTANCE,
                 progress: Callable[[str, int, int], None] | None = None) -> folders.Dataset:
    """Decode every source and join them into one :class:`~bt_core.data.folders.Dataset`.

    The result carries ``source`` (index per image), ``source_names``, ``families``, ``groups``
    (``"family:group"`` strings) and ``meta`` (the known metadata columns). Paths are
    ``"<source name>/<file>"``. A single source keeps its own root and fingerprint.
    """
    specs = [SourceSpec(s).resolved() if isinstance(s, str) else s.resolved() for s in specs]
    parts = []
    for k, spec in enumerate(specs):
        cb = (lambda i, n, name=spec.name: progress(name, i, n)) if progress else None
        ds = folders.load_folder(spec.path, size, classes, cache_dir, cb, both=False)
        rows = read_metadata(Path(ds.root)) if Path(ds.root).is_dir() else {}
        parts.append((spec, ds, _groups(spec, ds, rows, max_distance), rows))
    paths, meta = [], {c: [] for c in META_COLUMNS}
    for spec, ds, _, rows in parts:
        paths += [f"{spec.name}/{p}" for p in ds.paths]
        for p in ds.paths:
            row = rows.get(p, {})
            for c in META_COLUMNS:
                meta[c].append(row.get(c, ""))
    one = len(parts) == 1
    fp = parts[0][1].fingerprint if one else hashlib.sha256(
        "|".join(f"{s.name}:{s.family}:{d.fingerprint}" for s, d, *_ in parts).encode()).hexdigest()[:24]
    return folders.Dataset(
        images=np.concatenate([d.images for _, d, *_ in parts]), labels=np.concatenate([d.labels for _, d, *_ in parts]),
        paths=paths if not one else parts[0][1].paths, root=parts[0][1].root if one else ";".join(d.root for _, d, *_ in parts),
        classes=tuple(classes), skipped=[f"{s.name}: {m}" for s, d, *_ in parts for m in d.skipped], fingerprint=fp,
        source=np.concatenate([np.full(len(d), k, np.int64) for k, (_, d, *_) in enumerate(parts)]),
        source_names=[s.name for s, *_ in parts], families=[s.family for s, *_ in parts],
        groups=np.concatenate([g for _, _, g, _ in parts]), meta={c: v for c, v in meta.items() if any(v)})


def _groups(spec: SourceSpec, ds: folders.Dataset, rows: dict, max_distance: int) -> np.ndarray:
    """``"family:group"`` of every image: metadata's ``group`` where it has one, else near-duplicate groups."""
    if rows and all(rows.get(p, {}).get("group") for p in ds.paths):
        return np.asarray([f"{spec.family}:{rows[p]['group']}" for p in ds.paths])
    from bt_core.data.splits import near_duplicate_groups

    dup = near_duplicate_groups(ds.images, max_distance=max_distance)
    return np.asarray([f"{spec.family}:{spec.name}-dup{g}" for g in dup])


def group_ids(ds: folders.Dataset) -> np.ndarray | None:
    """Integer group ids (N,) from the data set's group strings, or None when it has none."""
    if ds.groups is None:
        return None
    return np.unique(np.asarray(ds.groups), return_inverse=True)[1].astype(np.int64)


def volume_positions(groups, slices) -> np.ndarray:
    """(N,) float: each slice's place in its group's volume, 0 (lowest slice number) to 1 (highest); NaN where
    its group or slice number is missing (``None`` or blank) or its group spans one slice number only."""
    num = np.asarray([float(v) if v is not None and str(v).strip() else np.nan for v in slices])
    groups = np.asarray([g if g is not None else "" for g in groups], dtype=object)
    out = np.full(len(num), np.nan)
    for g in set(groups.tolist()) - {""}:
        sel = (groups == g) & np.isfinite(num)
        if sel.sum() > 1 and np.ptp(num[sel]) > 0:
            out[sel] = (num[sel] - num[sel].min()) / np.ptp(num[sel])
    return out


def slice_positions(ds: folders.Dataset) -> np.ndarray:
    """:func:`volume_positions` of a data set's images (its patients' groups and metadata's ``slice``); all NaN
    without them (Br35H)."""
    if ds.groups is None or not ds.meta.get("slice"):
        return np.full(len(ds), np.nan)
    return volume_positions(ds.groups, ds.meta["slice"])


def subset(ds: folders.Dataset, idx) -> folders.Dataset:
    """The images ``idx`` of a data set, with their sources, groups and metadata."""
    idx = np.asarray(idx, np.int64)
    return folders.Dataset(ds.images[idx], ds.labels[idx], [ds.paths[i] for i in idx], ds.root, ds.classes, [],
                           f"{ds.fingerprint}-sub{hashlib.sha1(idx.tobytes()).hexdigest()[:10]}",
                           ds.source[idx] if ds.source is not None else None, list(ds.source_names),
                           list(ds.families), ds.groups[idx] if ds.groups is not None else None,
                           {c: [v[i] for i in idx] for c, v in ds.meta.items()})


def load_masks(ds: folders.Dataset, specs: Sequence[SourceSpec], size: int = MASK_SIZE):
    """Expert tumour masks of a multi-source data set -> (masks (N, size, size) uint8 tumour fraction
    0..255, has_mask (N,) bool). An image has a mask when its source holds ``masks/NAME.png`` for it;
    a ``no`` image of a source with masks has an empty one (it holds no tumour)."""
    specs = [s.resolved() for s in specs]
    by_name = {s.name: Path(s.path) for s in specs}
    masks = np.zeros((len(ds), size, size), np.uint8)
    has = np.zeros(len(ds), bool)
    for i, (p, lab) in enumerate(zip(ds.paths, ds.labels)):
        name, rel = p.split("/", 1) if ds.source is not None and len(specs) > 1 else (specs[0].name, p)
        root = by_name.get(name)
        if root is None or not (root / MASK_DIR).is_dir():
            continue
        if lab == 0:
            has[i] = True
            continue
        f = root / MASK_DIR / (Path(rel).stem + ".png")
        if f.is_file():
            try:
                m = images.load_image(f, name=f.name).pixels
            except images.ImageError:
                continue
            masks[i] = np.asarray(images.to_model_input((m > 127).astype(np.float32) * 255, size)[..., 0], np.uint8)
            has[i] = True
    return masks, has
