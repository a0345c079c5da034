"""Out-of-distribution check: is an upload like the images the model was trained on?

A Mahalanobis score (Lee et al., NeurIPS 2018, "A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks") on a model's penultimate features: features
are standardised, reduced by PCA (default 64 components) and scored by the smallest Mahalanobis
distance to a class mean under a shared Ledoit-Wolf covariance. The threshold is set on *held-out*
training images (out-of-fold scores), at a quantile (default 0.99), so about 1% of images like the
training data are flagged; scores on the training images themselves would be optimistic.
A second detector of the same kind on simple image statistics (:func:`image_statistics`) catches
blank images, text and gradients; an image is flagged when either detector flags it (each at the
0.995 quantile, so about 1% of training-like images together). Arrays are stored beside the run in
``ood.npz`` and ``ood_stats.npz``; ``run.json`` keeps the layer and thresholds. For the patch model
the features are the channel means of its backbone's map; of the symmetric one's, only the image's own
channels (:class:`bt_core.models.patch.ImageChannels`): its asymmetry channels are near zero for any
symmetric picture, a head phantom included, and let such a picture pass.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_LAYER = {"transfer": "pool", "compact_cnn": "fc", "paper_cnn": "fc", "patch": "backbone"}
OOD_FILE = "ood.npz"
STATS_FILE = "ood_stats.npz"


class OODDetector:
    """Class-conditional Mahalanobis distance on PCA-reduced, standardised features."""

    def __init__(self, n_components: int = 64, threshold: float = np.inf):
        self.n_components, self.threshold = n_components, float(threshold)

    def fit(self, features: np.ndarray, labels: np.ndarray | None = None) -> "OODDetector":
        from sklearn.covariance import LedoitWolf  # here, not at import: answering needs no scikit-learn
        from sklearn.decomposition import PCA

        f = np.asarray(features, np.float64)
        labels = np.zeros(len(f), int) if labels is None else np.asarray(labels)
        self.center = f.mean(0)
        self.scale = f.std(0) + 1e-6
        z = (f - self.center) / self.scale
        k = int(min(self.n_components, z.shape[1], len(z) - 1))
        self.components = PCA(k, random_state=0).fit(z).components_
        p = z @ self.components.T
        self.means = np.stack([p[labels == c].mean(0) for c in np.unique(labels)])
        resid = p - self.means[np.searchsorted(np.unique(labels), labels)]
        self.precision = LedoitWolf().fit(resid).precision_
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """Larger = less like the training data (squared Mahalanobis distance to the nearest class)."""
        p = ((np.asarray(features, np.float64) - self.center) / self.scale) @ self.components.T
        d = p[:, None, :] - self.means[None]
        return np.einsum("nci,ij,ncj->nc", d, self.precision, d).min(1)

    def flags(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold

    def save(self, folder, name: str = OOD_FILE) -> Path:
        path = Path(folder) / name
        np.savez(path, center=self.center, scale=self.scale, components=self.components, means=self.means,
                 precision=self.precision, threshold=self.threshold)
        return path

    @classmethod
    def load(cls, folder, name: str = OOD_FILE) -> "OODDetector":
        with np.load(Path(folder) / name) as z:
            det = cls(len(z["components"]), float(z["threshold"]))
            for key in ("center", "scale", "components", "means", "precision"):
                setattr(det, key, z[key])
        return det


def image_statistics(images_u8: np.ndarray, chunk: int = 256) -> np.ndarray:
    """What a slice looks like, in 31 numbers: intensity histogram (16 bins), mean, spread, dark
    background share, mean intensity in 6 rings from the centre out, left-right and up-down
    symmetry, edge density. Catches blank images, text, gradients and other non-slices that a
    network's features may place near the training data. Works ``chunk`` images at a time, so its
    float64 copies stay small (15,000 slices at 240 px at once took 17 GB)."""
    images_u8 = np.asarray(images_u8)
    if len(images_u8) > chunk:
        return np.concatenate([_statistics(images_u8[i:i + chunk]) for i in range(0, len(images_u8), chunk)])
    return _statistics(images_u8)


def _statistics(images_u8: np.ndarray) -> np.ndarray:
    x = np.asarray(images_u8, np.float64) / 255.0
    n, h, w = x.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    rings = [(r >= a) & (r < a + 0.25) for a in np.arange(0, 1.5, 0.25)]
    flat = x.reshape(n, -1)

    def corr(a, b):
        a = a.reshape(n, -1) - a.reshape(n, -1).mean(1, keepdims=True)
        b = b.reshape(n, -1) - b.reshape(n, -1).mean(1, keepdims=True)
        den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
        return np.where(den > 1e-9, (a * b).sum(1) / np.maximum(den, 1e-9), 0.0)

    hist = np.stack([np.histogram(f, bins=16, range=(0, 1))[0] / f.size for f in flat])
    grad = np.abs(np.diff(x, axis=1)).mean((1, 2)) + np.abs(np.diff(x, axis=2)).mean((1, 2))
    cols = [flat.mean(1), flat.std(1), (flat < 0.05).mean(1)] + [x[:, m].mean(1) for m in rings]
    cols += [corr(x, x[:, :, ::-1]), corr(x, x[:, ::-1, :]), grad]
    return np.concatenate([hist, np.stack(cols, 1)], 1)


def feature_model(model, layer: str, with_output: bool = False):
    """A keras Model from the classifier's input to the named feature layer (average-pooled when it
    is a 4-D map); with ``with_output``,
    to ``[the classifier's output, the features]``, so one forward pass gives both."""
    import keras

    found = model.get_layer(layer)
    # a nested Model's own ``.output`` lives in its inner graph: take its output in this model's graph
    features = found._inbound_nodes[-1].output_tensors[0] if isinstance(found, keras.Model) else found.output
    if len(features.shape) == 4:  # a feature map (the patch model's backbone): its channel means
        from bt_core.models import patch

        if patch.is_symmetric(found):  # the image's own map: the |a - b| half is near zero for anything symmetric
            features = patch.ImageChannels(name=f"{layer}_image")(features)
        features = keras.layers.GlobalAveragePooling2D(name=f"{layer}_mean")(features)
    return keras.Model(model.inputs, [model.output, features] if with_output else features)


def pool_map(layer, maps) -> np.ndarray:
    """The (N, H, W, C) map of ``layer`` (e.g. from Grad-CAM's pass) -> the features :func:`feature_model`
    gives: its channel means, of the image's own channels for the symmetric backbone."""
    from bt_core.models import patch

    maps = np.asarray(maps, np.float32)
    if patch.is_symmetric(layer):  # the same layer as feature_model's, so the rule lives in one place
        maps = np.asarray(patch.ImageChannels()(maps))
    return maps.astype(np.float64).mean((1, 2))


def held_out_threshold(features: np.ndarray, labels: np.ndarray, folds, quantile: float = 0.99,
                       n_components: int = 64) -> tuple[float, np.ndarray]:
    """Fit on each fold's training part, score its held-out part -> (quantile threshold, scores)."""
    scores = np.empty(len(features))
    for tr, va in folds:
        scores[va] = OODDetector(n_components).fit(features[tr], labels[tr]).score(features[va])
    return float(np.quantile(scores, quantile)), scores
