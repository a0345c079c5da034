"""Inference: score images with a saved run, the same way for the command line and the app.

A :class:`Predictor` loads a run's model once and applies the run's own preprocessing, its
temperature (calibration, default 1) and its operating threshold (default 0.5; a run may store one
chosen for a target sensitivity). Where the run carries an out-of-distribution detector
(:mod:`bt_core.evaluation.ood`), every answer says whether the image looks like what the model was trained on.
Results are decision support, not a diagnosis.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import numpy as np

from bt_core import data as data_mod
from bt_core import runs
from bt_core.config import TrainConfig

from bt_core import DISCLAIMER  # noqa: F401  (re-exported)


REASON_FEATURES = "unlike the training data"  # the Mahalanobis detector on the model's features flagged it
REASON_STATISTICS = "not a brain MRI slice?"  # the image-statistics detector flagged it
REASON_UNCERTAIN = "not confident enough: its probability lies in the band where it was often wrong on unseen sources"
REASON_PLANE = "a {plane} slice: no {plane} slice with a tumour was in its training data"


class _Background:
    """A function run once in a thread; :meth:`result` waits for it and re-raises its error."""

    def __init__(self, fn):
        self._fn, self._done, self._value, self._error = fn, threading.Event(), None, None
        self._lock = threading.Lock()
        self._started = False

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller of result()
            self._error = err
        finally:
            self._done.set()

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                # not a daemon: the interpreter waits for a load at exit (a thread killed inside TensorFlow aborts)
                threading.Thread(target=self._run, name="bt-load-model").start()

    def result(self):
        with self._lock:
            run_here = not self._started
            self._started = True
        if run_here:
            self._run()
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class Answer:
    """One image's answer."""

    name: str
    prob: float
    threshold: float
    tumour: bool
    ood: bool = False
    ood_score: float | None = None  # distance to the training data over its threshold: > 1 is flagged
    notes: list = field(default_factory=list)
    reason: str | None = None  # why the model refused to answer (None: it answered)
    plane: str | None = None  # the plane the model sees ("axial", "coronal", "sagittal"), when it can tell

    @property
    def decision(self) -> str:
        if self.ood:
            if self.reason in (None, REASON_FEATURES):
                return "unlike training data: no answer"
            return "no answer: " + self.reason.split(":")[0]
        return "tumour" if self.tumour else "no tumour"

    def to_dict(self) -> dict:
        return {"name": self.name, "prob": round(self.prob, 6), "threshold": self.threshold,
                "decision": self.decision, "tumour": self.tumour, "ood": self.ood,
                "ood_score": self.ood_score, "notes": self.notes, "reason": self.reason, "plane": self.plane}


