"""Shared pieces of the dashboard pages: cached loaders of runs and models, labels, the disclaimer.

The run registry is :func:`bt_core.runs.default_root` (``trained_models/``; ``$BT_RUNS_DIR``
overrides it). ``<root>/shipped.json`` names the shipped runs: ``{"cnn": RUN_ID, "transfer": RUN_ID}``.
Models are cached once per process (``st.cache_resource``); records and the run list are cached as
data, keyed by the file's modification time (so keys added later to a run, e.g. a calibration, show).
Labelled data folders under ``BT_DATA_ROOTS`` (the Score and Train pages' pickers) are cached for 30 s.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import streamlit as st

from bt_core import runs
from bt_core.errors import BTError
from bt_core import DISCLAIMER
from bt_core.serving import data_roots

KIND_NAMES = runs.SHIPPED_KINDS


def _route_through_navigation() -> None:
    """A link straight to a page (``/explore``) that is the first request after the server starts is
    run by Streamlit's older ``pages/``-folder mode, which lists every file in the sidebar. Leave that
    mode and rerun once, so streamlit_app.py's ``st.navigation`` routes every request."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_route_through_navigation()


def escape_md(text) -> str:
    """Escape markdown so a file name or message is shown as typed."""
    return "".join("\\" + c if c in "\\`*_{}[]()<>#+-.!|~$" else c for c in str(text))


def disclaimer(where=st) -> None:
    """The decision-support notice; shown wherever a result is shown."""
    where.info(DISCLAIMER, icon=":material/medical_information:")


NOT_MEASURED = ("not yet measured on a source it never saw (no leave-one-source-out run of its recipe in the "
                "registry or `reports/runs`): expect less than its test figures.")


@st.cache_data(ttl=3600, show_spinner=False, max_entries=8)
def _unseen_evidence(run_dir: str) -> tuple[str, dict, float] | None:
    """The leave-one-source-out record that measured this run's recipe, with the run's temperature."""
    from bt_core.evaluation import held_out

    record = runs.load_run(run_dir)
    lo = held_out.measured_by(record)
    if lo is None:
        return None
    return lo["id"], runs.load_run(lo["dir"]), float((record.get("calibration") or {}).get("temperature", 1.0))


@st.cache_data(show_spinner=False, max_entries=64)
def unseen_sentence(run_dir: str, threshold: float) -> str:
    """What this run's answers at ``threshold`` met on sources it never saw (one sentence), or NOT_MEASURED."""
    from bt_core.evaluation import held_out

    try:
        evidence = _unseen_evidence(run_dir)
        if evidence is None:
            return NOT_MEASURED
        rid, rec, temperature = evidence
        return held_out.expectation(held_out.unseen_at(rec, threshold, temperature), rid, threshold) + "."
    except (BTError, OSError, ValueError, KeyError):  # an unreadable or broken record: say so, answer on
        return NOT_MEASURED


def unseen_note(predictors: dict, thresholds: dict, where=st) -> None:
    """Under the answers: how each model did, at the threshold in use, on scans from sources it never saw."""
    where.markdown("**What these answers met on scans from hospitals the models never saw** (the *Unseen "
                   "sources* page has every figure):")
    where.markdown("\n".join(f"- {KIND_NAMES.get(kind, kind)}: "
                             + unseen_sentence(str(pred.record["dir"]), float(thresholds.get(kind, pred.threshold)))
                             for kind, pred in predictors.items()))


def runs_root() -> Path:
    return runs.default_root()


def shipped_runs() -> dict[str, str]:
    """``{"cnn": run folder, "transfer": run folder}`` from ``<root>/shipped.json``; {} if absent."""
    return {kind: str(folder) for kind, folder in runs.shipped(runs_root()).items()}


@st.cache_resource(show_spinner="Loading model...", max_entries=6)
def load_predictor(run_dir: str):
    """The run's :class:`~bt_core.serving.inference.Predictor`, made once per process. Raises BTError (or
    others) when the run or its model file is unusable. Only pages that score import the inference code
    (and with it Keras); the model itself loads in a background thread, so the page draws at once and the
    first upload waits only for what is still loading (its Grad-CAM graph is traced there too)."""
    from bt_core.serving.inference import Predictor

    return Predictor(run_dir, warm_up="explain")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=64)
def _load_record(run_dir: str, mtime: float) -> dict:
    return runs.load_run(run_dir)


def load_run_record(run_dir: str) -> dict:
    """The run's record (run.json plus ``dir``), cached until run.json changes."""
    return _load_record(str(run_dir), _mtime(Path(run_dir) / runs.RUN_FILE))


@st.cache_data(show_spinner=False, ttl=20)
def _list_runs(root: str, mtime: float) -> list[dict]:
    return runs.list_runs(root)


