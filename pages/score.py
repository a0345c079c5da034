"""Score your data: how the shipped models do on a labelled set of your own slices.

A thin page over :mod:`bt_core.data.archive` (an uploaded zip, read in memory: ``yes/`` and ``no/``
folders, or images with a CSV of ``file,label``), :func:`bt_core.data.sources.load_sources` (a folder under
``BT_DATA_ROOTS``, checked by :func:`bt_core.serving.launcher.check_data_dir`) and
:mod:`bt_core.evaluation.scoring` (scored ``BATCH`` = 32 images at a time, with a progress bar).
Shown per model: metric tiles with 95% confidence intervals (only the figures the labels define: one
class alone gives specificity or sensitivity, and accuracy), the ROC curve (both classes only), the
confusion matrix, the reliability diagram, the share the out-of-distribution check flags and the
accuracy on the rest, and a per-image table with thumbnails, misses first, with a CSV download.
Results are kept for this session only. Decision support, not a diagnosis.
"""
from __future__ import annotations

import base64
import hashlib
import io

import pandas as pd
import streamlit as st
from PIL import Image

from pages.common import KIND_NAMES, data_folders, disclaimer, load_predictor, scoring_slots, shipped_runs
from bt_core.data import archive, sources
from bt_core.errors import BTError
from bt_core.evaluation import metrics, plots, scoring
from bt_core.serving import launcher

BATCH = 32
THUMB_PX, THUMB_ROWS = 64, 300  # thumbnails for the first rows of each table (misses first)
MEMO_ENTRIES = 4
ROC_PX = 460  # ROC figure height; its width is 25 px less, so the plot area is square
LABELS = {"accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity", "auc": "AUC"}
MODES = ("Upload a zip", "A folder on the server")


def _choose_data():
    """-> (memo key, loader(progress) -> (pixels, labels, names, skipped, what)) or (None, None)."""
    mode = st.radio("Your data", MODES, horizontal=True, key="score_mode")
    if mode == MODES[0]:
        up = st.file_uploader("A zip of labelled slices: yes/ and no/ folders (one class alone is fine), or images "
                              "with a CSV of file,label", type=["zip"], key="score_zip")
        if up is None:
            return None, None
        blob = up.getvalue()

        def load_zip(progress):
            got = archive.read_archive(blob, progress=progress)
            return got.pixels, got.labels, got.names, got.skipped, up.name
        return ("zip", hashlib.sha256(blob).hexdigest()), load_zip
    roots, folders = data_folders(both=False)
    if not folders:
        st.info("No data folder is available on this server: the operator lists allowed folders in BT_DATA_ROOTS.")
        return None, None
    path = st.selectbox("Folder (with yes/ and/or no/)", folders, index=None, key="score_folder",
                        placeholder="Choose a folder")
    if not path:
        return None, None

    def load_folder(progress):
        real = launcher.check_data_dir(path, roots, both=False)
        ds = sources.load_sources([str(real)], progress=lambda _name, i, n: progress(i, n))
        return ds.images, ds.labels, ds.paths, ds.skipped, str(real)
    return ("folder", path), load_folder


def _score(loader, predictors: dict) -> dict:
    """Decode, then score with every chosen model, under a progress bar -> the result to show."""
    bar = st.progress(0.0, text="Reading the images...")
    share = 0.25  # of the bar, for decoding
    try:
        pixels, labels, names, skipped, what = loader(lambda i, n: bar.progress(share * i / max(n, 1),
                                                                                text=f"Reading image {i} of {n}..."))
        reports = {}
        with scoring_slots():
            for k, (kind, pred) in enumerate(predictors.items()):
                def step(done, total, k=k, name=pred.name):
                    frac = share + (1 - share) * (k + done / max(total, 1)) / len(predictors)
                    bar.progress(min(frac, 1.0), text=f"{name}: scored {done} of {total} images...")
                reports[kind] = scoring.score_predictor(pred, pixels, labels, names, batch_size=BATCH, progress=step)
    finally:
        bar.empty()
    shown = dict.fromkeys(r["index"] for rep in reports.values() for r in rep["table"][:THUMB_ROWS])
    return {"reports": reports, "skipped": skipped, "what": what, "thumbs": {i: _thumbnail(pixels[i]) for i in shown}}


def _thumbnail(pixels) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((THUMB_PX, THUMB_PX), Image.Resampling.BILINEAR).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _roc(name: str, y, prob):
    """The ROC curve, axes 0-1 at equal scale (a square plot area), the legend inside at the bottom right."""
    fig = plots.roc_figure({name: (y, prob)}, f"ROC curve — {name}")
    fig.update_layout(width=ROC_PX - 25, height=ROC_PX, legend=dict(x=0.98, y=0.02, xanchor="right", yanchor="bottom",
                                                                  bgcolor="rgba(255,255,255,0.8)"))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return fig


