"""Shared fixtures: tiny generated two-class image folders (never the real data set)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image


def blob_image(rng, size=64, tumour=False):
    """A fake 'slice': a grey disc (the head) with noise; tumours add a bright blob."""
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size * 0.42) ** 2
    img = 40 + 60 * head + rng.normal(0, 8, (size, size))
    if tumour:
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = size * rng.uniform(0.07, 0.12)
        img += 150 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root, n_per_class=12, size=64, seed=0, classes=("no", "yes")):
    rng = np.random.default_rng(seed)
    for label, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(blob_image(rng, size, bool(label))).save(root / cls / f"{cls}{i}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path):
    return make_folder(tmp_path / "data")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BT_CACHE_DIR", str(tmp_path / "cache"))
