"""The LiteRT answer path: export checked against Keras, used only when current, Keras otherwise."""
import json

import numpy as np
import pytest

from bt_core import data, runs
from bt_core.errors import ModelError
from bt_core.evaluation import posthoc
from bt_core.models import training
from bt_core.serving import lite
from bt_core.serving.inference import Predictor
from conftest import make_folder

pytestmark = pytest.mark.skipif(lite.interpreter_class() is None, reason="ai-edge-litert not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("lite")
    ds = data.load_folder(make_folder(root / "data"), size=64, cache_dir=root / "cache")
    cfg = training.TrainConfig(model="compact_cnn", epochs=2, batch_size=8, folds=2, split="random",
                               image_size=64, lr=1e-3)
    model, record = training.run_protocol(cfg, ds, "cv")
    folder = runs.save_run(record, model, root / "runs")
    posthoc.calibrate(folder, progress=lambda *a: None)
    info = lite.export(folder)
    return folder, info, ds


def test_export_writes_a_checked_file_and_records_it(exported):
    folder, info, _ = exported
    assert (folder / lite.LITE_FILE).is_file() and not list(folder.glob(".tmp-*"))
    saved = json.loads((folder / runs.RUN_FILE).read_text())["lite"]
    assert saved == info and saved["features"] == "fc"
    assert saved["model_sha256"] == lite.file_sha256(folder / runs.MODEL_FILE)
    assert saved["max_prob_diff"] <= lite.PROB_TOLERANCE


def test_litert_answers_match_keras_and_need_no_keras_model(exported):
    folder, _, ds = exported
    fast, slow = Predictor(folder, lazy=True), Predictor(folder, engine="keras", background=False)
    assert fast.engine == "litert" and slow.engine == "keras"
    noise = np.random.default_rng(3).integers(0, 255, (80, 70)).astype(np.uint8)
    imgs = [ds.images[0], ds.images[-1], noise]
    a, b = fast.answer(imgs), slow.answer(imgs)
    assert "model" not in fast.__dict__  # answered without loading the Keras model
    for x, y in zip(a, b):
        assert x.prob == pytest.approx(y.prob, abs=1e-4) and x.decision == y.decision
        assert x.ood_score == pytest.approx(y.ood_score, rel=1e-3) and x.reason == y.reason
    np.testing.assert_allclose(fast.probabilities(fast.batch(imgs)), slow.probabilities(slow.batch(imgs)), atol=1e-4)
    heat = fast.explain(imgs[:1])  # heatmaps load the Keras model on demand
    assert heat.shape == (1, 64, 64) and "model" in fast.__dict__


def test_a_stale_or_unusable_export_falls_back_to_keras(exported, monkeypatch):
    folder, info, _ = exported
    record = runs.load_run(folder)
    assert lite.for_run(record) is not None
    assert lite.for_run({**record, "lite": {**info, "model_sha256": "0" * 64}}) is None  # model replaced
    assert lite.for_run({**record, "lite": {**info, "file": "missing.tflite"}}) is None
    assert lite.for_run({k: v for k, v in record.items() if k != "lite"}) is None
    monkeypatch.setattr(lite, "interpreter_class", lambda: None)
    assert lite.for_run(record) is None and Predictor(folder, background=False).engine == "keras"


def test_a_broken_file_is_a_model_error_and_an_export_that_disagrees_is_not_kept(exported, tmp_path, monkeypatch):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match="not a readable LiteRT model"):
        lite.LiteAnswer(bad)
    folder, info, _ = exported
    before = (folder / lite.LITE_FILE).read_bytes()
    monkeypatch.setattr(lite, "PROB_TOLERANCE", -1.0)
    with pytest.raises(ModelError, match="differs from the Keras model"):
        lite.export(folder)
    assert (folder / lite.LITE_FILE).read_bytes() == before and not list(folder.glob(".tmp-*"))
    assert json.loads((folder / runs.RUN_FILE).read_text())["lite"] == info


def test_predictor_rejects_an_unknown_engine(exported):
    with pytest.raises(ValueError, match="engine"):
        Predictor(exported[0], engine="onnx")
