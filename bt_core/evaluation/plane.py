"""Plane: which anatomical plane a slice shows (axial, coronal, sagittal), so the answer can say it.

No training source holds a coronal or sagittal slice *with a tumour* (IXI, the only source with
those planes, is healthy), so a model may have learned "not axial means no tumour". The answer
therefore names the plane it sees, and the model abstains on a non-axial slice instead of saying
"no tumour" with confidence it has not earned.

:class:`PlaneDetector` is a multinomial logistic regression (scikit-learn, C=0.1, balanced classes)
on standardised pooled backbone features. Labels: IXI's ``plane`` column (``ax``, ``cor``,
``sag``); sources without one whose slices are known to be axial (Br35H, LGG, BraTS) count as
``ax``. Saved as ``plane.npz`` beside the run; scoring needs numpy only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PLANE_FILE = "plane.npz"
PLANE_NAMES = {"ax": "axial", "cor": "coronal", "sag": "sagittal"}


class PlaneDetector:
    """Logistic regression on standardised features -> probabilities of ``classes``."""

    def fit(self, features: np.ndarray, planes, C: float = 0.1, seed: int = 0) -> "PlaneDetector":
        from sklearn.linear_model import LogisticRegression

        f = np.asarray(features, np.float64)
        self.center, self.scale = f.mean(0), f.std(0) + 1e-6
        lr = LogisticRegression(C=C, max_iter=2000, class_weight="balanced", random_state=seed)
        lr.fit((f - self.center) / self.scale, np.asarray(planes))
        self.classes = np.asarray(lr.classes_).astype(str)
        coef, intercept = lr.coef_, lr.intercept_
        if len(self.classes) == 2:  # sklearn keeps one row for two classes
            coef, intercept = np.vstack([-coef, coef]) / 2, np.array([-intercept[0], intercept[0]]) / 2
        self.coef, self.intercept = coef, intercept
        return self

    def proba(self, features: np.ndarray) -> np.ndarray:
        z = ((np.asarray(features, np.float64) - self.center) / self.scale) @ self.coef.T + self.intercept
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def predict(self, features: np.ndarray) -> list[str]:
        return [str(self.classes[i]) for i in self.proba(features).argmax(1)]

    def save(self, folder, name: str = PLANE_FILE) -> Path:
        path = Path(folder) / name
        np.savez(path, center=self.center, scale=self.scale, coef=self.coef, intercept=self.intercept,
                 classes=self.classes)
        return path

    @classmethod
    def load(cls, folder, name: str = PLANE_FILE) -> "PlaneDetector":
        det = cls()
        with np.load(Path(folder) / name) as z:
            for key in ("center", "scale", "coef", "intercept"):
                setattr(det, key, z[key])
            det.classes = z["classes"].astype(str)
        return det


def plane_labels(meta_plane, families, axial_families=("br35h", "lgg", "brats2012")) -> np.ndarray:
    """A plane label per image: the ``plane`` metadata where given, ``ax`` for the known-axial
    families, "" (unknown: not used for fitting) otherwise."""
    out = []
    for plane, fam in zip(meta_plane if meta_plane is not None else [""] * len(families), families):
        out.append(plane if plane in PLANE_NAMES else ("ax" if fam in axial_families else ""))
    return np.asarray(out)
