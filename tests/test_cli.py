"""The command line: one line on stderr and exit 2 for every bad input, JSON for good ones."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bt_core import data, runs
from bt_core.models import training
from bt_core.cli import main
from test_images import bomb_png, dicom
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

ROOT = Path(__file__).resolve().parent.parent


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG")
    return buf.getvalue()


def bad_inputs(tmp: Path) -> dict[str, Path]:
    grey = np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8)
    files = {
        "empty.png": b"",
        "noimage.jpg": b"this is not an image at all",
        "truncated.jpg": _jpeg(grey)[:300],
        "bomb.png": bomb_png(12000),
        "huge.png": bomb_png(20000),
        "nopixels.dcm": dicom(np.zeros((4, 4), np.uint16), pixel_data=False),
        "j2k.dcm": dicom(np.zeros((16, 16), np.uint16), ts=JPEG2000Lossless,
                         pixel_data=encapsulate([b"\xff\x4f\xff\x51" + bytes(200)])),
        "odd name; rm -rf ~ $(x).png": b"garbage",
    }
    out = {}
    for name, blob in files.items():
        (tmp / name).write_bytes(blob)
        out[name] = tmp / name
    big = tmp / "over_limit.png"
    with open(big, "wb") as fh:  # a valid PNG header followed by 21 MB
        fh.write(_png(grey))
        fh.write(b"\0" * (21 * 1024 * 1024))
    out["over_limit.png"] = big
    return out


def _run(*args):
    return subprocess.run([sys.executable, "-m", "bt_core", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_predict_exits_2_with_one_stderr_line_for_each_bad_input(tmp_path):
    files = bad_inputs(tmp_path)
    proc = _run("predict", *map(str, files.values()), "--json")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(files), proc.stderr
    assert all(line.startswith("error: ") for line in lines)
    assert "Traceback" not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["results"] == [] and len(out["errors"]) == len(files)
    # one at a time, as a user would run it
    for name, path in list(files.items())[:3]:
        single = _run("predict", str(path))
        assert single.returncode == 2 and len(single.stderr.strip().splitlines()) == 1, name


@pytest.mark.parametrize("argv, words", [
    (["audit", "--data", "/no/such/folder"], "data folder not found"),
    (["evaluate", "--data", "/no/such/folder", "--model", "/no/run"], "no run found"),
    (["train", "--data", ".", "--epochs", "0"], "epochs"),
    (["train", "--data", ".", "--position-strength", "0.5"], "position strength needs --balance position"),
])
def test_bad_folders_and_options_are_one_line_errors(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


@pytest.mark.parametrize("command", ["loso", "cv"])
def test_lite1_without_its_weights_is_one_line_before_any_data_is_read(command, capsys, monkeypatch, tmp_path):
    from bt_core import config

    monkeypatch.setattr(config, "lite_weights_path", lambda variant="lite0": tmp_path / f"{variant}.h5")
    argv = [command, "--data", "/no/such/folder", "--model", "patch", "--image-size", "64",
            "--backbone", "efficientnet_lite1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "convert_lite.py --variant lite1" in err[0]  # not "data folder not found"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import make_folder

    folder = make_folder(tmp_path_factory.mktemp("data"), n_per_class=12, size=64)
    ds = data.load_folder(folder, size=64)
    cfg = training.TrainConfig(model="compact_cnn", epochs=2, batch_size=8, split="random", image_size=64, lr=1e-3)
    model, record = training.run_protocol(cfg, ds, "train")
    return folder, runs.save_run(record, model, tmp_path_factory.mktemp("runs"))


def test_evaluate_json_on_a_labelled_folder(tiny_run, capsys):
    folder, run = tiny_run
    assert main(["evaluate", "--data", str(folder), "--model", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 24 and {"accuracy", "sensitivity", "specificity", "auc", "ood_flagged"} <= set(out)
    assert 0 <= out["accuracy"] <= 1


def test_predict_mixed_batch_answers_good_files_and_lists_bad_ones(tiny_run, tmp_path, capsys):
    folder, run = tiny_run
    good = sorted((folder / "yes").iterdir())[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 nope")
    code = main(["predict", str(good), str(bad), "--model", str(run), "--json", "--gradcam", str(tmp_path / "cam")])
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and len(out["results"]) == 1 and len(out["errors"]) == 1
    r = out["results"][0]
    assert 0 <= r["prob"] <= 1 and r["decision"] in ("tumour", "no tumour") and "not a diagnosis" in out["disclaimer"]
    assert (tmp_path / "cam" / f"{good.stem}_gradcam.png").stat().st_size > 100
    assert out["unseen_sources"] is None  # no leave-one-source-out run of this recipe anywhere


def test_predict_says_what_the_recipe_met_on_unseen_sources_at_the_threshold_used(tiny_run, tmp_path, capsys,
                                                                                   monkeypatch):
    from bt_core.evaluation import held_out

    folder, run = tiny_run
    config = json.loads((run / "run.json").read_text())["config"]
    held = {"ixi": {"y": [0, 0, 0, 0], "prob": [0.1, 0.3, 0.5, 0.7], "source": ["ixi_t1"] * 4}}
    runs.save_run({"mode": "loso", "config": config, "held_out": held}, None, tmp_path / "ev", run_id="r-loso")
    monkeypatch.setattr(held_out, "REPORTS_RUNS", tmp_path / "ev")
    good = sorted((folder / "no").iterdir())[0]
    assert main(["predict", str(good), "--model", str(run), "--json", "--threshold", "0.4"]) == 0
    said = json.loads(capsys.readouterr().out)["unseen_sources"]
    assert said.startswith("on 1 source it never saw (leave-one-source-out run `r-loso`, at threshold 0.40")
    assert "right on 50 to 50% of their slices, cleared 50 to 50% of healthy slices" in said
    assert main(["predict", str(good), "--model", str(run), "--threshold", "0.6"]) == 0
    text = capsys.readouterr().out
    assert "This model's answers, on 1 source it never saw" in text and "cleared 75 to 75%" in text
    assert "(75% right).\n" in text and ".." not in text  # one full stop


def test_the_group_split_does_not_depend_on_the_models_input_size(tmp_path, capsys, monkeypatch):
    """Two models of different input sizes trained on one folder are tested on the same images:
    images are decoded (and hashed into near-duplicate groups) at the canonical size."""
    from conftest import make_folder

    sizes, real = [], data.load_folder
    monkeypatch.setattr(data, "load_folder", lambda root, size=240, *a, **k: sizes.append(size) or real(root, size, *a, **k))
    folder = make_folder(tmp_path / "data", n_per_class=15, size=96)
    for size in ("64", "96"):
        assert main(["train", "--data", str(folder), "--model", "compact_cnn", "--image-size", size, "--epochs", "1",
                     "--out", str(tmp_path / "runs"), "--label", size]) == 0
    recs = [runs.load_run(r["dir"]) for r in runs.list_runs(tmp_path / "runs")]
    assert {r["config"]["image_size"] for r in recs} == {64, 96}
    assert recs[0]["split"]["test_idx"] == recs[1]["split"]["test_idx"]
    assert recs[0]["split"]["groups"] == recs[1]["split"]["groups"]
    assert sizes == [data.DEFAULT_SIZE, data.DEFAULT_SIZE]
    by_size = {r["config"]["image_size"]: r for r in recs}
    assert by_size[64]["command"] == (f"python -m bt_core train --data {folder} --model compact_cnn --image-size 64 "
                                      f"--epochs 1 --out {tmp_path / 'runs'} --label 64")  # the run says how to redo it
