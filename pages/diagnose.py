"""Check slices: upload MRI slices (or pick bundled examples) and see each shipped model's answer.

For every image: the tumour probability of the shipped CNN and transfer models, the decision at a
threshold set in the sidebar (default: each model's own operating threshold), a warning instead of
an answer when a model's check refuses the image, saying which model refused and why (``Answer.reason``:
unlike the training data, not a brain MRI slice?; the answer can still be shown for teaching), the loader's notes, and Grad-CAM (or
Grad-CAM++) overlays side by side: original | CNN | transfer (the paper's Figures 6 and 7).
Under the table, what each model's answers at its threshold met on sources it never saw (its recipe's
leave-one-source-out run). Downloads: each overlay as PNG, the batch as CSV. Uploads stay in memory
(this session's state only); nothing is written to disk. The scoring is :func:`bt_core.serving.batch.score_batch`; this page
draws it. Decision support, not a diagnosis.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from bt_core.explain import overlay
from bt_core.serving import batch
from bt_core.serving.inference import REASON_FEATURES, REASON_STATISTICS
from pages.common import (KIND_NAMES, disclaimer, escape_md, load_predictor, scoring_slots, shipped_runs,
                          unseen_note)

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
UPLOAD_TYPES = ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "gif", "webp", "dcm"]
METHOD_LABELS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
REFUSAL_DETAILS = {
    REASON_FEATURES: "Its features lie far from the slices the model learned from (distance check on the model's "
                     "own features); its probability would not mean anything.",
    REASON_STATISTICS: "Its intensity statistics are unlike the training slices (a photo, a screenshot, another "
                       "body part or another kind of scan?); its probability would not mean anything."}
MAX_IMAGES = 24          # per batch, to keep a shared CPU responsive
DISPLAY_MAX = 512        # longest side of the shown (and downloaded) image


def _display_pixels(pixels: np.ndarray) -> np.ndarray:
    """Downscale (never upscale) so the longest side is at most DISPLAY_MAX."""
    h, w = pixels.shape
    if max(h, w) <= DISPLAY_MAX:
        return pixels
    scale = DISPLAY_MAX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def refusal_text(kind: str, model_name: str, ans, refused_by: dict) -> str:
    """Who refused the image and why, in one bold line and one plain sentence."""
    who = f"{KIND_NAMES.get(kind, kind)} ({model_name})"
    if kind not in refused_by:
        return f"**{who}: no answer — {ans.reason or REASON_FEATURES}.** One check's refusal holds for every model."
    why = refused_by[kind]
    detail = REFUSAL_DETAILS.get(why, "The model's own check refused it; its probability would not mean anything.")
    return f"**{who} refused: {why}.** {detail}"


@st.cache_data
def example_labels() -> dict:
    """The bundled examples' true labels and sources (``examples/labels.csv``, written by tools/pick_examples.py)."""
    path = EXAMPLES_DIR / "labels.csv"
    if not path.is_file():
        return {}
    return {r["file"]: r for r in pd.read_csv(path, dtype=str).fillna("").to_dict("records")}


def _gather_files() -> list[tuple[str, bytes]]:
    uploads = st.file_uploader("MRI slices (JPEG, PNG, BMP, TIFF, GIF, WebP or DICOM; up to 20 MB each)",
                               type=UPLOAD_TYPES, accept_multiple_files=True, key="uploads")
    files = [(up.name, up.getvalue()) for up in uploads or []]
    examples = sorted(EXAMPLES_DIR.glob("*.png")) if EXAMPLES_DIR.is_dir() else []
    if examples:
        picked = st.multiselect("...or try bundled example slices (real LGG and IXI slices with their true labels,"
                                " see examples/README.md)", [p.name for p in examples], key="examples")
        files += [(name, (EXAMPLES_DIR / name).read_bytes()) for name in picked]
    if len(files) > MAX_IMAGES:
        st.warning(f"{len(files)} images chosen: only the first {MAX_IMAGES} are checked in one batch.")
        files = files[:MAX_IMAGES]
    return files


def _load_models() -> dict:
    shipped, predictors = shipped_runs(), {}
    if not shipped:
        st.error("No shipped models are listed (trained_models/shipped.json is missing or empty). "
                 "Train a run and list it there, or use the Train page.")
    for kind, run_dir in shipped.items():
        try:
            predictors[kind] = load_predictor(run_dir)
        except Exception as err:  # noqa: BLE001 - one broken model must not cost the other
            st.error(f"The {KIND_NAMES[kind]} model ({Path(run_dir).name}) could not be loaded: {batch.short_error(err)}. "
                     "The other model is still used.")
    return predictors


