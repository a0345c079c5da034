"""Records: what the comparison pages read from saved runs (``bt_core.runs`` records), as tables and arrays.

- :func:`test_scores`: a run's test labels and probabilities, temperature-scaled if asked and stored;
- :func:`oof_curves`: the out-of-fold predictions per fold and pooled (per-fold ROC curves);
- :func:`same_test_images`: whether two runs were scored on the same test images (else why not);
- :func:`per_source_table` and :func:`sources_table`: test and out-of-fold figures per data source of a
  run on several sources (accuracy at 0.5 out of fold; test metrics at the threshold given);
- :func:`compare`: the paper's paired t-test and Nadeau & Bengio's corrected resampled t-test on the
  per-fold metric of two runs, with sentences that say what the p-value means;
- :func:`mean_of_runs`: several leave-one-source-out runs of the same images as one record whose
  probabilities are their mean (an ensemble of their models), scored like any run.
Percentages are formatted strings ("n/a" where undefined), ready for a table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bt_core import runs
from bt_core.errors import BTError
from bt_core.evaluation import calibration, metrics, stats


def test_scores(rec: dict, use_temperature: bool) -> tuple[np.ndarray, np.ndarray]:
    """The run's test labels and tumour probabilities (temperature-scaled if asked and stored)."""
    y = np.asarray(rec["test"]["y"], dtype=int)
    prob = np.asarray(rec["test"]["prob"], dtype=float)
    temperature = float((rec.get("calibration") or {}).get("temperature", 1.0))
    if use_temperature and temperature != 1.0:
        prob = np.asarray(calibration.apply_temperature(prob, temperature), dtype=float)
    return y, prob


def oof_curves(rec: dict) -> dict:
    """``{"fold k": (y, prob)}`` from the out-of-fold predictions, plus all folds pooled."""
    oof = rec.get("oof") or {}
    labels = np.asarray((rec.get("data") or {}).get("labels", []), dtype=int)
    idx, prob, fold = (np.asarray(oof.get(k, [])) for k in ("idx", "prob", "fold"))
    if not idx.size or not labels.size:
        return {}
    y = labels[idx.astype(int)]
    curves = {f"fold {k}": (y[fold == k], prob[fold == k].astype(float)) for k in sorted(set(fold.tolist()))}
    curves["all folds pooled"] = (y, prob.astype(float))
    return curves


def same_test_images(rec_a: dict, rec_b: dict) -> str | None:
    """None when both runs were scored on the same test images, else the reason they were not."""
    da, db = rec_a.get("data") or {}, rec_b.get("data") or {}
    if da.get("fingerprint") and db.get("fingerprint") and da["fingerprint"] != db["fingerprint"]:
        return "the two runs used different data sets"
    if rec_a["test"].get("idx") != rec_b["test"].get("idx"):
        return "the two runs were scored on different test images (different splits)"
    if rec_a["test"].get("y") != rec_b["test"].get("y"):
        return "the two runs' test labels differ"
    return None


def per_source_table(rec: dict, y: np.ndarray, prob: np.ndarray, threshold: float) -> pd.DataFrame | None:
    """Test metrics per data source (``record["test"]["source"]``), or None for a run on one source."""
    names = runs.prediction_sources(rec)
    if not names or len(set(names)) < 2:
        return None
    names, rows = np.asarray(names), []
    for src in dict.fromkeys(names.tolist()):
        m = names == src
        bm = metrics.binary_metrics(y[m], prob[m], threshold)
        rows.append({"source": src, "n": int(m.sum()), "tumour": int(y[m].sum()),
                     "AUC": "n/a" if not np.isfinite(bm["auc"]) else f"{bm['auc']:.3f}",
                     **{k: metrics.pct(bm[k]) for k in ("accuracy", "sensitivity", "specificity")}})
    return pd.DataFrame(rows)


