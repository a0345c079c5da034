"""Unseen sources: how each recipe does on a source it never saw (leave-one-source-out runs).

The figure that matters to anyone who uploads their own scans. For the chosen leave-one-source-out
runs (``python -m bt_core loso``; those recorded in ``reports/runs`` and any in the run registry):
accuracy per held-out source side by side, each run's table (sensitivity, specificity, AUC), ROC curves
per held-out source, and the risk-coverage curve (accuracy when answering only the most confident
share). Opens on the runs of the shipped transfer model's recipe. Decision support, not a diagnosis.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from bt_core import runs
from bt_core.evaluation import held_out, plots
from bt_core.errors import BTError
from pages.common import disclaimer, hide_page_if_empty, shipped_runs

METRICS = ("accuracy", "sensitivity", "specificity", "auc")


@st.cache_data(ttl=60, show_spinner="Reading the leave-one-source-out runs...", max_entries=4)
def _listed(roots: tuple[str, ...]) -> list[dict]:
    return held_out.loso_runs(roots)


@st.cache_data(show_spinner=False, max_entries=16)
def _record(folder: str) -> dict:
    return runs.load_run(folder)


def _shipped_config() -> dict:
    folder = shipped_runs().get("transfer")
    try:
        return _record(str(folder)).get("config", {}) if folder else {}
    except (BTError, OSError, ValueError):
        return {}


def _pct_table(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for k in METRICS:
        out[k] = [("–" if not np.isfinite(v) else (f"{v:.3f}" if k == "auc" else f"{100 * v:.1f}%")) for v in out[k]]
    return out


st.title("Sources the model never saw")
st.markdown("Each run holds out one source family at a time (Br35H; LGG, its three sequences together; IXI; BraTS), "
            "trains on all the others and scores every image of the held-out one. This is what scans from a "
            "hospital the model never saw meet, and it is far below each source's own test split.")
listed = _listed((str(runs.default_root()), str(held_out.REPORTS_RUNS)))
hide_page_if_empty("No leave-one-source-out run found. Make one with `python -m bt_core loso --data A --data B ...`.",
                   listed)
by_label = {f"{r['label']} ({r['id']})": r for r in listed}
shipped_ids = held_out.recipe_runs(listed, _shipped_config())
default = [lab for lab, r in by_label.items() if r["id"] in shipped_ids][:2] or list(by_label)[:1]
chosen = st.multiselect("Leave-one-source-out runs", list(by_label), default=default, key="loso_runs",
                        help="Opens on the runs of the shipped transfer model's recipe.")
if not chosen:
    st.info("Choose one or more runs.")
    st.stop()
try:
    records = {lab: _record(by_label[lab]["dir"]) for lab in chosen}
except (BTError, OSError, ValueError) as err:
    st.error(f"cannot read that run: {err}")
    st.stop()

tables = {lab: held_out.source_table(rec) for lab, rec in records.items()}
side = pd.concat({by_label[lab]["id"]: t.set_index("held-out source")["accuracy"] for lab, t in tables.items()}, axis=1)
st.subheader("Accuracy on each held-out source (threshold 0.5)")
st.caption("One column per run (its id); what each run is, its other figures and its command are below.")
st.dataframe(side.map(lambda v: "–" if not np.isfinite(v) else f"{100 * v:.1f}%"), width="stretch")
disclaimer()

for lab, rec in records.items():
    with st.expander(f"{lab}: every figure, and the command that made it"):
        st.dataframe(_pct_table(tables[lab]), hide_index=True, width="stretch")
        st.code(rec.get("command", ""), language="bash", wrap_lines=True)
        checks = held_out.checks_table(rec)
        if checks is not None:
            st.markdown("**The app's refusal checks on the unseen source** (out-of-distribution and plane, fitted "
                        "on the other sources only): how much each refuses, and the accuracy on what is left.")
            shown = checks.copy()
            for k in shown.columns[2:]:
                shown[k] = ["–" if not np.isfinite(v) else f"{100 * v:.1f}%" for v in shown[k]]
            st.dataframe(shown, hide_index=True, width="stretch")

pick = st.selectbox("Curves of", chosen, key="loso_curves")
rec = records[pick]
st.plotly_chart(plots.roc_figure(held_out.source_scores(rec), title="ROC per held-out source"),
                width="content", key="loso_roc")
st.plotly_chart(plots.risk_coverage_figure(held_out.risk_coverage_curves(rec)), width="stretch", key="loso_rc")
st.caption("Risk-coverage: answer only the most confident share of each held-out family. Where the curve stays "
           "below the dotted line, no abstention threshold gives 95% accuracy on that unseen source.")
