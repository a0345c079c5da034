"""Long frozen forward passes through LiteRT (XNNPACK) where it can run them, else Keras ``predict``.

Training the patch model starts by running its frozen backbone over every image, view and mirror image
(four passes of about 30,000 rows at 240 px for the six sources). On a 2-core CPU, Keras ``predict`` on TensorFlow
ran the lower blocks at 117 images a second and the same graph exported to LiteRT at 195 with nothing else running,
30 against 93 with a training run beside them (``python bench/run.py --only patchpass``; ``bench/RESULTS.md``, 2026-12-08).
:class:`FastPass` exports a model once, checks the interpreter against Keras on the first images it is
given, and then runs every image on the interpreter, one at a time (XNNPACK's fastest batch here).

It falls back to Keras ``predict`` (and says why in :attr:`FastPass.why`) when:
- the backend is not TensorFlow, which the exporter needs; the GPU machines run JAX, where ``predict`` is fast;
- ``ai-edge-litert`` is missing;
- the export fails;
- the check differs by more than ``TOLERANCE`` (relative to the largest activation);
- the pass is shorter than ``min_images``, where exporting costs more than it saves;
- the model has more than one output.

Defaults: ``MIN_IMAGES`` = 2048; ``CHECK_IMAGES`` = 4; ``TOLERANCE`` = 1e-3; Keras batch 64.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

MIN_IMAGES = 2048
CHECK_IMAGES = 4
TOLERANCE = 1e-3


class FastPass:
    """``FastPass(model, n)(x) -> model's output for x`` (float32), for a pass over ``n`` images in chunks.

    :attr:`engine` is ``"litert"`` or ``"keras"``, :attr:`why` the reason for Keras (None with LiteRT).
    Use it as a context manager, or call :meth:`close`, to delete the exported file."""

    def __init__(self, model: keras.Model, n_images: int, batch_size: int = 64, min_images: int | None = None):
        self.model, self.batch_size = model, batch_size
        self.engine, self.why = "keras", None
        self._lite, self._dir, self._checked = None, None, False
        min_images = MIN_IMAGES if min_images is None else min_images
        if n_images < min_images:
            self.why = f"{n_images} images, under {min_images}"
        elif len(model.outputs) != 1:  # the interpreter's outputs come back by name, not in Keras' order
            self.why = f"{len(model.outputs)} outputs (one is supported)"
        elif keras.backend.backend() != "tensorflow":
            self.why = f"the {keras.backend.backend()} backend (the LiteRT exporter needs TensorFlow)"
        else:
            self._export()

    def _export(self) -> None:
        from bt_core.serving.lite import LiteAnswer, interpreter_class

        if interpreter_class() is None:
            self.why = "ai-edge-litert is not installed"
            return
        self._dir = Path(tempfile.mkdtemp(prefix="bt_core-pass-"))
        path = self._dir / "pass.tflite"
        try:
            self.model.export(str(path), format="litert", verbose=False)
            self._lite = LiteAnswer(path)
        except Exception as err:  # any exporter or interpreter failure: Keras does the pass
            self.why = f"the LiteRT export failed ({type(err).__name__})"
            self.close()
            return
        self.engine = "litert"

    def _on_lite(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(self._lite(x[i:i + 1])[0], np.float32) for i in range(len(x))])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self._lite is not None and not self._checked and len(x):
            head = x[:CHECK_IMAGES]
            want = np.asarray(self.model.predict_on_batch(head), np.float32)
            diff = float(np.abs(self._on_lite(head) - want).max() / max(float(np.abs(want).max()), 1e-9))
            self._checked = True
            if not diff <= TOLERANCE:
                self.why = f"LiteRT differed from Keras by {diff:.2g} (relative)"
                self.engine = "keras"
                self.close()
        if self._lite is not None:
            return self._on_lite(x)
        return np.asarray(self.model.predict(x, batch_size=self.batch_size, verbose=0), np.float32)

    def describe(self) -> str:
        """``"LiteRT"`` or ``"Keras: <why>"``, for a progress line."""
        return "LiteRT" if self.engine == "litert" else f"Keras: {self.why}"

    def close(self) -> None:
        self._lite = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
