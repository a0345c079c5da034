"""Interactive figures for the dashboard (plotly): the paper's Graphics 1-4 and the evaluation views.

- :func:`learning_curves`: training/validation loss and accuracy per fold, 2x2 panels (Graphics 1, 2).
- :func:`roc_figure`: ROC curves with AUC in the legend (Graphic 3), square and 0-1 on both axes; also per
  fold from out-of-fold predictions.
- :func:`slice_profile`: a scan's tumour probability per slice, a line per model.
- :func:`metric_bars`: accuracy, sensitivity, specificity and AUC side by side (Graphic 4).
- :func:`confusion_heatmap`, :func:`threshold_tradeoff` (sensitivity and specificity against the
  threshold, with a marker at the chosen one), :func:`reliability_diagram` (with ECE).
- :func:`risk_coverage_figure`: accuracy on answered images against the share answered (abstention).
- :func:`fold_table_display`: :func:`bt_core.evaluation.metrics.fold_table` as percentages for display.

The static PNG versions for reports are in :mod:`bt_core.evaluation.figures`. No streamlit here. Defaults:
percentages on metric axes, a tumour call is ``prob >= threshold``, 10 calibration bins.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from bt_core.evaluation import calibration, metrics

COLOURS = qualitative.Plotly
BAR_METRICS = ("accuracy", "sensitivity", "specificity", "auc")
ROC_SIZE = (620, 600)  # width, height in pixels: a square plot area with room for the axis titles
_LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=50, b=45))


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def roc_figure(curves: dict, title: str = "ROC curve", descriptions: dict | None = None) -> go.Figure:
    """ROC curves, one per ``name -> (y, prob)``; the legend gives each AUC, the hover each name's
    ``descriptions`` entry. Square: both axes exactly 0-1 on one scale, the legend inside (lower right),
    ``ROC_SIZE`` pixels (show it at that size, not stretched). One-class entries are skipped."""
    descriptions = descriptions or {}
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance (AUC 0.5)",
                             line=dict(color="#999", dash="dash")))
    for i, (name, (y, prob)) in enumerate(curves.items()):
        y, prob = np.asarray(y), np.asarray(prob, dtype=float)
        if y.size == 0 or y.min() == y.max():
            continue
        pts = metrics.roc_points(y, prob)
        auc = metrics.binary_metrics(y, prob)["auc"]
        about = str(descriptions.get(name, "")).replace("<", "&lt;")
        fig.add_trace(go.Scatter(
            x=pts["fpr"], y=pts["tpr"], mode="lines", name=f"{name} (AUC {auc:.3f})",
            line=dict(color=_colour(i), width=2, shape="hv"), customdata=pts["thresholds"],
            hovertemplate=(f"<b>{name}</b>" + (f"<br>{about}" if about else "")
                           + "<br>1 - specificity %{x:.3f}<br>sensitivity %{y:.3f}<br>threshold %{customdata:.3f}"
                           + "<extra></extra>")))
    width, height = ROC_SIZE
    fig.update_layout(title=title, xaxis_title="1 - specificity (false positive rate)",
                      yaxis_title="sensitivity (true positive rate)", width=width, height=height,
                      legend=dict(x=0.99, y=0.01, xanchor="right", yanchor="bottom", bgcolor="rgba(255,255,255,0.85)",
                                  bordercolor="#ccc", borderwidth=1, font=dict(size=11)), **_LAYOUT)
    fig.update_xaxes(range=[0, 1], constrain="domain", dtick=0.2)
    fig.update_yaxes(range=[0, 1], scaleanchor="x", scaleratio=1, constrain="domain", dtick=0.2)
    return fig


def slice_profile(curves: dict, current: int | None = None, thresholds: dict | None = None,
                  labels=None, title: str = "Tumour probability per slice") -> go.Figure:
    """One line per model ``name -> [probability or None per slice]`` against the slice number (1-based);
    None (the model refused the slice) leaves a gap and an x at the bottom; dotted lines at each model's
    ``thresholds``, a vertical line at the ``current`` slice (0-based)."""
    thresholds, fig = thresholds or {}, go.Figure()
    for i, (name, probs) in enumerate(curves.items()):
        x = list(range(1, len(probs) + 1))
        text = list(labels) if labels is not None else [f"slice {k}" for k in x]
        y = [None if p is None else 100 * float(p) for p in probs]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, connectgaps=False, text=text,
                                 line=dict(color=_colour(i), width=2), marker=dict(size=5),
                                 hovertemplate="%{text}<br>" + f"{name}: " + "%{y:.1f}%<extra></extra>"))
        refused = [k for k, p in zip(x, probs) if p is None]
        if refused:
            fig.add_trace(go.Scatter(x=refused, y=[-3] * len(refused), mode="markers", name=f"{name}: refused",
                                     marker=dict(color=_colour(i), symbol="x", size=8),
                                     hovertemplate="slice %{x}: " + f"{name} refused<extra></extra>"))
        if name in thresholds:
            fig.add_hline(y=100 * float(thresholds[name]), line=dict(color=_colour(i), dash="dot", width=1))
    if current is not None:
        fig.add_vline(x=current + 1, line=dict(color="#555", dash="dash"),
                      annotation_text=f"slice {current + 1}", annotation_position="top")
    n = max((len(p) for p in curves.values()), default=1)
    fig.update_layout(title=title, height=340, xaxis=dict(title="slice", range=[0.5, n + 0.5], tickformat="d",
                                                          dtick=max(1, math.ceil(n / 20))),
                      yaxis=dict(title="tumour probability (%)", range=[-6, 105]),
                      legend=dict(orientation="h", y=-0.25), **_LAYOUT)
    return fig


def fold_table_display(table: pd.DataFrame) -> pd.DataFrame:
    """``metrics.fold_table`` output as text: folds and Mean in %, Variance in %^2 (the paper's unit)."""
    out = pd.DataFrame(index=table.index, columns=table.columns, dtype=object)
    for row in table.index:
        for col in table.columns:
            value = float(table.loc[row, col])
            if not math.isfinite(value):
                out.loc[row, col] = "n/a"
            elif row == "Variance":
                out.loc[row, col] = f"{value * 1e4:.2f}"
            else:
                out.loc[row, col] = f"{100 * value:.2f}%"
    out = out.rename(index={"Variance": "Variance (%²)"})
    out.columns = [str(c).capitalize() if c != "auc" else "AUC" for c in out.columns]
    return out


def learning_curves(record: dict, title: str | None = None) -> go.Figure:
    """2x2 panels (training loss, validation loss, training accuracy, validation accuracy), a line per fold."""
    panels = [("loss", "training loss"), ("val_loss", "validation loss"),
              ("accuracy", "training accuracy"), ("val_accuracy", "validation accuracy")]
    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[1] for p in panels],
                        horizontal_spacing=0.1, vertical_spacing=0.2)
    for i, fold in enumerate(record.get("folds", [])):
        for j, (key, _) in enumerate(panels):
            values = fold.get("history", {}).get(key, [])
            fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers",
                                     name=f"fold {fold.get('fold', i + 1)}", legendgroup=f"fold{i}",
                                     showlegend=j == 0, line=dict(color=_colour(i)), marker=dict(size=4)),
                          row=j // 2 + 1, col=j % 2 + 1)
    epochs = max([len(f.get("history", {}).get("loss", [])) for f in record.get("folds", [])] or [1])
    fig.update_xaxes(dtick=max(1, math.ceil(epochs / 10)))  # whole epochs only
    fig.update_xaxes(title_text="epoch", row=2)
    fig.update_layout(title=title or "Learning curves per fold", height=560, **_LAYOUT)
    return fig


