"""Test-set evaluation: ROC curves (Graphic 3), metrics side by side (Graphic 4), thresholds, calibration.

For the chosen runs, on each run's held-out test images: ROC curves with AUC (bootstrap 95% CI),
accuracy / sensitivity / specificity at a threshold set with a slider and the sensitivity-specificity
trade-off, confusion matrices, per-fold ROC curves from the out-of-fold predictions, reliability
diagrams with ECE, and for two runs scored on the same test images McNemar's test (decisions) and
DeLong's test (AUC). Where a run stores a temperature (calibration), its probabilities can be
rescaled first. Opens on the shipped CNN beside the shipped transfer model; a run trained on several
sources also gets a small table of its test metrics per source.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from bt_core.evaluation import calibration, metrics, plots, records, stats
from bt_core.errors import BTError
from pages.common import disclaimer, pick_runs, run_description


def _summary(scores: dict, threshold: float) -> pd.DataFrame:
    rows = []
    for label, (y, prob) in scores.items():
        ci = metrics.metrics_with_ci(y, prob, threshold)
        row = {"run": label, "n": int(y.size)}
        for key in ("auc", "accuracy", "sensitivity", "specificity"):
            c = ci[key]
            value = f"{c['value']:.3f}" if key == "auc" else metrics.pct(c["value"])
            low, high = (f"{c['low']:.3f}", f"{c['high']:.3f}") if key == "auc" else (metrics.pct(c["low"]), metrics.pct(c["high"]))
            row["AUC" if key == "auc" else key] = value if not np.isfinite(c["low"]) else f"{value} ({low}–{high})"
        rows.append(row)
    return pd.DataFrame(rows)


def _pair_tests(by_label: dict, chosen: list[str], scores: dict, threshold: float) -> None:
    st.header("Are two runs different on the same test images?")
    c1, c2 = st.columns(2)
    name_a = c1.selectbox("Run A", chosen, index=0, key="pair_a")
    name_b = c2.selectbox("Run B", chosen, index=1, key="pair_b")
    if name_a == name_b:
        st.info("Choose two different runs.")
        return
    why = records.same_test_images(by_label[name_a], by_label[name_b])
    if why:
        st.info(f"No McNemar or DeLong test: {why}. Both tests compare two models on the very same images.")
        return
    (y, pa), (_, pb) = scores[name_a], scores[name_b]
    try:
        mc = stats.mcnemar_test(y, (pa >= threshold).astype(int), (pb >= threshold).astype(int))
        acc_diff = float(np.mean((pa >= threshold) == y) - np.mean((pb >= threshold) == y))
        st.markdown(f"**McNemar (decisions at threshold {threshold:.2f}):** "
                    + stats.interpret(mc["p"], what="accuracy", diff=acc_diff, names=("A", "B"),
                                      source="the test images"))
        st.caption(f"A right and B wrong: {mc['b']} images; A wrong and B right: {mc['c']}; "
                   f"{'exact binomial' if mc['exact'] else 'chi-square'} p = {mc['p']:.4f}.")
    except BTError as err:
        st.warning(f"No McNemar test: {err}")
    try:
        dl = stats.delong_test(y, pa, pb)
        st.markdown("**DeLong (AUC):** " + stats.interpret(dl["p"], what="AUC", diff=dl["auc_a"] - dl["auc_b"],
                                                            names=("A", "B"), source="the test images"))
        st.caption(f"AUC A {dl['auc_a']:.3f}, AUC B {dl['auc_b']:.3f}, z = {dl['z']:.2f}, p = {dl['p']:.4f}.")
    except BTError as err:
        st.warning(f"No DeLong test: {err}")
    st.caption(f"A = {name_a}; B = {name_b}.")


def main() -> None:
    st.title("Test-set evaluation")
    disclaimer()
    by_label, chosen = pick_runs("test", "No runs with test-set predictions yet: train one with `python -m bt_core cv ...` "
                       "or the Train page.")
    if not chosen:
        return
    has_temperature = any((by_label[c].get("calibration") or {}).get("temperature") for c in chosen)
    use_t = st.toggle("Apply each run's calibration (temperature)", value=True, key="use_t") if has_temperature \
        else False
    threshold = st.slider("Decision threshold (tumour if probability ≥ threshold)", 0.0, 1.0, 0.5, 0.01,
                          key="threshold")
    scores = {c: records.test_scores(by_label[c], use_t) for c in chosen}

    st.header("ROC curves")
    st.plotly_chart(plots.roc_figure(scores, "Test-set ROC", {c: run_description(by_label[c]) for c in chosen}),
                    key="roc", width="content")
    cols = st.columns(len(chosen))
    for col, label in zip(cols, chosen):
        auc = metrics.binary_metrics(*scores[label])["auc"]
        col.metric(f"AUC — {label}", "n/a" if not np.isfinite(auc) else f"{auc:.3f}")
    st.dataframe(_summary(scores, threshold), hide_index=True)
    st.caption("95% intervals: Wilson for proportions, stratified bootstrap (1000 resamples) for AUC.")
    tables = {c: records.per_source_table(by_label[c], *scores[c], threshold) for c in chosen}
    if any(t is not None for t in tables.values()):
        st.subheader(f"Per source, at threshold {threshold:.2f}")
        for label, table in tables.items():
            if table is not None:
                st.markdown(f"**{label}**")
                st.dataframe(table, hide_index=True, key=f"src_{label}")

    st.header("Sensitivity and specificity at the threshold")
    for label in chosen:
        y, prob = scores[label]
        m = metrics.binary_metrics(y, prob, threshold)
        op = (by_label[label].get("operating_point") or {}).get("threshold")
        st.subheader(label)
        c1, c2, c3 = st.columns(3)
        c1.metric(f"Sensitivity — {label}", metrics.pct(m["sensitivity"]))
        c2.metric(f"Specificity — {label}", metrics.pct(m["specificity"]))
        c3.metric("Operating threshold of the run", "0.5 (default)" if op is None else f"{float(op):.3f}")
        st.plotly_chart(plots.threshold_tradeoff(y, prob, threshold), key=f"trade_{label}")
    rows = [{"name": label, **metrics.binary_metrics(*scores[label], threshold)} for label in chosen]
    st.plotly_chart(plots.metric_bars(rows, title=f"Test-set metrics at threshold {threshold:.2f}"), key="bars")
    cols = st.columns(len(chosen))
    for col, label in zip(cols, chosen):
        col.plotly_chart(plots.confusion_heatmap(metrics.confusion(*scores[label], threshold), label),
                         key=f"cm_{label}")

    st.header("ROC per fold (out-of-fold predictions)")
    with_oof = [c for c in chosen if records.oof_curves(by_label[c])]
    if with_oof:
        pick = st.selectbox("Run", with_oof, key="oof_run")
        st.plotly_chart(plots.roc_figure(records.oof_curves(by_label[pick]), "Cross-validation ROC"), key="oof",
                        width="content")
        st.caption(f"Out-of-fold predictions of {pick}.")
    else:
        st.caption("None of the chosen runs was cross-validated.")

    st.header("Calibration")
    cols = st.columns(len(chosen))
    for col, label in zip(cols, chosen):
        y, prob = scores[label]
        col.metric(f"ECE — {label}", f"{calibration.expected_calibration_error(y, prob):.3f}")
        col.plotly_chart(plots.reliability_diagram(y, prob, name=label, title=label), key=f"rel_{label}")
    st.caption("ECE: count-weighted gap between the observed tumour rate and the mean predicted probability "
               "(15 equal-width bins); 0 is perfect. Few test images make both noisy.")

    if len(chosen) >= 2:
        _pair_tests(by_label, chosen, scores, threshold)



try:
    main()
except BTError as err:  # a malformed run record: one line, never a traceback
    st.error(f"This page could not be drawn: {err}")
