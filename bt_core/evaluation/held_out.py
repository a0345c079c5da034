"""Held out: leave-one-source-out records (``python -m bt_core loso``) read back for display.

What it is for: the figure that matters to a user with their own scans is how a recipe does on a
source it never saw. A leave-one-source-out record holds, per held-out family, the labels, sources
and probabilities of its images (:mod:`bt_core.models.loso`); this module lists such records in one
or more run folders and turns one into a table per held-out source, ROC inputs, a risk-coverage
curve and, where ``loso-checks`` ran, what the app's refusal checks do on the held-out source; and, for a
shipped model, what a user's scans from an unseen hospital can expect at the threshold the app uses
(:func:`measured_by`, :func:`unseen_at`, :func:`expectation`). Defaults: threshold 0.5 (as the records' own
metrics), the repository's ``reports/runs`` beside the app's registry. No streamlit here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bt_core import runs
from bt_core.evaluation import abstain, metrics

REPORTS_RUNS = Path(__file__).resolve().parents[2] / "reports" / "runs"  # the repository's recorded evidence


def loso_runs(roots=None) -> list[dict]:
    """Finished leave-one-source-out runs under ``roots`` (default: the registry and ``reports/runs``),
    newest first, each once -> [{"id", "dir", "label", "created", "config"}] (from
    :func:`bt_core.runs.list_runs`, which reads each record once)."""
    roots = [runs.default_root(), REPORTS_RUNS] if roots is None else roots
    found: dict[str, dict] = {}
    for root in roots:
        for s in runs.list_runs(root):
            if s.get("mode") == "loso" and s.get("status") == "finished" and s["id"] not in found:
                found[s["id"]] = {"id": s["id"], "dir": s["dir"], "label": s.get("label") or s["id"],
                                  "created": s.get("created"), "config": s.get("config") or {}}
    return sorted(found.values(), key=lambda r: r["id"], reverse=True)


def source_scores(rec: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{held-out source: (labels, probabilities)}`` of a leave-one-source-out record."""
    out = {}
    for h in rec.get("held_out", {}).values():
        y, p, src = np.asarray(h["y"], int), np.asarray(h["prob"], float), np.asarray(h["source"])
        for s in dict.fromkeys(src.tolist()):
            out[str(s)] = (y[src == s], p[src == s])
    return out


def source_table(rec: dict, threshold: float = 0.5) -> pd.DataFrame:
    """One row per held-out source: family, images, tumours, accuracy, sensitivity, specificity, AUC
    (NaN where a class is missing), at ``threshold``."""
    rows = []
    for fam, h in rec.get("held_out", {}).items():
        y, p, src = np.asarray(h["y"], int), np.asarray(h["prob"], float), np.asarray(h["source"])
        for s in dict.fromkeys(src.tolist()):
            ys, ps = y[src == s], p[src == s]
            m = metrics.binary_metrics(ys, ps, threshold)
            have = metrics.defined_metrics(ys)
            rows.append({"held-out source": s, "family": fam, "images": int(len(ys)), "tumours": int(ys.sum()),
                         **{k: (m[k] if k in have else np.nan) for k in ("accuracy", "sensitivity", "specificity", "auc")}})
    return pd.DataFrame(rows)


def checks_table(rec: dict) -> pd.DataFrame | None:
    """One row per held-out source from the record's refusal checks (``python -m bt_core loso-checks``):
    share refused, by the OOD check and by the plane check (NaN: none fitted), accuracy at 0.5 on all
    images and on those accepted; None when the record has no checks. A family of several sources (LGG's three
    sequences) also gets a row for all its images together ("all N sources")."""
    checks = rec.get("checks")
    if not checks:
        return None

    def row(name, fam, m, accuracy):
        return {"held-out source": name, "family": fam, "refused": m["refused"], "by the OOD check": m["ood"],
                "by the plane check": np.nan if m["plane"] is None else m["plane"], "accuracy on all": accuracy,
                "accuracy on accepted": np.nan if m["accuracy_accepted"] is None else m["accuracy_accepted"]}

    rows = []
    for fam, c in checks["held_out"].items():
        h = rec["held_out"][fam]
        rows += [row(s, fam, m, h["per_source"][s]["accuracy"]) for s, m in c["per_source"].items()]
        if len(c["per_source"]) > 1 and "all" in c:  # its sources' stored accuracies, weighted by their images
            accuracy = sum(h["per_source"][s]["accuracy"] * m["n"] for s, m in c["per_source"].items()) / c["all"]["n"]
            rows.append(row(f"all {len(c['per_source'])} sources", fam, c["all"], accuracy))
    return pd.DataFrame(rows)


