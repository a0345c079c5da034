"""A data set packed into one .npz of JPEG bytes (bt_core.data.pack, tools/pack_data.py) reads back as the folder did."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bt_core import data
from bt_core.models import training
from bt_core.errors import DataError

REPO = Path(__file__).resolve().parent.parent


def test_packed_file_reads_back_as_the_folder(tiny_folder, tmp_path):
    ds = data.load_folder(tiny_folder, size=48)
    out = data.pack(ds, tmp_path / "packed" / "tiny.npz")
    again = data.load_folder(out, size=48)  # load_folder takes the file in place of the folder
    assert again.paths == ds.paths and again.labels.tolist() == ds.labels.tolist() and again.classes == ds.classes
    assert again.images.shape == ds.images.shape and again.images.dtype == np.uint8
    assert np.abs(again.images.astype(int) - ds.images).mean() < 3  # JPEG quality 90
    assert again.fingerprint and again.fingerprint != ds.fingerprint  # re-encoded pixels: another data set
    assert data.load_packed(out, 48).fingerprint == again.fingerprint and again.root == str(out.resolve())
    cached = data.default_cache_dir() / f"{again.fingerprint}-48.npz"  # decoded once, then read from the cache
    assert cached.is_file()
    np.testing.assert_array_equal(data.load_packed(out, 48).images, again.images)
    assert data.load_packed(out, 32).images.shape[1:] == (32, 32)
    _, record = training.run_protocol(training.TrainConfig(model="compact_cnn", epochs=1, batch_size=8, folds=2,
                                                           split="random", image_size=48, head_pool=4), again, "train")
    assert record["data"]["root"] == str(out.resolve()) and record["test"]["metrics"]["n"] > 0


def test_bad_packed_files_are_one_line_data_errors(tiny_folder, tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a packed data set") as err:
        data.load_folder(junk)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.npz"
    np.savez(other, images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="not a packed data set"):
        data.load_packed(other)
    ds = data.load_folder(tiny_folder, size=48)
    with pytest.raises(DataError, match="quality"):
        data.pack(ds, tmp_path / "x.npz", quality=0)
    with pytest.raises(DataError, match=".npz"):
        data.pack(ds, tmp_path / "x.zip")


def test_pack_tool_writes_the_file_and_refuses_a_wrong_folder(tiny_folder, tmp_path):
    tool = [sys.executable, str(REPO / "tools" / "pack_data.py")]
    env = {"BT_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([*tool, "--data", str(tiny_folder), "--out", str(tmp_path / "p.npz"), "--size", "48"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "packed 24 images (0 skipped)" in ok.stdout
    assert len(data.load_packed(tmp_path / "p.npz", 48)) == 24
    bad = subprocess.run([*tool, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "q.npz")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: data folder not found")
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "q.npz").exists()
