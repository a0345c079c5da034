"""Data and sources: decoding image files, reading labelled folders, splits, degradations, input preparation.

- :mod:`~bt_core.data.images`: safe decoding of one file (JPEG, PNG, DICOM, ...) to greyscale.
- :mod:`~bt_core.data.series`: a whole scan (DICOM series, multi-frame DICOM, NIfTI) as ordered greyscale
  slices; the readers in :mod:`~bt_core.data.dicom_series` and :mod:`~bt_core.data.nifti`, the
  :class:`~bt_core.data.volume.Volume` type and its limits in :mod:`~bt_core.data.volume`.
- :mod:`~bt_core.data.sources`: several labelled sources, patient groups across folders, expert masks.
- :mod:`~bt_core.data.folders`: a two-class folder (``no/``, ``yes/``) decoded once and cached; packed files.
- :mod:`~bt_core.data.archive`: an uploaded zip of labelled slices, read safely in memory.
- :mod:`~bt_core.data.prepare`: decoded images -> model input (resize, normalise, batch), for training
  and inference alike.
- :mod:`~bt_core.data.splits`: splitters that return index arrays (random, group-aware).
- :mod:`~bt_core.data.degrade`, :mod:`~bt_core.data.augment`: degradations that imitate other scanners,
  augmented views for training (both through ``degrade.seeded_copies``).
- :mod:`~bt_core.data.lesions`: synthetic tumour-like lesions with exact masks, drawn into no-tumour views.

The names most callers need are re-exported here (``bt_core.data.load_folder``, ``bt_core.data.as_batch``).
"""
from bt_core.data.folders import (CACHE_VERSION, DEFAULT_CLASSES, IMAGE_EXTENSIONS, PACK_VERSION,  # noqa: F401
                                  Dataset, default_cache_dir, list_folder, load_folder, load_packed, pack,
                                  save_cache)
from bt_core.data.prepare import DEFAULT_SIZE, as_batch, at_size, normalize, resize  # noqa: F401