def risk_coverage_curves(rec: dict, points: int = 51) -> dict[str, list[tuple[float, float]]]:
    """``{held-out family: [(share answered, accuracy on answered), ...]}``, most confident first."""
    return {fam: abstain.risk_coverage(h["y"], h["prob"], points=points) for fam, h in rec.get("held_out", {}).items()}


IGNORED = ("cache_features", "data_parallel", "precision", "mixed_precision")  # how it ran, not what it learned


def same_recipe(a: dict, b: dict) -> bool:
    """Whether two run configurations train the same model (apart from how the machine ran them); an
    option a record lacks (it predates the option) has its default."""
    from dataclasses import asdict

    from bt_core.config import TrainConfig

    defaults = asdict(TrainConfig())
    full = lambda c: {k: v for k, v in {**defaults, **(c or {})}.items() if k not in IGNORED}  # noqa: E731
    return bool(a) and bool(b) and full(a) == full(b)


def recipe_runs(listed: list[dict], config: dict) -> list[str]:
    """Ids of the listed leave-one-source-out runs (:func:`loso_runs`) trained with ``config``'s recipe."""
    return [r["id"] for r in listed if same_recipe(r.get("config"), config)]


def measured_by(record: dict, roots=None) -> dict | None:
    """The leave-one-source-out run under ``roots`` (default: the registry and ``reports/runs``) that measured
    ``record``'s recipe on unseen sources, as ``{"id", "dir"}``: the one its abstention band was fitted on
    (``calibrate --loso``; found by its folder, without reading the others), else the newest of the same
    recipe (:func:`loso_runs`, which reads every record); None when there is none."""
    roots = [runs.default_root(), REPORTS_RUNS] if roots is None else roots
    named = (record.get("abstain") or {}).get("loso_run")
    for root in roots if named else ():
        if (Path(root) / named / runs.RUN_FILE).is_file():
            return {"id": named, "dir": str(Path(root) / named)}
    listed = loso_runs(roots)
    same = recipe_runs(listed, record.get("config") or {})
    return next((r for r in listed if r["id"] == same[0]), None) if same else None


def unseen_at(rec: dict, threshold: float, temperature: float = 1.0) -> pd.DataFrame:
    """:func:`source_table` of a leave-one-source-out record as the app answers: each probability calibrated
    with the shipped run's ``temperature`` (as ``calibrate`` does for the abstention band), called at ``threshold``."""
    if temperature != 1.0:
        from bt_core.evaluation.calibration import apply_temperature

        rec = {**rec, "held_out": {f: {**h, "prob": apply_temperature(np.asarray(h["prob"], float), temperature)}
                                   for f, h in rec.get("held_out", {}).items()}}
    return source_table(rec, threshold)


def expectation(table: pd.DataFrame, run_id: str, threshold: float) -> str:
    """One clause ("on 6 sources it never saw ...", to follow a model's name; no closing full stop) from
    :func:`unseen_at`'s table:
    the range over the held-out sources of accuracy, sensitivity and specificity (where the class exists) at
    ``threshold``, and the weakest source. An empty table raises ValueError."""
    if table.empty:
        raise ValueError(f"the leave-one-source-out run {run_id} holds no held-out predictions")
    def span(key):
        v = table[key].dropna()
        return f"{100 * v.min():.0f} to {100 * v.max():.0f}%" if len(v) else None

    worst = table.loc[table["accuracy"].idxmin()]
    parts = [f"right on {span('accuracy')} of their slices"]
    if span("sensitivity"):
        parts.append(f"found {span('sensitivity')} of tumour slices")
    if span("specificity"):
        parts.append(f"cleared {span('specificity')} of healthy slices")
    return (f"on {len(table)} source{'s' if len(table) != 1 else ''} it never saw (leave-one-source-out run "
            f"`{run_id}`, at threshold {threshold:.2f}, every slice, before the refusal checks): " + ", ".join(parts)
            + f"; weakest on {worst['held-out source']} ({100 * worst['accuracy']:.0f}% right)")
