"""A scan as opened: :class:`Volume` (ordered greyscale slices with labels and notes) and the size limits.

Made by :func:`bt_core.data.series.load_volume` and its readers (:mod:`bt_core.data.dicom_series`,
:mod:`bt_core.data.nifti`); scored by :mod:`bt_core.serving.volume`.

Defaults: files up to ``MAX_FILE_BYTES`` (256 MiB; single DICOM slices keep images' 20 MiB),
``MAX_SLICES`` (2000) slices, ``MAX_VOXELS`` (64 million) voxels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_SLICES = 2000
MAX_VOXELS = 64_000_000


@dataclass
class Volume:
    """A scan: ``slices`` uint8 (H, W) in order, one ``labels`` entry each, ``kind``, ``name``, ``notes``."""
    slices: list[np.ndarray]
    labels: list[str]
    kind: str
    name: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.slices)
