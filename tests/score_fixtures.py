"""Fixtures for the "Score your data" tests: a one-run registry trained in seconds, and generated zips.

:func:`build_score_registry` trains a compact CNN for one epoch on a generated two-class folder (48 px),
saves it and lists it as the shipped ``cnn`` in ``shipped.json`` (lighter than tests/app_fixtures.py's
two cross-validated runs). :func:`labelled_zip` zips generated slices in ``yes/`` and ``no/`` folders.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from bt_core import data, runs
from bt_core.models import training

from conftest import blob_image, make_folder

RUN_ID = "tiny-score-cnn"


def build_score_registry(root: Path, work: Path) -> Path:
    folder = make_folder(work / "data", n_per_class=8, size=48, seed=4)
    ds = data.load_folder(folder, size=48, cache_dir=work / "cache")
    cfg = training.TrainConfig(model="compact_cnn", epochs=1, batch_size=8, split="random", image_size=48, lr=1e-3)
    model, record = training.run_protocol(cfg, ds, "train")
    record["label"] = "Tiny CNN"
    runs.save_run(record, model, root, run_id=RUN_ID)
    (root / "shipped.json").write_text(json.dumps({"cnn": RUN_ID}))
    return root


def png(seed: int, tumour: bool, size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(blob_image(np.random.default_rng(seed), size, tumour)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in entries.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def labelled_zip(n: int = 4, classes=("no", "yes"), prefix: str = "mine/", extra: dict | None = None) -> bytes:
    entries = {f"{prefix}{cls}/{cls}{i}.png": png(100 * k + i, cls == "yes") for k, cls in enumerate(classes)
               for i in range(n)}
    return make_zip({**entries, **(extra or {})})