def list_runs() -> list[dict]:
    """Summaries of the registry's runs (newest first), refreshed when a run appears or after 20 s."""
    root = runs_root()
    return _list_runs(str(root), _mtime(root))


def run_label(record: dict) -> str:
    """Short display name (:func:`bt_core.runs.short_name`: kind, backbone, sources, date), marked when the
    run used the paper's leaky random split; :func:`run_description` is the long one."""
    name = runs.short_name(record) if record.get("config") else (
        record.get("label") or record.get("id") or Path(record.get("dir", "run")).name)
    split = (record.get("config") or {}).get("split") or (record.get("split") or {}).get("kind")
    return f"{name} — random split (leaky)" if split == "random" else name


def run_description(record: dict) -> str:
    """The full description: the run's own label, its id, and whether it is a shipped model."""
    parts = [str(record.get("label") or "(no description)"), f"run `{record.get('id') or Path(record.get('dir', '')).name}`"]
    if _is_shipped(record):
        parts.append("shipped model")
    return " · ".join(parts)


def _is_shipped(record: dict) -> bool:
    return bool(_shipped_kind(record))


def finished_records(need: str) -> list[dict]:
    """Records of finished runs that have ``need`` ("folds" or "test"); unreadable ones are skipped."""
    out = []
    for summary in list_runs():
        if not str(summary.get("status", "")).startswith("finished"):
            continue
        if need == "folds" and not summary.get("folds"):
            continue
        try:
            record = load_run_record(summary["dir"])
        except (BTError, OSError, ValueError):
            continue
        if need == "test" and not (record.get("test") or {}).get("prob"):
            continue
        out.append(record)
    return out


def unique_labels(records: list[dict]) -> dict[str, dict]:
    """``{display label: record}`` with ids appended where two labels clash."""
    out: dict[str, dict] = {}
    for rec in records:
        label = run_label(rec)
        if label in out:
            label = f"{label} [{rec.get('id')}]"
        out[label] = rec
    return out


def hide_page_if_empty(message: str, items) -> None:
    """Show ``message`` and stop the page when there is nothing to show."""
    if not items:
        st.info(message)
        st.caption(f"Run registry: `{runs_root()}`" + ("" if os.environ.get("BT_RUNS_DIR") is None
                                                       else " (from $BT_RUNS_DIR)"))
        st.stop()


def pick_runs(need: str, empty_message: str) -> tuple[dict[str, dict], list[str]]:
    """Run picker shared by the explorer and ROC pages -> (records by label, chosen labels)."""
    records = finished_records(need)
    hide_page_if_empty(empty_message, records)
    sweeps = sorted({(r.get("sweep") or {}).get("id") for r in records} - {None})
    if sweeps:  # runs of `python -m bt_core sweep`: show one sweep's runs only
        pick = st.selectbox("Sweep", ["all runs", *sweeps], key="sweep_filter")
        if pick != "all runs":
            records = [r for r in records if (r.get("sweep") or {}).get("id") == pick]
    by_label = unique_labels(records)
    labels = list(by_label)
    order = list(runs.SHIPPED_KINDS)  # the shipped CNN beside the shipped transfer model, where there are some
    shipped = sorted((lab for lab, rec in by_label.items() if _is_shipped(rec)),
                     key=lambda lab: order.index(_shipped_kind(by_label[lab])))
    chosen = st.multiselect("Runs", labels, default=shipped or labels[:2], key="runs")
    if not chosen:
        st.info("Choose one or more runs.")
    else:
        with st.expander("What these runs are"):
            st.markdown("\n".join(f"- **{lab}**: {run_description(by_label[lab])}" for lab in chosen))
    return by_label, chosen


def _shipped_kind(record: dict) -> str:
    here = Path(record.get("dir", "")).resolve()
    return next((k for k, d in shipped_runs().items() if Path(d).resolve() == here), "")


@st.cache_resource
def scoring_slots() -> threading.BoundedSemaphore:
    """At most ``BT_SCORING_SLOTS`` (default 2) batches are scored at once across all sessions, so memory
    stays bounded when many visitors upload together; the others wait their turn behind the spinner."""
    return threading.BoundedSemaphore(max(1, int(os.environ.get("BT_SCORING_SLOTS", "2"))))


@st.cache_data(ttl=30, show_spinner=False)
def _data_folders(roots: tuple[str, ...], both: bool) -> list[str]:
    return data_roots.find_data_folders(roots, both=both)


def data_folders(both: bool) -> tuple[tuple[str, ...], list[str]]:
    """-> (the allowed data roots, the labelled folders found in them, two levels down): folders with
    ``no/`` and ``yes/`` (``both``), or with either (``both=False``). Shared by the Score and Train pages."""
    roots = tuple(str(r) for r in data_roots.allowed_roots())
    return roots, (_data_folders(roots, both) if roots else [])
