"""Cross-validation explorer: per-fold metrics and learning curves of runs, and a test of two runs.

For each chosen run: the paper's Table 1 layout (Fold 1..k, Mean, Variance; percentages, variance
in %² as the paper prints it) and its learning curves (Graphics 1 and 2). For two runs: the paper's
paired t-test on per-fold scores and Nadeau & Bengio's corrected resampled t-test, which allows for
the training sets of the folds overlapping, each with a one-sentence reading. Opens on the shipped CNN
beside the shipped transfer model; a run trained on several sources also gets a table per source.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from bt_core.evaluation import metrics, plots, records
from bt_core.errors import BTError
from pages.common import disclaimer, pick_runs

TABLE_KEYS = ("accuracy", "sensitivity", "specificity", "auc")
COMPARE_KEYS = ("accuracy", "sensitivity", "specificity")


def _config_line(rec: dict) -> str:
    cfg = rec.get("config", {})
    model = cfg.get("model", "?") + (f" on {cfg.get('backbone')}" if cfg.get("model") == "transfer" else "")
    split = "random split (leaky: near-duplicate slices may sit in training and validation)" \
        if cfg.get("split") == "random" else "group-aware split (near-duplicates kept together)"
    hw = rec.get("hardware") or {}
    parts = [model, split, f"{cfg.get('epochs', '?')} epochs", f"{len(rec.get('folds', []))} folds",
             f"{(rec.get('data') or {}).get('n', '?')} images"]
    if rec.get("wall_time_s") is not None:
        parts.append(f"{rec['wall_time_s'] / 60:.1f} min on {hw.get('backend', '?')}")
    return " · ".join(parts)


def _show_run(rec: dict) -> None:
    st.caption(_config_line(rec))
    table = records.sources_table(rec)
    if table is not None:
        st.dataframe(table, hide_index=True, key=f"sources_{rec.get('id')}")
    folds = rec.get("folds", [])
    try:
        table = metrics.fold_table([f["metrics"] for f in folds], keys=TABLE_KEYS)
    except BTError as err:
        st.warning(f"No fold table: {err}")
    else:
        st.dataframe(plots.fold_table_display(table))
        st.caption("Validation metrics of each fold at threshold 0.5. Variance: sample variance of the "
                   "percentages (%²), the unit of the paper's Table 1.")
    st.plotly_chart(plots.learning_curves(rec), key=f"curves_{rec.get('id')}")


def _show_comparison(by_label: dict, chosen: list[str]) -> None:
    st.header("Compare two runs")
    c1, c2, c3 = st.columns([2, 2, 1])
    name_a = c1.selectbox("Run A", chosen, index=0, key="cmp_a")
    name_b = c2.selectbox("Run B", chosen, index=1, key="cmp_b")
    key = c3.selectbox("Score", COMPARE_KEYS, key="cmp_key")
    if name_a == name_b:
        st.info("Choose two different runs.")
        return
    try:
        out = records.compare(by_label[name_a], by_label[name_b], ("A", "B"), key)
    except BTError as err:
        st.warning(f"No test: {err}")
        return
    if out["warning"]:
        st.warning(out["warning"])
    st.dataframe(pd.DataFrame(out["rows"]), hide_index=True)
    for title, sentence in out["sentences"]:
        st.markdown(f"**{title}:** {sentence}")
    st.caption(f"A = {name_a}; B = {name_b}. The plain paired t-test treats the folds as independent, but "
               "their training sets overlap, which makes it too eager to find a difference; the corrected "
               "test multiplies the variance by 1/k + n_test/n_train. With 3 folds neither test has much power.")


def main() -> None:
    st.title("Cross-validation explorer")
    disclaimer()
    by_label, chosen = pick_runs("folds", "No cross-validated runs yet: run `python -m bt_core cv ...` or use the Train page.")
    if not chosen:
        return
    tabs = st.tabs(chosen)
    for tab, label in zip(tabs, chosen):
        with tab:
            _show_run(by_label[label])
    if len(chosen) >= 2:
        _show_comparison(by_label, chosen)



try:
    main()
except BTError as err:  # a malformed run record: one line, never a traceback
    st.error(f"This page could not be drawn: {err}")
