"""``python -m bt_core evaluate``: one class alone, several --data sources, strict JSON."""
import json
import math
import shutil

import pytest

from bt_core import data, runs
from bt_core.cli import main
from bt_core.models import training
from conftest import make_folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A compact CNN trained for one epoch on a generated folder, and that folder."""
    folder = make_folder(tmp_path_factory.mktemp("data") / "both", n_per_class=8, size=48)
    ds = data.load_folder(folder, size=48, cache_dir=tmp_path_factory.mktemp("cache"))
    cfg = training.TrainConfig(model="compact_cnn", epochs=1, batch_size=8, split="random", image_size=48, lr=1e-3)
    model, record = training.run_protocol(cfg, ds, "train")
    return folder, runs.save_run(record, model, tmp_path_factory.mktemp("runs"))


def one_class(src, dst, cls):
    (dst / cls).mkdir(parents=True)
    for f in (src / cls).iterdir():
        shutil.copy(f, dst / cls / f.name)
    return dst


def evaluate(capsys, *argv):
    code = main(["evaluate", *argv])
    captured = capsys.readouterr()
    return code, captured


def test_only_no_folder_gives_specificity_and_accuracy_and_no_auc(tiny, tmp_path, capsys):
    folder, run = tiny
    healthy = one_class(folder, tmp_path / "healthy", "no")
    code, cap = evaluate(capsys, "--data", str(healthy), "--model", str(run), "--json")
    assert code == 0 and cap.err == "", cap.err
    out = json.loads(cap.out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert out["n"] == 8 and out["classes"] == "no" and out["shown"] == ["accuracy", "specificity"]
    assert out["accuracy"] == out["specificity"] and out["sensitivity"] is None and out["auc"] is None
    assert out["ci"]["specificity"]["low"] <= out["specificity"] <= out["ci"]["specificity"]["high"]
    assert {"accuracy", "sensitivity", "specificity", "auc", "n", "ood_flagged"} <= set(out)
    assert list(out["per_source"]) == ["healthy"] and out["per_source"]["healthy"]["n"] == 8
    code, cap = evaluate(capsys, "--data", str(healthy), "--model", str(run))  # the text form says the same
    assert code == 0 and "specificity" in cap.out and "auc" not in cap.out and "sensitivity" not in cap.out


def test_several_sources_give_overall_and_per_source_metrics(tiny, tmp_path, capsys):
    folder, run = tiny
    tumours = one_class(folder, tmp_path / "tumours", "yes")
    code, cap = evaluate(capsys, "--data", str(folder), "--data", str(tumours), "--model", str(run), "--json")
    assert code == 0, cap.err
    out = json.loads(cap.out)
    assert out["n"] == 24 and out["classes"] == "both" and not math.isnan(out["auc"])
    assert set(out["per_source"]) == {"both", "tumours"}
    per = out["per_source"]
    assert per["tumours"]["n"] == 8 and per["tumours"]["shown"] == ["accuracy", "sensitivity"]
    assert per["tumours"]["specificity"] is None and per["both"]["auc"] is not None
    assert per["both"]["tp"] + per["tumours"]["tp"] == out["tp"]


def test_a_folder_without_class_folders_is_one_line_error(tiny, tmp_path, capsys):
    _, run = tiny
    (tmp_path / "empty").mkdir()
    code, cap = evaluate(capsys, "--data", str(tmp_path / "empty"), "--model", str(run), "--json")
    lines = cap.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