def _sidebar(predictors: dict) -> tuple[dict, str, float]:
    side = st.sidebar
    side.header("Settings")
    thresholds = {}
    for kind, pred in predictors.items():
        thresholds[kind] = side.slider(
            f"{KIND_NAMES[kind]} threshold", 0.0, 1.0, value=float(pred.threshold), step=0.01, key=f"thr_{kind}",
            help=f"Call 'tumour' when the probability is at least this. Default {pred.threshold:.3f}: "
                 "this model's own operating threshold.")
    method = side.radio("Explanation", list(METHOD_LABELS), format_func=METHOD_LABELS.get, key="method",
                        help="Grad-CAM (Selvaraju et al. 2017) or Grad-CAM++ (Chattopadhay et al. 2018): where "
                             "the model looked, not where a tumour is.")
    alpha = side.slider("Heatmap opacity", 0.0, 1.0, overlay.DEFAULT_ALPHA, 0.05, key="alpha")
    return thresholds, method, alpha


def _show_result(res: dict, predictors: dict, method: str, alpha: float, index: int) -> None:
    with st.container(border=True):
        st.subheader(escape_md(res["name"]))
        for note in res["notes"]:
            st.caption(f"Note: {escape_md(note)}")
        shown = _display_pixels(res["pixels"])
        cols = st.columns(1 + len(predictors))
        truth = example_labels().get(res["name"])
        mask = EXAMPLES_DIR / "masks" / res["name"]
        if truth and mask.is_file():
            cols[0].image(overlay.outline(shown, np.asarray(Image.open(mask).convert("L"))),
                          caption="original, expert tumour outline in green", width="stretch")
        else:
            cols[0].image(shown, caption="original", width="stretch")
        if truth:
            cols[0].markdown(f"True label: **{truth['label']}** ({truth['source']}, {truth['plane']})")
        for col, (kind, pred) in zip(cols[1:], predictors.items()):
            ans = res["answers"].get(kind)
            if ans is None:
                col.error(f"{KIND_NAMES[kind]}: no answer (see the error above).")
                continue
            if ans.ood:
                col.warning(refusal_text(kind, pred.name, ans, res.get("refused_by", {})), icon=":material/warning:")
                with col.expander("Show the answer anyway (for teaching; not reliable)"):
                    far = (f", distance to the training data {ans.ood_score:.2f}x the flagging threshold"
                           if ans.ood_score is not None else "")
                    st.markdown(f"Tumour probability {100 * ans.prob:.1f}%{far}.")
                continue
            blended = overlay.overlay(shown, res["heatmaps"][kind], alpha=alpha)
            col.image(blended, caption=f"{KIND_NAMES[kind]} {METHOD_LABELS[method]}", width="stretch")
            if not np.any(res["heatmaps"][kind] > 0):
                col.caption("The heatmap is flat: no region pushed the model towards this answer.")
            col.metric(f"{KIND_NAMES[kind]} tumour probability", f"{100 * ans.prob:.1f}%",
                       help=f"{pred.name}; threshold {ans.threshold:.2f}")
            col.markdown(f"At threshold {ans.threshold:.2f}: **{ans.decision}**"
                         + (f" (it sees an {ans.plane} slice)" if ans.plane == "axial" else ""))
            col.download_button("Overlay PNG", overlay.to_png_bytes(blended), icon=":material/download:",
                                file_name=f"{Path(res['name']).stem}_{kind}_{method.replace('+', 'pp')}.png",
                                mime="image/png", key=f"png_{index}_{kind}", on_click="ignore")


def main() -> None:
    st.title("Check MRI slices")
    disclaimer()
    predictors = _load_models()
    thresholds, method, alpha = _sidebar(predictors)
    files = _gather_files()
    if not predictors:
        st.stop()
    if not files:
        st.caption("Upload axial brain MRI slices, or pick an example. Files are kept in memory for this "
                   "session only and never written to disk.")
        return
    bar = st.progress(0.0, text="Waiting for a free scoring slot...")
    with scoring_slots():
        results, errors = batch.score_batch(files, predictors, thresholds, method,
                                            memo=st.session_state.setdefault("_diagnose_memo", {}),
                                            progress=lambda done, text: bar.progress(done, text=text))
    bar.empty()
    if errors:
        st.error("Some files could not be checked:\n\n" + "\n".join(f"- {escape_md(msg)}" for _, msg in errors))
    if not results:
        return
    table = batch.batch_table(results, predictors, errors)
    st.subheader("Results")
    st.dataframe(table, hide_index=True, column_config={
        "prob": st.column_config.NumberColumn("tumour probability", format="%.3f"),
        "threshold": st.column_config.NumberColumn(format="%.2f")})
    st.download_button("Results as CSV", table.to_csv(index=False).encode(), file_name="bt_results.csv",
                       mime="text/csv", icon=":material/download:", key="csv", on_click="ignore")
    unseen_note(predictors, thresholds)
    disclaimer()
    for i, res in enumerate(results):
        _show_result(res, predictors, method, alpha, i)


main()
