"""FastPass: long frozen passes on LiteRT where it can, Keras otherwise, with the same numbers either way."""
import keras
import numpy as np
import pytest

from bt_core.models import fast_pass
from bt_core.models.fast_pass import FastPass
from bt_core.serving import lite

needs_litert = pytest.mark.skipif(lite.interpreter_class() is None, reason="ai-edge-litert not installed")


def _model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    return keras.Model(inp, keras.layers.Conv2D(3, 1)(x))


def _x(n=10):
    return np.random.default_rng(1).random((n, 16, 16, 1), np.float32) * 4


@needs_litert
def test_litert_pass_gives_keras_numbers_and_deletes_its_file():
    model = _model()
    x = _x()
    with FastPass(model, len(x), min_images=0) as run:
        assert run.engine == "litert" and run.why is None and run.describe() == "LiteRT"
        folder = run._dir
        assert folder.is_dir()
        got = run(x)
    assert not folder.exists()  # the exported file goes with the pass
    want = model.predict(x, verbose=0)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_a_short_pass_stays_on_keras_and_says_why(monkeypatch):
    model = _model()
    run = FastPass(model, 10)  # the default minimum: far more than 10 images
    assert run.engine == "keras" and "under" in run.describe()
    np.testing.assert_array_equal(run(_x()), model.predict(_x(), verbose=0))
    monkeypatch.setattr(fast_pass, "MIN_IMAGES", 5)  # the module's minimum is read when a pass starts
    assert FastPass(model, 4).why == "4 images, under 5"
    two = keras.Model(model.inputs, [model.output, model.layers[1].output])
    assert FastPass(two, 10, min_images=0).why == "2 outputs (one is supported)"  # never exported


@needs_litert
def test_a_failed_export_or_a_disagreeing_interpreter_falls_back_to_keras(monkeypatch):
    model = _model()
    x = _x()
    want = model.predict(x, verbose=0)
    monkeypatch.setattr(keras.Model, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no")))
    run = FastPass(model, len(x), min_images=0)
    assert run.engine == "keras" and run.why == "the LiteRT export failed (RuntimeError)" and run._dir is None
    np.testing.assert_array_equal(run(x), want)
    monkeypatch.undo()

    run = FastPass(model, len(x), min_images=0)
    assert run.engine == "litert"
    real = run._lite
    run._lite = lambda batch: (real(batch)[0] + 1.0, None)  # an interpreter that computes something else
    folder = run._dir
    got = run(x)
    assert run.engine == "keras" and run.why.startswith("LiteRT differed from Keras") and not folder.exists()
    np.testing.assert_array_equal(got, want)  # the whole chunk came from Keras, the check's images included


@needs_litert
def test_patch_trainer_caches_the_same_activations_through_litert(tmp_path, monkeypatch):
    from bt_core.config import TrainConfig
    from bt_core.data import sources
    from bt_core.models.patch_training import PatchTrainer
    from tests.test_sources import make_source

    a = make_source(tmp_path / "lgg_flair", patients=2, seed=1, masks=True)
    specs = sources.specs_from([str(a)])
    ds = sources.load_sources(specs, size=64)
    cfg = TrainConfig(model="patch", backbone_weights="default", image_size=64, freeze_backbone=True,
                      symmetry=True).validate()
    stages = {}
    for engine, minimum in (("Keras", 10 ** 9), ("LiteRT", 0)):
        monkeypatch.setattr(fast_pass, "MIN_IMAGES", minimum)
        monkeypatch.setenv("BT_CACHE_DIR", str(tmp_path / f"cache-{engine}"))  # each computes its own
        seen = []
        trainer = PatchTrainer(cfg, ds, *sources.load_masks(ds, specs), progress=seen.append)
        stages[engine] = (trainer.acts.astype(np.float32), [e["stage"] for e in seen if e.get("event") == "features"])
    (keras_acts, keras_stages), (lite_acts, lite_stages) = stages["Keras"], stages["LiteRT"]
    assert all(s.endswith("LiteRT)") for s in lite_stages) and len(lite_stages) == 4  # 2 passes, image and mirror
    assert len(keras_stages) == 4 and all("Keras: " in s and "under" in s for s in keras_stages)
    scale = np.abs(keras_acts).max()
    assert scale > 0.1
    np.testing.assert_allclose(lite_acts, keras_acts, atol=2e-3 * scale)  # float16 rounding of the cache
