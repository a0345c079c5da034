"""The command line starts quietly: no TensorFlow / absl start-up lines on stderr, only bt_core's own errors.

Run as a user would, in a fresh process whose environment has no ``TF_CPP_MIN_LOG_LEVEL`` (tests/conftest.py
sets one for the test process itself), on a tiny saved run.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bt_core import data, runs
from bt_core.models import training
from conftest import blob_image, make_folder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("data"), n_per_class=6, size=48)
    ds = data.load_folder(folder, size=48, cache_dir=tmp_path_factory.mktemp("cache"))
    cfg = training.TrainConfig(model="compact_cnn", epochs=1, batch_size=8, split="random", image_size=48)
    model, record = training.run_protocol(cfg, ds, "train")
    return runs.save_run(record, model, tmp_path_factory.mktemp("runs"))


def predict(*args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP_", "TF_ENABLE_ONEDNN"))}
    return subprocess.run([sys.executable, "-m", "bt_core", "predict", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env={**env, "BT_CACHE_DIR": str(cwd / "cache")}, timeout=180)


def test_predict_prints_nothing_on_stderr_on_success_and_only_its_own_line_for_a_bad_file(tiny_run, tmp_path):
    scan = tmp_path / "scan.png"
    Image.fromarray(blob_image(np.random.default_rng(0), 64, tumour=True)).save(scan)
    ok = predict(scan, "--model", tiny_run, "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    assert json.loads(ok.stdout)["results"][0]["name"] == "scan.png"

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    mixed = predict(scan, bad, "--model", tiny_run, cwd=tmp_path)
    assert mixed.returncode == 2
    lines = mixed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: broken.png: "), mixed.stderr
    assert "scan.png: tumour probability" in mixed.stdout