class Predictor:
    """A loaded run, ready to answer."""

    def __init__(self, run, root=None, background: bool = True, warm_up: str | None = None,
                 engine: str = "auto", lazy: bool = False):
        """Reads the run's record and its out-of-distribution and plane checks now, and loads its Keras
        model in a background thread, so several predictors load at once and a caller can go on (e.g.
        draw a page); the first use of ``model`` waits for it and raises its ModelError. A file that is
        not a Keras archive raises ModelError here. ``warm_up="answer"`` or ``"explain"`` also runs one
        blank image through that path in the thread (traces its graph before the first real image).

        ``engine="auto"`` answers with the run's LiteRT export (:mod:`bt_core.serving.lite`) when it is
        there and current, without waiting for Keras (heatmaps still use the Keras model);
        ``engine="keras"`` always uses Keras. ``lazy=True`` loads the Keras model only when something
        needs it (a heatmap, or answers without a LiteRT export) instead of at once."""
        if engine not in ("auto", "keras"):
            raise ValueError(f"engine must be 'auto' or 'keras', not {engine!r}")
        self.record = runs.load_run(run, root)
        runs.check_model_file(self.record["dir"])
        self.config = TrainConfig.from_dict(self.record.get("config", {}))
        self.name = self.record.get("label") or self.record.get("id", "model")
        cal = self.record.get("calibration") or {}
        self.temperature = float(cal.get("temperature", 1.0))
        self.threshold = float((self.record.get("operating_point") or {}).get("threshold", 0.5))
        self.__dict__.update(self._load_checks())
        self._lite = None
        if engine == "auto":
            from bt_core.serving import lite
            self._lite = lite.for_run(self.record)
        self.engine = "litert" if self._lite is not None else "keras"
        if self.temperature != 1.0:  # imported here, not in a first answer that may race Keras' imports
            from bt_core.evaluation import calibration  # noqa: F401
        self._loading = _Background(lambda: self._load(warm_up))
        if not background:
            self.__dict__.update(self._loading.result())
        elif not (lazy and self._lite is not None):
            self._loading.start()

    def _load_checks(self) -> dict:
        """The out-of-distribution detectors and the plane detector (small arrays, no Keras)."""
        out = {"ood": None, "ood_stats": None, "plane_detector": None}
        if not self.record.get("ood"):
            return out
        from bt_core.evaluation import ood
        try:
            out["ood"] = ood.OODDetector.load(self.record["dir"])
            out["ood_stats"] = (ood.OODDetector.load(self.record["dir"], self.record["ood"]["stats_file"])
                                if self.record["ood"].get("stats_file") else None)
            if (self.record.get("plane") or {}).get("layer") == self.record["ood"]["layer"]:
                from bt_core.evaluation.plane import PlaneDetector
                out["plane_detector"] = PlaneDetector.load(self.record["dir"], self.record["plane"]["file"])
        except (OSError, KeyError, ValueError):
            out = {"ood": None, "ood_stats": None, "plane_detector": None}  # answers then carry no flag
        return out

    def _load(self, warm_up: str | None) -> dict:
        """-> the attributes that need the Keras model (run in the loading thread, published on first use)."""
        out = {"model": runs.load_model(self.record["dir"])}
        if self.__dict__.get("ood") is not None:
            from bt_core.evaluation import ood
            try:  # one forward pass gives the probability and the features the check needs
                out["_prob_and_features"] = ood.feature_model(out["model"], self.record["ood"]["layer"],
                                                              with_output=True)
            except (KeyError, ValueError):  # the record names a layer the model lacks: no flag, as above
                if self._lite is None:
                    self.ood = self.ood_stats = self.plane_detector = None
        if warm_up:
            ready = copy.copy(self)
            ready.__dict__.update(out, _loading=None)  # never waits on this very thread
            size = self.config.image_size
            blank = [(np.add.outer(np.arange(size), np.arange(size)) % 256).astype(np.uint8)]
            try:
                ready.answer_and_explain(blank) if warm_up == "explain" else ready.answer(blank)
            except Exception:  # noqa: BLE001 - a warm-up is only a head start; real calls report errors
                pass
        return out

    def preload(self) -> None:
        """Start loading the Keras model in the background now (a no-op once started)."""
        self._loading.start()

    def __getattr__(self, name):
        """Attributes the loading thread makes: wait for it (once), then they are plain attributes."""
        loading = self.__dict__.get("_loading")
        if loading is None or name.startswith("__"):
            raise AttributeError(name)
        for key, value in loading.result().items():
            self.__dict__.setdefault(key, value)
        if name not in self.__dict__:
            raise AttributeError(name)
        return self.__dict__[name]

    def resized(self, pixels_list) -> np.ndarray:
        """Greyscale uint8 images of any size -> (N, size, size) uint8, resized as in training:
        to the canonical size first, then to the model's input size."""
        canonical = np.stack([data_mod.resize(p, data_mod.DEFAULT_SIZE) for p in pixels_list])
        return data_mod.at_size(canonical, self.config.image_size)

    def batch(self, pixels_list) -> np.ndarray:
        """Greyscale uint8 images of any size -> the model's float32 batch."""
        return data_mod.as_batch(self.resized(pixels_list), self.config.channels, self.config.preprocess)

    @staticmethod
    def _run(model, x: np.ndarray):
        """Small batches skip predict()'s per-call data pipeline (about 150 ms on TF CPU)."""
        return model.predict_on_batch(x) if len(x) <= 32 else model.predict(x, batch_size=32, verbose=0)

    def _calibrated(self, raw) -> np.ndarray:
        prob = np.asarray(raw, np.float64).reshape(-1)
        if self.temperature != 1.0:
            from bt_core.evaluation.calibration import apply_temperature
            prob = np.asarray(apply_temperature(prob, self.temperature), np.float64)
        return prob

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        if self._lite is not None:
            return self._calibrated(self._lite(x)[0])
        return self._calibrated(self._run(self.model, x))

    def answer(self, pixels_list, names=None, threshold: float | None = None) -> list[Answer]:
        names, thr, resized, x = self._prepare(pixels_list, names, threshold)
        if self._lite is not None:  # no wait for Keras
            raw, feats = self._lite(x)
            return self._answers(names, thr, resized, raw, feats if self.ood is not None else None)
        if self.ood is None:
            return self._answers(names, thr, resized, self._run(self.model, x), None)
        raw, feats = self._run(self._prob_and_features, x)
        return self._answers(names, thr, resized, raw, feats)

    def _prepare(self, pixels_list, names, threshold):
        """-> (names, threshold, resized uint8 images, the model's float32 batch)."""
        names = names or [f"image {i + 1}" for i in range(len(pixels_list))]
        thr = self.threshold if threshold is None else float(threshold)
        resized = self.resized(pixels_list)
        return names, thr, resized, data_mod.as_batch(resized, self.config.channels, self.config.preprocess)

    def _answers(self, names, thr, resized, raw, feats) -> list[Answer]:
        prob = self._calibrated(raw)
        if feats is not None and np.ndim(feats) == 4:  # a feature map: its channel means, as the detector was fitted
            from bt_core.evaluation.ood import pool_map
            feats = pool_map(self.model.get_layer(self.record["ood"]["layer"]), feats)
        flags = scores = reasons = [None] * len(prob)
        if self.ood is not None:  # score: distance over threshold, the larger of the two; > 1 is flagged
            scores = self.ood.score(np.asarray(feats, np.float64)) / self.ood.threshold
            stats = np.zeros_like(scores)
            if self.ood_stats is not None:
                from bt_core.evaluation.ood import image_statistics
                stats = self.ood_stats.score(image_statistics(resized)) / self.ood_stats.threshold
            reasons = [REASON_FEATURES if f > 1.0 else REASON_STATISTICS if s > 1.0 else None
                       for f, s in zip(scores, stats)]
            scores = np.maximum(scores, stats)
            flags = scores > 1.0
        answers = [Answer(n, float(p), thr, bool(p >= thr), bool(f) if f is not None else False,
                          float(s) if s is not None else None, reason=r)
                   for n, p, f, s, r in zip(names, prob, flags, scores, reasons)]
        return self._abstain(answers, feats)

    def _abstain(self, answers: list[Answer], feats) -> list[Answer]:
        """Name the plane, and refuse where the run's rules say the model has not earned an answer:
        a plane it never saw a tumour in (:mod:`bt_core.evaluation.plane`), or a probability inside
        its abstention band (:mod:`bt_core.evaluation.abstain`, fitted on unseen sources)."""
        plane_det = self.plane_detector if self.ood is not None else None
        planes = plane_det.predict(np.asarray(feats, np.float64)) if plane_det is not None and feats is not None else None
        band = self.record.get("abstain")
        from bt_core.evaluation.plane import PLANE_NAMES
        for i, a in enumerate(answers):
            if planes is not None:
                a.plane = PLANE_NAMES.get(planes[i], planes[i])
            if a.ood:
                continue
            if a.plane not in (None, "axial"):
                a.ood, a.reason = True, REASON_PLANE.format(plane=a.plane)
            elif band and band.get("met", True) and band["low"] < a.prob < band["high"]:
                a.ood, a.reason = True, REASON_UNCERTAIN
        return answers

    def answer_and_explain(self, pixels_list, names=None, threshold: float | None = None, method: str = "gradcam",
                           target: str = "tumour") -> tuple[list[Answer], np.ndarray]:
        """:meth:`answer` and :meth:`explain` from one forward pass: the Grad-CAM pass also gives
        the probability and the out-of-distribution features."""
        from bt_core.explain import gradcam
        names, thr, resized, x = self._prepare(pixels_list, names, threshold)
        layer = self.record["ood"]["layer"] if self.ood is not None else None
        maps, raw, feats = gradcam.explain_all(self.model, x, target=target, method=method, feature_layer=layer)
        return self._answers(names, thr, resized, raw, feats), maps

    def explain(self, pixels_list, method: str = "gradcam", target: str = "tumour") -> np.ndarray:
        """Grad-CAM (or Grad-CAM++) maps at the model's input size, (N, size, size) in [0, 1]."""
        from bt_core.explain import gradcam
        return gradcam.explain(self.model, self.batch(pixels_list), target=target, method=method)
