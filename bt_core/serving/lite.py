"""A run's answer path as a LiteRT (TensorFlow Lite) file, for a fast first answer.

Importing Keras on TensorFlow takes about 4 s on a 2-core CPU before a model is even read; the LiteRT
interpreter (``ai-edge-litert``) imports in about 0.05 s and runs the same graph. :func:`export` writes
``answer.tflite`` beside a run: the classifier's input to ``[probability, out-of-distribution
features]`` (the run's OOD layer, channel-averaged when it is a map), checks it against the Keras
model on generated images and records in ``run.json`` the model file's SHA-256 and the largest
difference seen. :class:`LiteAnswer` loads it; :func:`for_run` returns one only when the file is
there, matches the model file and the interpreter is installed, so a stale or missing export falls
back to Keras. Grad-CAM needs gradients and stays on Keras.

Defaults: ``answer.tflite``; export check on 16 generated images, tolerance 1e-4 on the probability
and 1e-3 (relative) on the features; the interpreter uses every core this process may use.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from bt_core import runs
from bt_core.errors import ModelError

LITE_FILE = "answer.tflite"
PROB_TOLERANCE = 1e-4
FEATURE_TOLERANCE = 1e-3


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def interpreter_class():
    """LiteRT's Interpreter class, or None when ``ai-edge-litert`` is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    return Interpreter


class LiteAnswer:
    """``answer.tflite`` loaded: ``(x float32 batch) -> (probabilities (N, 1), features (N, D) or None)``.
    One interpreter, guarded by a lock (an interpreter is not safe to call from two threads)."""

    def __init__(self, path, threads: int | None = None):
        cls = interpreter_class()
        if cls is None:
            raise ModelError("the LiteRT interpreter is not installed: pip install ai-edge-litert")
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:
            self._interp = cls(model_path=str(path), num_threads=threads or usable)
            self._runner = self._interp.get_signature_runner()
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"{Path(path).name} is not a readable LiteRT model: {err}") from None
        sig = self._interp.get_signature_list()["serving_default"]
        self._input, self._outputs = sig["inputs"][0], sorted(sig["outputs"])  # output_0: prob, output_1: features
        self._lock = threading.Lock()
        shape = self._interp.get_input_details()[0]["shape"]
        with _quiet_stderr():  # the first call applies XNNPACK and prints one INFO line on stderr
            self(np.zeros([1, *shape[1:]], np.float32))

    def __call__(self, x: np.ndarray):
        with self._lock:
            out = self._runner(**{self._input: np.ascontiguousarray(x, np.float32)})
        prob = np.asarray(out[self._outputs[0]])
        feats = np.asarray(out[self._outputs[1]]) if len(self._outputs) > 1 else None
        return prob, feats


_QUIET = threading.Lock()
_quieted = False


class _quiet_stderr:
    """Sends file descriptor 2 to /dev/null for the first interpreter call of this process (LiteRT's
    C++ logger has no switch for its one INFO line); later calls print nothing and skip this."""

    def __enter__(self):
        global _quieted
        self._saved = None
        with _QUIET:
            if _quieted:
                return self
            _quieted = True
            try:
                self._saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            except OSError:
                self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        return False


def for_run(record: dict) -> LiteAnswer | None:
    """The run's LiteAnswer when its export is present, matches its model file and LiteRT is installed;
    otherwise None (the caller answers with Keras)."""
    info = record.get("lite") or {}
    folder = Path(record["dir"])
    path, model_file = folder / info.get("file", LITE_FILE), folder / record.get("model_file", runs.MODEL_FILE)
    if not info or not path.is_file() or not model_file.is_file() or interpreter_class() is None:
        return None
    if info.get("model_sha256") != file_sha256(model_file):  # the model was retrained or replaced: stale
        return None
    if bool(info.get("features")) != bool((record.get("ood") or {}).get("layer")):
        return None
    try:
        return LiteAnswer(path)
    except ModelError:
        return None


def _check_images(size: int, n: int, seed: int) -> list[np.ndarray]:
    """Generated slices: bright discs of random size and place on a dark noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        (cy, cx), r = rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0.2, 0.45) * size
        im = rng.normal(20, 8, (size, size)) + 150 * (np.hypot(yy - cy, xx - cx) < r)
        im += 80 * (np.hypot(yy - cy - r / 3, xx - cx) < r / 4) * rng.integers(0, 2)
        out.append(np.clip(im, 0, 255).astype(np.uint8))
    return out


def export(run, root=None, n_check: int = 16, seed: int = 0) -> dict:
    """Write ``answer.tflite`` beside the run, check it against the Keras model and record it in
    ``run.json`` -> the record's ``lite`` entry. Needs the TensorFlow backend (the exporter) and LiteRT
    (the check); raises ModelError when the two disagree beyond the tolerances."""
    import keras

    from bt_core.config import TrainConfig
    from bt_core.data import prepare
    from bt_core.evaluation import ood

    if keras.backend.backend() != "tensorflow":
        raise ModelError("exporting to LiteRT needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    if interpreter_class() is None:
        raise ModelError("the LiteRT interpreter is not installed: pip install ai-edge-litert")
    record = runs.load_run(run, root)
    folder = Path(record["dir"])
    model = runs.load_model(folder)
    layer = (record.get("ood") or {}).get("layer")
    graph = ood.feature_model(model, layer, with_output=True) if layer else model
    tmp = folder / f".tmp-{LITE_FILE}"  # the exporter wants the .tflite suffix
    graph.export(str(tmp), format="litert", verbose=False)
    cfg = TrainConfig.from_dict(record.get("config", {}))
    x = prepare.as_batch(np.stack(_check_images(cfg.image_size, n_check, seed)), cfg.channels, cfg.preprocess)
    want = graph.predict_on_batch(x)
    want_prob, want_feats = (want[0], want[1]) if layer else (want, None)
    got_prob, got_feats = LiteAnswer(tmp)(x)
    prob_diff = float(np.abs(np.asarray(got_prob).reshape(-1) - np.asarray(want_prob).reshape(-1)).max())
    feat_diff = 0.0
    if layer:
        want_feats = np.asarray(want_feats, np.float64)
        feat_diff = float(np.abs(got_feats - want_feats).max() / max(np.abs(want_feats).max(), 1e-9))
    if prob_diff > PROB_TOLERANCE or feat_diff > FEATURE_TOLERANCE:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"the LiteRT export of {record['id']} differs from the Keras model "
                         f"(probability by {prob_diff:.2g}, features by {feat_diff:.2g}); not kept")
    os.replace(tmp, folder / LITE_FILE)
    import ai_edge_litert

    info = {"file": LITE_FILE, "model_sha256": file_sha256(folder / record.get("model_file", runs.MODEL_FILE)),
            "features": layer, "check_images": n_check, "max_prob_diff": prob_diff,
            "max_feature_rel_diff": feat_diff, "size_bytes": (folder / LITE_FILE).stat().st_size,
            "engine": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"}
    record["lite"] = info
    record.pop("dir", None)
    runs.write_json_atomic(folder / runs.RUN_FILE, record)
    return info