def metric_bars(rows: list[dict], keys: tuple[str, ...] = BAR_METRICS, title: str = "Test-set metrics") -> go.Figure:
    """Grouped bars: for each metric in ``keys``, one bar per row ``{"name": ..., "accuracy": ...}``."""
    fig = go.Figure()
    labels = ["AUC" if k == "auc" else k.capitalize() for k in keys]
    for i, row in enumerate(rows):
        values = [float(row.get(k, float("nan"))) for k in keys]
        fig.add_trace(go.Bar(x=labels, y=[100 * v for v in values], name=str(row.get("name", f"run {i + 1}")),
                             marker_color=_colour(i), text=[metrics.pct(v) for v in values], textposition="outside"))
    fig.update_layout(title=title, barmode="group", yaxis=dict(title="%", range=[0, 109]), **_LAYOUT)
    return fig


def confusion_heatmap(cm, title: str = "Confusion matrix") -> go.Figure:
    """2x2 ``[[tn, fp], [fn, tp]]`` (rows = truth, columns = prediction) as an annotated heatmap."""
    cm = np.asarray(cm, dtype=int)
    names = ["no tumour", "tumour"]
    total = max(int(cm.sum()), 1)
    text = [[f"{cm[r, c]}<br>({100 * cm[r, c] / total:.0f}%)" for c in range(2)] for r in range(2)]
    fig = go.Figure(go.Heatmap(z=cm, x=names, y=names, text=text, texttemplate="%{text}",
                               colorscale="Blues", showscale=False,
                               hovertemplate="truth %{y}<br>predicted %{x}<br>%{z} images<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="truth", height=320, **_LAYOUT)
    fig.update_yaxes(autorange="reversed")
    return fig


def tradeoff_points(y, prob, n: int = 201) -> dict:
    """Sensitivity and specificity on a grid of ``n`` thresholds in [0, 1] (``prob >= t`` is tumour)."""
    y, prob = metrics.check_binary(y, prob)
    grid = np.linspace(0.0, 1.0, n)
    called = prob[None, :] >= grid[:, None]
    pos, neg = y == 1, y == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = called[:, pos].sum(axis=1) / pos.sum() if pos.any() else np.full(n, np.nan)
        spec = (~called[:, neg]).sum(axis=1) / neg.sum() if neg.any() else np.full(n, np.nan)
    return {"threshold": grid, "sensitivity": sens, "specificity": spec}


def threshold_tradeoff(y, prob, threshold: float = 0.5, title: str = "Sensitivity and specificity vs threshold") -> go.Figure:
    """Sensitivity and specificity as the threshold moves, with markers at ``threshold``."""
    pts = tradeoff_points(y, prob)
    at = metrics.binary_metrics(y, prob, threshold)
    fig = go.Figure()
    for i, key in enumerate(("sensitivity", "specificity")):
        fig.add_trace(go.Scatter(x=pts["threshold"], y=100 * pts[key], mode="lines", name=key,
                                 line=dict(color=_colour(i), shape="hv")))
        fig.add_trace(go.Scatter(x=[threshold], y=[100 * at[key]], mode="markers", showlegend=False,
                                 marker=dict(color=_colour(i), size=11, line=dict(color="black", width=1)),
                                 hovertemplate=f"{key} at threshold {threshold:.2f}: {metrics.pct(at[key])}<extra></extra>"))
    fig.add_vline(x=threshold, line=dict(color="#555", dash="dot"),
                  annotation_text=f"threshold {threshold:.2f}", annotation_position="top")
    fig.update_layout(title=title, xaxis_title="threshold (tumour if probability ≥ threshold)",
                      yaxis=dict(title="%", range=[-2, 105]), height=360, **_LAYOUT)
    return fig


def reliability_diagram(y, prob, n_bins: int = 10, title: str | None = None, name: str = "model") -> go.Figure:
    """Observed tumour fraction against mean predicted probability per bin; ECE (15 bins) in the title."""
    curve = calibration.reliability_curve(y, prob, n_bins=n_bins)
    ece = calibration.expected_calibration_error(y, prob)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color="#999", dash="dash")))
    fig.add_trace(go.Scatter(x=curve["mean_pred"], y=curve["frac_pos"], mode="lines+markers", name=name,
                             marker=dict(size=[6 + 14 * math.sqrt(c / max(curve["count"])) for c in curve["count"]],
                                         color=_colour(0)),
                             customdata=curve["count"],
                             hovertemplate="mean predicted %{x:.2f}<br>observed %{y:.2f}<br>%{customdata} images"
                                           "<extra></extra>"))
    fig.update_layout(title=title or f"Reliability diagram (ECE {ece:.3f})", height=420,
                      legend=dict(orientation="h", y=-0.22),
                      xaxis=dict(title="mean predicted tumour probability", range=[0, 1]),
                      yaxis=dict(title="observed tumour fraction", range=[0, 1.02]), **_LAYOUT)
    return fig


def risk_coverage_figure(curves: dict, target: float | None = 0.95,
                         title: str = "Accuracy when answering only the most confident") -> go.Figure:
    """Risk-coverage curves, one per ``name -> [(share answered, accuracy on answered), ...]``, with a
    dotted line at ``target`` accuracy; both axes in percent."""
    fig = go.Figure()
    for i, (name, pts) in enumerate(curves.items()):
        if not pts:
            continue
        x, y = zip(*pts)
        fig.add_trace(go.Scatter(x=np.asarray(x) * 100, y=np.asarray(y) * 100, mode="lines", name=name,
                                 line=dict(color=_colour(i), width=2),
                                 hovertemplate=f"<b>{name}</b><br>answered %{{x:.0f}}%<br>accuracy %{{y:.1f}}%<extra></extra>"))
    if target is not None:
        fig.add_hline(y=100 * target, line=dict(color="#999", dash="dot"), annotation_text=f"{100 * target:.0f}%")
    fig.update_layout(title=title, xaxis_title="share answered (%)", yaxis_title="accuracy on answered (%)",
                      height=420, **_LAYOUT)
    fig.update_xaxes(range=[0, 100])
    fig.update_yaxes(range=[40, 100.5])
    return fig
