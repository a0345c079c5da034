"""Breakdowns: a run's predictions on several sources split by what might explain them.

- :func:`rows_by_family`: the predictions of a run record (held-out or test part) grouped by source
  family, each with its source's ``metadata.csv`` row (``../shared/data`` layout);
- :func:`shortcut_splits`: accuracy split by what a shortcut would use (``../shared/data/README.md``):
  the slice's position in its volume (LGG: no-tumour slices crowd the top and bottom quarters), the
  plane (IXI's ``plane`` column) and the sequence (BraTS's ``seq`` column);
- :func:`size_splits`: sensitivity by the expert mask's size in the source's own pixels (``mask_px``,
  :data:`SIZE_BINS`).

Each returns plain rows (dicts) for a report to format; threshold 0.5 unless given.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE_BINS = ((0, 300), (300, 1000), (1000, 3000), (3000, None))  # tumour pixels in the source's own slice
EDGE, MIDDLE = "top or bottom quarter", "middle half"

Row = tuple  # (label, probability, source name, metadata row dict)


def rows_by_family(rec: dict, idx, y, prob, source) -> dict[str, list[Row]]:
    """The images ``idx`` of run record ``rec`` grouped by source family: (label, probability, source,
    metadata row) of each; an image whose source has no ``metadata.csv`` (or is not on this machine) gets an
    empty metadata row."""
    from bt_core.data.sources import read_metadata

    meta = {s["name"]: read_metadata(Path(s["root"])) for s in rec["data"]["sources"] if Path(s["root"]).is_dir()}
    family = {s["name"]: s.get("family") or s["name"].split("_", 1)[0] for s in rec["data"]["sources"]}
    paths, out = rec["data"]["paths"], {}
    for i, yy, p, s in zip(idx, y, prob, source):
        rel = paths[i].split("/", 1)[1] if "/" in paths[i] else paths[i]
        out.setdefault(family.get(s, s), []).append((yy, p, s, meta.get(s, {}).get(rel, {})))
    return out


def _accuracy(sel, threshold):
    y, p = map(np.asarray, zip(*sel))
    return float(((p >= threshold) == y).mean())


def position_of(rows: list[Row]) -> list[float | None]:
    """Each row's place in its patient's volume, 0 (first slice) to 1 (last), from ``group`` and ``slice``
    (:func:`bt_core.data.sources.volume_positions`); None where unknown."""
    from bt_core.data.sources import volume_positions

    pos = volume_positions([m.get("group") for *_, m in rows], [m.get("slice") for *_, m in rows])
    return [None if np.isnan(q) else float(q) for q in pos]


def shortcut_splits(family_rows: dict[str, list[Row]], threshold: float = 0.5) -> list[dict]:
    """[{"family", "split", "part", "n", "accuracy"}]: LGG by slice position and class, any family by plane
    and by sequence where its metadata has them."""
    out = []
    for f, rows in family_rows.items():
        if f == "lgg":
            where = position_of(rows)
            for part, inside in ((EDGE, lambda q: q < 0.25 or q > 0.75), (MIDDLE, lambda q: 0.25 <= q <= 0.75)):
                for cls, lab in (("no tumour", 0), ("tumour", 1)):
                    sel = [(y, p) for (y, p, _, _), q in zip(rows, where) if y == lab and q is not None and inside(q)]
                    if sel:
                        out.append({"family": f, "split": f"slice position, {cls}", "part": part, "n": len(sel),
                                    "accuracy": _accuracy(sel, threshold)})
        for key, label in (("plane", "plane"), ("seq", "sequence")):
            for v in sorted({m.get(key) for *_, m in rows if m.get(key)}):
                sel = [(y, p) for y, p, _, m in rows if m.get(key) == v]
                out.append({"family": f, "split": label, "part": v, "n": len(sel), "accuracy": _accuracy(sel, threshold)})
    return out


def size_splits(family_rows: dict[str, list[Row]], threshold: float = 0.5) -> list[dict]:
    """[{"source", "bin", "n", "sensitivity"}]: tumour slices with a ``mask_px`` by :data:`SIZE_BINS`."""
    out = []
    for rows in family_rows.values():
        for s in dict.fromkeys(src for *_, src, m in rows if m.get("mask_px")):
            for lo, hi in SIZE_BINS:
                pp = np.asarray([p for y, p, src, m in rows if src == s and y == 1 and m.get("mask_px")
                                 and lo <= float(m["mask_px"]) and (hi is None or float(m["mask_px"]) < hi)])
                if len(pp):
                    out.append({"source": s, "bin": f"{lo}-{hi}" if hi else f"{lo} or more", "n": len(pp),
                                "sensitivity": float((pp >= threshold).mean())})
    return out
