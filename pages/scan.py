"""Check a scan: a whole series (DICOM files, one multi-frame DICOM or a NIfTI volume), slice by slice.

A thin page over :mod:`bt_core.data.series` (opening the scan), :mod:`bt_core.serving.volume` (scoring every
slice with each shipped model) and :func:`bt_core.evaluation.plots.slice_profile`: the tumour probability
of each shipped model per slice as a line plot, the most suspicious slices listed first, a slice slider
(opening on the most suspicious slice) and Grad-CAM on the chosen slice
(:meth:`~bt_core.serving.inference.Predictor.answer_and_explain`, :mod:`bt_core.explain.overlay`).
Scores are kept for this session only; nothing is written to disk. Decision support, not a diagnosis.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages.common import (KIND_NAMES, disclaimer, escape_md, load_predictor, scoring_slots, shipped_runs,  # first: routing
                          unseen_note)
from bt_core.data import series
from bt_core.errors import BTError
from bt_core.evaluation import plots
from bt_core.explain import overlay
from bt_core.serving import volume
from bt_core.serving.inference import REASON_FEATURES

TOP = 10  # most suspicious slices listed


def _models() -> dict:
    predictors = {}
    for kind, run_dir in shipped_runs().items():
        try:
            predictors[kind] = load_predictor(run_dir)
        except Exception as err:  # noqa: BLE001 - one broken model must not cost the other
            st.error(f"The {KIND_NAMES[kind]} model ({Path(run_dir).name}) could not be loaded: {err}")
    if not predictors:
        st.error("No shipped models are listed (trained_models/shipped.json is missing or empty).")
    return predictors


def _open(files: list[tuple[str, bytes]]):
    """-> (digest, Volume), memoised for this session (only the last scan is kept)."""
    digest = hashlib.sha256(b"".join(hashlib.sha256(n.encode() + b"\0" + d).digest() for n, d in files)).hexdigest()
    memo = st.session_state.setdefault("_scan_memo", {})
    if memo.get("digest") != digest:
        memo.clear()
        memo.update(digest=digest, volume=series.load_volume(files), scores={}, maps={})
    return digest, memo


def _scores(memo: dict, predictors: dict) -> dict:
    vol, todo = memo["volume"], {k: p for k, p in predictors.items() if k not in memo["scores"]}
    if todo:
        bar = st.progress(0.0, text="Waiting for a free scoring slot...")
        with scoring_slots():
            memo["scores"].update(volume.score_slices(todo, vol.slices, vol.labels,
                                                      progress=lambda f, text: bar.progress(f, text=text)))
        bar.empty()
    return {k: memo["scores"][k] for k in predictors}


def ranking_table(vol, answers: dict, predictors: dict, top: int = TOP) -> pd.DataFrame:
    """The ``top`` most suspicious slices: slice number, label, each model's probability (or its refusal)."""
    rows = []
    for i in volume.rank_slices(answers)[:top]:
        row = {"slice": i + 1, "label": vol.labels[i]}
        for kind, ans in answers.items():
            a = ans[i]
            row[predictors[kind].name] = f"refused: {a.reason or REASON_FEATURES}" if a.ood else f"{100 * a.prob:.1f}%"
        rows.append(row)
    return pd.DataFrame(rows)


def _explain(memo: dict, kind: str, predictor, index: int):
    key = (kind, index)
    if key not in memo["maps"]:
        pixels = memo["volume"].slices[index]
        with scoring_slots():
            answers, maps = predictor.answer_and_explain([pixels], [memo["volume"].labels[index]])
        memo["maps"][key] = (answers[0], np.asarray(maps[0], np.float32))
    return memo["maps"][key]


def _show_slice(memo: dict, predictors: dict, index: int, alpha: float) -> None:
    pixels = memo["volume"].slices[index]
    cols = st.columns(1 + len(predictors))
    cols[0].image(pixels, caption=memo["volume"].labels[index], width="stretch")
    for col, (kind, pred) in zip(cols[1:], predictors.items()):
        try:
            ans, heat = _explain(memo, kind, pred, index)
        except Exception as err:  # noqa: BLE001 - show it, keep the other model
            col.error(f"{KIND_NAMES[kind]}: no Grad-CAM ({err if isinstance(err, BTError) else type(err).__name__})")
            continue
        if ans.ood:
            col.warning(f"**{KIND_NAMES[kind]} ({pred.name}) refused: {ans.reason or REASON_FEATURES}.** "
                        "Its probability for this slice would not mean anything.", icon=":material/warning:")
            with col.expander("Show the answer anyway (for teaching; not reliable)"):
                st.markdown(f"Tumour probability {100 * ans.prob:.1f}%.")
            continue
        col.image(overlay.overlay(pixels, heat, alpha=alpha), caption=f"{KIND_NAMES[kind]} Grad-CAM", width="stretch")
        col.metric(f"{KIND_NAMES[kind]} tumour probability", f"{100 * ans.prob:.1f}%",
                   help=f"{pred.name}; threshold {ans.threshold:.2f}")
        col.markdown(f"At threshold {ans.threshold:.2f}: **{ans.decision}**")


def main() -> None:
    st.title("Check a scan")
    disclaimer()
    predictors = _models()
    uploads = st.file_uploader("A scan: the DICOM files of one series, one multi-frame DICOM, or a NIfTI volume "
                               "(.nii, .nii.gz)", accept_multiple_files=True, key="scan_files")
    if not predictors:
        st.stop()
    if not uploads:
        st.caption("Every slice is scored by each shipped model; files stay in memory for this session only.")
        return
    files = [(up.name, up.getvalue()) for up in uploads]
    try:
        _, memo = _open(files)
    except BTError as err:
        st.error(f"This scan could not be opened: {escape_md(err)}")
        return
    vol = memo["volume"]
    st.caption(" · ".join(escape_md(n) for n in [vol.name, *vol.notes]))
    answers = _scores(memo, predictors)
    curves = {pred.name: [None if a.ood else a.prob for a in answers[k]] for k, pred in predictors.items()}
    ranked = volume.rank_slices(answers)
    index = ranked[0] if ranked else 0
    if len(vol) > 1:
        index = st.slider("Slice", 1, len(vol), value=index + 1, key=f"scan_slice_{memo['digest'][:12]}") - 1
    st.plotly_chart(plots.slice_profile(curves, index, {p.name: p.threshold for p in predictors.values()},
                                        vol.labels), key="scan_profile")
    st.subheader("Most suspicious slices")
    st.dataframe(ranking_table(vol, answers, predictors), hide_index=True, key="scan_ranking")
    st.subheader(f"Slice {index + 1} of {len(vol)}")
    alpha = st.slider("Heatmap opacity", 0.0, 1.0, overlay.DEFAULT_ALPHA, 0.05, key="scan_alpha")
    _show_slice(memo, predictors, index, alpha)
    unseen_note(predictors, {k: p.threshold for k, p in predictors.items()})
    disclaimer()


main()
