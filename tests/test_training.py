import json

import keras
import numpy as np
import pytest

from bt_core import data, runs
from bt_core.models import networks, training
from bt_core.errors import ConfigError, ModelError


def test_config_validation_gives_one_line_errors():
    with pytest.raises(ConfigError, match="epochs"):
        training.TrainConfig(epochs=0).validate()
    with pytest.raises(ConfigError, match="split"):
        training.TrainConfig(split="leaky").validate()
    cfg = training.TrainConfig(epochs=3)
    assert training.TrainConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg


@pytest.mark.parametrize("cut", ["pool", "block14_add"])
def test_training_on_cached_activations_equals_end_to_end_training(cut):
    """Frozen backbone (cut at the pooled features) or fine-tuning the top blocks (cut inside)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (24, 48, 48, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(np.float32)

    def build():
        return networks.transfer("efficientnet_lite0", weights=None, input_shape=(48, 48, 1), dropout=0.0, seed=7,
                               fine_tune_from="" if cut == "pool" else cut)

    end_to_end = networks.compile_model(build(), 1e-3, jit_compile=False)
    end_to_end.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    cached = build()
    feats, head = networks.split_at(cached, cut)
    networks.compile_model(head, 1e-3, jit_compile=False)
    head.fit(feats.predict(x, verbose=0), y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    untrained = build().predict(x, verbose=0)
    a, b = end_to_end.predict(x, verbose=0), cached.predict(x, verbose=0)
    assert np.abs(a - untrained).max() > 1e-4  # training did change the model ...
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # ... identically both ways


def test_cv_protocol_writes_a_complete_run(tiny_folder, tmp_path):
    ds = data.load_folder(tiny_folder, size=48)
    cfg = training.TrainConfig(model="compact_cnn", epochs=2, batch_size=8, folds=2, split="random",
                               image_size=48, lr=1e-3)
    events = []
    model, record = training.run_protocol(cfg, ds, "cv", events.append)
    assert len(record["folds"]) == 2
    for f in record["folds"]:
        assert set(f["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert len(f["history"]["loss"]) == 2 and 0 <= f["metrics"]["accuracy"] <= 1
    assert sorted(record["oof"]["idx"]) == sorted(record["split"]["train_idx"])
    assert len(record["test"]["prob"]) == len(record["split"]["test_idx"]) == record["test"]["metrics"]["n"]
    assert record["hardware"]["backend"] == keras.backend.backend() and record["wall_time_s"] > 0
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2] * 3
    folder = runs.save_run(record, model, tmp_path / "runs")
    again = runs.load_model(folder)
    x = data.as_batch(ds.images[:3])
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    listed = runs.list_runs(tmp_path / "runs")
    assert [r["id"] for r in listed] == [folder.name] and listed[0]["has_model"]


def test_registry_is_atomic_and_reports_broken_models(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    model = networks.build("compact_cnn", (64, 64, 1))

    def boom(*a, **k):
        raise OSError("No space left on device")

    monkeypatch.setattr(model, "save", boom)
    with pytest.raises(OSError):
        runs.save_run({"config": {"model": "compact_cnn"}, "mode": "train"}, model, root, run_id="r1")
    assert list(root.iterdir()) == []  # nothing half-written
    monkeypatch.undo()
    folder = runs.save_run({"config": {"model": "compact_cnn"}, "mode": "train"}, model, root, run_id="r2")
    (folder / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="corrupt"):
        runs.load_model(folder)
    (folder / "model.keras").unlink()
    with pytest.raises(ModelError, match="missing"):
        runs.load_model(folder)
    with pytest.raises(ModelError):
        runs.resolve("../../etc", root)
    assert json.loads((folder / "run.json").read_text())["status"] == "finished"


def test_multiscale_head_standardises_features_fitted_on_the_training_set():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 48, 48, 1)).astype(np.float32)
    y = (np.arange(16) % 2).astype(np.float32)
    cfg = training.TrainConfig(model="transfer", backbone_weights=None, image_size=48, epochs=1, batch_size=8,
                               pooling="multiscale", mirror=True)
    model, _ = training.fit(cfg, x, y)
    feats = networks.split_at_features(model)[0].predict(x, verbose=0)
    norm = model.get_layer("feature_norm")
    np.testing.assert_allclose(np.asarray(norm.mean).reshape(-1), feats.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(norm(feats)).mean(0), 0, atol=1e-3)


def test_saved_runs_hold_weights_but_no_optimizer_state(tmp_path):
    import io
    import zipfile

    import h5py

    cfg = training.TrainConfig(model="compact_cnn", image_size=48, epochs=1, batch_size=4)
    x = np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 1)).astype(np.float32)
    model, _ = training.fit(cfg, x, (np.arange(8) % 2).astype(np.float32))
    folder = runs.save_run({"config": cfg.to_dict(), "mode": "train"}, model, tmp_path, run_id="r")
    with zipfile.ZipFile(folder / runs.MODEL_FILE) as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as h:
        assert "optimizer" not in h or not list(h["optimizer"].get("vars", {}))
    np.testing.assert_allclose(runs.load_model(folder).predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_mixed_precision_builds_a_float16_model_and_leaves_the_global_policy_alone():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(np.float32)
    cfg = training.TrainConfig(model="compact_cnn", epochs=2, batch_size=8, image_size=32, head_pool=2, lr=1e-3,
                               mixed_precision=True)
    before = keras.mixed_precision.global_policy().name
    model, hist = training.fit(cfg, x, y)
    assert keras.mixed_precision.global_policy().name == before == "float32"
    assert model.get_layer("conv1").compute_dtype == "float16" and model.get_layer("conv1").variable_dtype == "float32"
    assert np.isfinite(hist["loss"]).all() and training.predict_proba(model, x).dtype == np.float64
    plain, _ = training.fit(training.TrainConfig(**{**cfg.to_dict(), "mixed_precision": False}), x, y)
    assert plain.get_layer("conv1").compute_dtype == "float32"


def test_precision_bfloat16_computes_in_bfloat16_keeps_float32_weights_and_a_float32_probability():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (16, 32, 32, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(np.float32)
    cfg = training.TrainConfig(model="compact_cnn", epochs=1, batch_size=8, image_size=32, head_pool=2, lr=1e-3,
                               precision="mixed_bfloat16").validate()
    model, hist = training.fit(cfg, x, y)
    assert keras.mixed_precision.global_policy().name == "float32"
    conv = model.get_layer("conv1")
    assert (conv.compute_dtype, conv.variable_dtype) == ("bfloat16", "float32")
    assert model.get_layer("prob").compute_dtype == "float32" and np.isfinite(hist["loss"]).all()
    assert training.TrainConfig(mixed_precision=True).dtype_policy == "mixed_float16"  # older records
    assert training.TrainConfig().dtype_policy is None
    from bt_core.cli.commands_train import _config
    from bt_core.cli.parser import build_parser

    policy = [_config(build_parser().parse_args(["cv", "--data", "d", *extra])).dtype_policy
              for extra in ([], ["--mixed-precision"], ["--precision", "mixed_bfloat16"])]
    assert policy == [None, "mixed_float16", "mixed_bfloat16"]
    with pytest.raises(ConfigError, match="precision must be one of"):
        training.TrainConfig(precision="float8").validate()
