"""Figures for reports, as PNG files (matplotlib, Agg): the paper's Graphics 1-4 and Figures 6-7.

- :func:`learning_curves`: train/validation loss and accuracy per fold (Graphics 1 and 2).
- :func:`roc_figure`: test-set ROC curves with AUC (Graphic 3).
- :func:`metric_bars`: accuracy, sensitivity, specificity, AUC side by side (Graphic 4).
- :func:`gradcam_grid`: an image and each model's Grad-CAM overlay (Figures 6 and 7).
The app draws the same things with plotly; these are for files.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bt_core.evaluation import metrics  # noqa: E402


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def learning_curves(record: dict, title: str, path) -> Path:
    """Four panels: training loss, validation loss, training accuracy, validation accuracy, per fold."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    panels = [("loss", "training loss"), ("val_loss", "validation loss"),
              ("accuracy", "training accuracy"), ("val_accuracy", "validation accuracy")]
    for ax, (key, label) in zip(axes, panels):
        for fold in record.get("folds", []):
            values = fold["history"].get(key, [])
            ax.plot(range(1, len(values) + 1), values, label=f"fold {fold['fold']}")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    return _save(fig, path)


def roc_figure(curves: dict, title: str, path) -> Path:
    """``curves``: {name: (y_true, prob)} -> one ROC plot with the AUC in each legend entry."""
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    for name, (y, p) in curves.items():
        pts = metrics.roc_points(y, p)
        auc = metrics.binary_metrics(y, p)["auc"]
        ax.plot(pts["fpr"], pts["tpr"], label=f"{name} (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def metric_bars(rows: dict, title: str, path) -> Path:
    """``rows``: {name: metrics dict} -> grouped bars of accuracy, sensitivity, specificity, AUC."""
    keys = ["accuracy", "sensitivity", "specificity", "auc"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(rows), 1)
    for i, (name, m) in enumerate(rows.items()):
        vals = [m[k] for k in keys]
        bars = ax.bar(np.arange(4) + i * width, vals, width, label=name)
        ax.bar_label(bars, [f"{v:.3f}" for v in vals], fontsize=7)
    ax.set_xticks(np.arange(4) + width * (len(rows) - 1) / 2, keys)
    lows = [m[k] for m in rows.values() for k in keys if np.isfinite(m[k])]
    ax.set_ylim(max(0.0, min(lows or [0.5]) - 0.05), 1.005)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def gradcam_grid(image: np.ndarray, overlays: dict, title: str, path) -> Path:
    """The slice, then one overlay per model (already blended RGB uint8 images)."""
    fig, axes = plt.subplots(1, 1 + len(overlays), figsize=(3.2 * (1 + len(overlays)), 3.4))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("(a) slice")
    for k, (ax, (name, rgb)) in enumerate(zip(axes[1:], overlays.items())):
        ax.imshow(rgb)
        ax.set_title(f"({chr(98 + k)}) {name}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)
