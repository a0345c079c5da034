import json

import numpy as np
import pytest

from bt_core import data, runs
from bt_core.evaluation import ood, posthoc
from bt_core.models import training
from bt_core.errors import ConfigError
from bt_core.serving.inference import REASON_FEATURES, REASON_STATISTICS, Predictor


def test_mahalanobis_flags_far_points_and_threshold_is_a_held_out_quantile():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 1, (300, 20)), rng.normal(3, 1, (300, 20))])
    labels = np.repeat([0, 1], 300)
    folds = [(np.setdiff1d(np.arange(600), va), va) for va in np.array_split(rng.permutation(600), 3)]
    thr, scores = ood.held_out_threshold(feats, labels, folds, quantile=0.95, n_components=10)
    assert np.mean(scores > thr) == pytest.approx(0.05, abs=0.01)
    det = ood.OODDetector(10, thr).fit(feats, labels)
    fresh = np.concatenate([rng.normal(0, 1, (200, 20)), rng.normal(3, 1, (200, 20))])
    assert det.flags(fresh).mean() < 0.12
    far = rng.normal(0, 1, (50, 20)) + 12
    assert det.flags(far).all()


def test_detector_round_trips_through_disk(tmp_path):
    rng = np.random.default_rng(1)
    det = ood.OODDetector(5, 3.5).fit(rng.normal(size=(100, 8)))
    det.save(tmp_path)
    again = ood.OODDetector.load(tmp_path)
    x = rng.normal(size=(7, 8))
    np.testing.assert_allclose(again.score(x), det.score(x))
    assert again.threshold == 3.5


def test_calibrate_adds_temperature_threshold_and_ood_to_a_cv_run(tiny_folder, tmp_path):
    ds = data.load_folder(tiny_folder, size=64)
    cfg = training.TrainConfig(model="compact_cnn", epochs=3, batch_size=8, folds=2, split="random",
                               image_size=64, lr=1e-3)
    model, record = training.run_protocol(cfg, ds, "cv")
    folder = runs.save_run(record, model, tmp_path / "runs")
    out = posthoc.calibrate(folder, progress=lambda *a: None)
    assert 0.05 <= out["calibration"]["temperature"] <= 20
    assert 0 <= out["operating_point"]["threshold"] <= 1
    assert out["ood"]["test_n"] == len(record["split"]["test_idx"])
    saved = json.loads((folder / "run.json").read_text())
    assert saved["ood"]["layer"] == "fc" and (folder / "ood.npz").is_file()
    assert 0 < saved["calibrate_wall_time_s"] == out["calibrate_wall_time_s"] < 600  # the bench reads it
    pred = Predictor(folder)
    assert pred.ood is not None and pred.threshold == pytest.approx(out["operating_point"]["threshold"])
    noise = np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8)
    ans = pred.answer([ds.images[0], noise], ["slice", "noise"])
    assert [a.name for a in ans] == ["slice", "noise"] and all(0 <= a.prob <= 1 for a in ans)
    assert all(a.ood_score is not None for a in ans)
    assert ans[1].ood and ans[1].decision.startswith("unlike")
    assert ans[1].reason in (REASON_FEATURES, REASON_STATISTICS) and ans[1].to_dict()["reason"] == ans[1].reason
    assert all((a.reason is None) == (not a.ood) for a in ans)


def test_calibrate_refuses_a_run_without_folds(tiny_folder, tmp_path):
    ds = data.load_folder(tiny_folder, size=64)
    cfg = training.TrainConfig(model="compact_cnn", epochs=1, batch_size=8, image_size=64, split="random")
    model, record = training.run_protocol(cfg, ds, "train")
    folder = runs.save_run(record, model, tmp_path / "runs")
    with pytest.raises(ConfigError, match="cross-validated"):
        posthoc.calibrate(folder)


def test_image_statistics_in_chunks_equal_one_pass():
    """Chunking bounds memory (a whole 240 px data set at once took 17 GB) without changing a number."""
    from bt_core.evaluation import ood

    x = (np.random.default_rng(0).random((70, 32, 32)) * 255).astype(np.uint8)
    x[:5] = 0  # blank slices too
    np.testing.assert_array_equal(ood.image_statistics(x, chunk=16), ood.image_statistics(x, chunk=1000))