def _tiles(rep: dict, flagged_too: bool) -> None:
    shown = rep["shown"]
    cols = st.columns(len(shown) + 2)
    for col, key in zip(cols, shown):
        ci = rep["ci"][key]
        col.metric(LABELS[key], metrics.pct(ci["value"]) if key != "auc" else f"{ci['value']:.3f}",
                   help=f"95% confidence interval ({'bootstrap' if key == 'auc' else 'Wilson'})")
        col.caption(f"95% CI {metrics.pct(ci['low'])} to {metrics.pct(ci['high'])}" if key != "auc"
                    else f"95% CI {ci['low']:.3f} to {ci['high']:.3f}")
    if flagged_too and rep["flagged"] is not None:
        cols[len(shown)].metric("Flagged unlike training data", metrics.pct(rep["flagged"]["share"]),
                                help=f"{rep['flagged']['count']} of {rep['n']} images get no answer in the app")
        acc = rep["accepted"]["accuracy"] if rep["accepted"] else None
        cols[len(shown) + 1].metric("Accuracy on the rest", metrics.pct(acc),
                                    help="accuracy on the images the out-of-distribution check accepts")


def _table(rep: dict, thumbs: dict, model: str) -> pd.DataFrame:
    df = pd.DataFrame(rep["table"])
    df.insert(0, "thumbnail", [thumbs.get(i) for i in df["index"]])
    df.insert(1, "model", model)
    return df.drop(columns=["index"])


def _show_model(kind: str, pred, rep: dict, thumbs: dict) -> None:
    _tiles(rep, True)
    st.caption(f"{rep['n']} images ({rep['n_tumour']} tumour, {rep['n_no_tumour']} no tumour) at this model's "
               f"threshold {rep['threshold']:.2f}.")
    y = [0 if r["label"] == "no tumour" else 1 for r in rep["table"]]
    prob = [r["prob"] for r in rep["table"]]
    left, right = st.columns(2)
    if rep["roc"] is not None:
        left.plotly_chart(_roc(pred.name, y, prob), key=f"roc_{kind}", width="content")
    else:
        only = "no-tumour" if rep["classes"] == "no" else "tumour"
        left.info(f"Only {only} images: the ROC curve and AUC need both classes, so "
                  f"{'specificity' if only == 'no-tumour' else 'sensitivity'} and accuracy are shown.")
    right.plotly_chart(plots.reliability_diagram(y, prob, name=pred.name), key=f"rel_{kind}")
    left.plotly_chart(plots.confusion_heatmap(rep["confusion"], f"Confusion matrix — {pred.name}"),
                      key=f"cm_{kind}")
    table = _table(rep, thumbs, pred.name)
    st.dataframe(table, hide_index=True, key=f"table_{kind}", column_config={
        "thumbnail": st.column_config.ImageColumn("slice", width="small"),
        "prob": st.column_config.NumberColumn("tumour probability", format="%.3f"),
        "correct": st.column_config.CheckboxColumn("correct"),
        "flagged": st.column_config.CheckboxColumn("unlike training data")})
    if len(table) > THUMB_ROWS:
        st.caption(f"Thumbnails for the first {THUMB_ROWS} rows.")
    st.download_button("Per-image results as CSV", table.drop(columns=["thumbnail"]).to_csv(index=False).encode(),
                       file_name=f"bt_scores_{kind}.csv", mime="text/csv", icon=":material/download:",
                       key=f"csv_{kind}", on_click="ignore")


def main() -> None:
    st.title("Score your data")
    disclaimer()
    st.caption("How well do the shipped models do on your own labelled slices? Uploads are read in memory "
               "and never written to disk.")
    shipped = shipped_runs()
    if not shipped:
        st.error("No shipped models are listed (trained_models/shipped.json is missing or empty).")
        st.stop()
    kinds = st.multiselect("Models", list(shipped), default=list(shipped), key="score_models",
                           format_func=lambda k: KIND_NAMES.get(k, k))
    key, loader = _choose_data()
    if not kinds or loader is None:
        return
    memo = st.session_state.setdefault("_score_memo", {})
    memo_key = (*key, *(shipped[k] for k in kinds))
    try:
        predictors = {k: load_predictor(shipped[k]) for k in kinds}
        if memo_key not in memo:
            memo[memo_key] = _score(loader, predictors)
            while len(memo) > MEMO_ENTRIES:
                memo.pop(next(iter(memo)))
    except BTError as err:
        st.error(str(err))
        return
    except Exception as err:  # noqa: BLE001 - a line, never a traceback
        st.error(f"Could not score this data: {type(err).__name__}: {str(err)[:200]}")
        return
    res = memo[memo_key]
    reports = res["reports"]
    first = next(iter(reports.values()))
    st.success(f"Scored {first['n']} images from {res['what']}.")
    if res["skipped"]:
        with st.expander(f"{len(res['skipped'])} file(s) skipped"):
            st.text("\n".join(res["skipped"][:500]))
    tabs = st.tabs([predictors[k].name for k in reports]) if len(reports) > 1 else [st.container()]
    for tab, (kind, rep) in zip(tabs, reports.items()):
        with tab:
            _show_model(kind, predictors[kind], rep, res["thumbs"])
    disclaimer()


main()