def sources_table(rec: dict) -> pd.DataFrame | None:
    """Per source of a multi-source run: images, tumour / no tumour, images trained on, and the out-of-fold
    accuracy at 0.5 where the record holds each image's source; None for a run on one source."""
    data = rec.get("data") or {}
    sources = [s for s in data.get("sources") or [] if isinstance(s, dict)]
    if len(sources) < 2:
        return None
    oof, per_image = rec.get("oof") or {}, data.get("source") or []
    labels = data.get("labels") or []
    rows = []
    for s in sources:
        row = {"source": s.get("name"), "family": s.get("family", ""), "images": s.get("n"), "tumour": s.get("yes"),
               "no tumour": s.get("no"), "trained on": (data.get("trained_on") or {}).get(s.get("name"))}
        try:
            hits = [(int(labels[i]), float(p)) for i, p in zip(oof.get("idx", []), oof.get("prob", []))
                    if per_image[i] == s.get("name")]
        except (IndexError, TypeError, ValueError):
            hits = []
        row["out-of-fold accuracy"] = (f"{100 * np.mean([(p >= 0.5) == y for y, p in hits]):.1f}%" if hits else "n/a")
        rows.append(row)
    return pd.DataFrame(rows)


def _fold_sizes(rec: dict) -> tuple[float, float]:
    folds = rec.get("folds", [])
    return (float(np.mean([len(f.get("train_idx", [])) for f in folds])),
            float(np.mean([len(f.get("val_idx", [])) for f in folds])))


def compare(rec_a: dict, rec_b: dict, names: tuple[str, str], key: str = "accuracy") -> dict:
    """Both t-tests on the per-fold ``key`` of two runs -> {"rows": table rows, "sentences": [...], "warning"}."""
    a = [float(f["metrics"][key]) for f in rec_a.get("folds", [])]
    b = [float(f["metrics"][key]) for f in rec_b.get("folds", [])]
    if len(a) != len(b):
        raise BTError(f"the runs have {len(a)} and {len(b)} folds; a paired test needs the same folds")
    warning = None
    same_data = (rec_a.get("data") or {}).get("fingerprint") == (rec_b.get("data") or {}).get("fingerprint")
    same_folds = all(fa.get("val_idx") == fb.get("val_idx") for fa, fb in zip(rec_a["folds"], rec_b["folds"]))
    if not (same_data and same_folds):
        warning = ("The two runs were not cross-validated on the same folds"
                   + ("" if same_data else " (not even on the same data)")
                   + ", so pairing fold i with fold i is only approximate.")
    n_train, n_test = _fold_sizes(rec_a)
    paired = stats.paired_ttest(a, b)
    corrected = stats.corrected_resampled_ttest(a, b, n_train=max(n_train, 1.0), n_test=n_test)
    rows, sentences = [], []
    for title, res in (("Paired t-test (the paper's)", paired),
                       ("Corrected resampled t-test (Nadeau & Bengio 2003)", corrected)):
        rows.append({"test": title, "mean difference (A − B)": f"{100 * res['mean_diff']:+.2f} points",
                     "t": f"{res['t']:.3f}", "df": res["df"], "p": f"{res['p']:.4f}"})
        sentences.append((title, stats.interpret(res["p"], what=key, diff=res["mean_diff"], names=names,
                                                 source="the folds")))
    return {"rows": rows, "sentences": sentences, "warning": warning}


def mean_of_runs(recs: list[dict]) -> dict:
    """A leave-one-source-out record whose probabilities are the mean of ``recs``' (same data, same held-out
    images in the same order); its per-source figures recomputed, its refusal checks dropped (they were fitted
    on one run's features, not on the mean's). Raises :class:`BTError` if the runs scored different images."""
    first = recs[0]
    if len({r["data"]["fingerprint"] for r in recs}) > 1 or any(r["held_out"].keys() != first["held_out"].keys() for r in recs):
        raise BTError("the runs must hold out the same families of the same data")
    held = {}
    for fam, h in first["held_out"].items():
        parts = [r["held_out"][fam] for r in recs]
        if any(x["idx"] != h["idx"] for x in parts):
            raise BTError(f"the runs scored different images of {fam}")
        prob = np.mean([x["prob"] for x in parts], axis=0)
        held[fam] = {**h, "prob": prob.tolist(), "seconds": sum(x["seconds"] for x in parts),
                     "per_source": metrics.per_source_metrics(h["y"], prob, h["source"])}
    ids = [r["id"] for r in recs]
    first = {k: v for k, v in first.items() if k != "checks"}
    return {**first, "id": "+".join(ids), "held_out": held, "wall_time_s": sum(r["wall_time_s"] for r in recs),
            "label": f"Mean probability of these {len(ids)} runs (an ensemble of their models)",
            "command": "python tools/sources_report.py --average " + " ".join(ids) + " (each run's command is in its section)"}
