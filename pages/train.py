"""Train a model from the app: a thin page over :mod:`bt_core.serving.launcher`.

On for a local ``streamlit run``; off on Streamlit Community Cloud or a public server address unless an operator
turns it on; ``BT_ENABLE_TRAINING=1|0`` or the secret ``enable_training`` decides first
(:func:`bt_core.serving.launcher.training_switch`).
The data is one or more labelled sources (``yes/`` and/or ``no/``; together both classes): folders
found under ``BT_DATA_ROOTS`` (the first is chosen), other folders typed one a line, and/or a TOML
sources file, each checked before anything runs; "Show the command" shows the ``python -m bt_core``
command (a ``--data`` per folder) without starting it. A recipe ("Start from") fills every option of a shipped
run, those of the six-source runs (views, balance, the patch model's head) in their own expander.
One job at a time runs in the background; its progress refreshes every 2 seconds; a finished job's
run lands in the runs registry, hence on the explorer and ROC pages.
"""
import time

import streamlit as st

from bt_core.serving import launcher
from bt_core import runs
from bt_core.errors import BTError
from pages import common  # (importing it routes a first request straight to /train through st.navigation)

ICONS = {"running": ":material/hourglass_top:", "finished": ":material/check_circle:", "failed": ":material/error:",
         "cancelled": ":material/cancel:"}
MODEL_HELP = {"compact_cnn": "compact CNN (fast)", "paper_cnn": "the paper's CNN",
              "transfer": "transfer learning on an ImageNet backbone",
              "patch": "patch model (Lite0 cells scored, tumour masks as a training signal)"}


def _secrets() -> dict:
    try:
        return {"enable_training": st.secrets.get("enable_training")}
    except Exception:  # no secrets.toml at all
        return {}


def _server_address() -> str | None:
    try:
        return st.get_option("server.address")
    except Exception:  # noqa: BLE001 - an unknown option in another Streamlit: treat as unset
        return None


@st.cache_data(ttl=300, show_spinner=False)
def _device() -> dict:
    return launcher.device_info()


def _when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "?"


def _jobs() -> list[dict]:
    try:
        return launcher.list_jobs()
    except (BTError, OSError) as err:
        st.error(f"cannot read the jobs folder: {err}")
        return []


FORM_KEYS = {"model": "train_model", "backbone": "train_backbone", "epochs": "train_epochs", "folds": "train_folds",
             "split": "train_split", "mode": "train_mode", "batch_size": "train_batch", "image_size": "train_size",
             "lr": "train_lr", "head_pool": "train_head_pool", "preprocess": "train_preprocess",
             "augment": "train_augment", "pooling": "train_pooling", "mirror": "train_mirror", "seed": "train_seed",
             "degrade_copies": "train_degrade", "views": "train_views", "balance": "train_balance",
             "dense_units": "train_dense", "dropout": "train_dropout", "samples_per_epoch": "train_samples",
             "mask_weight": "train_mask_weight", "freeze_backbone": "train_freeze", "head_depth": "train_head_depth",
             "strip_skull": "train_strip", "symmetry": "train_symmetry",
             "synth_lesions": "train_lesions", "lesion_weight": "train_lesion_weight",
             "position_strength": "train_position_strength", "position_reference": "train_position_reference"}


@st.cache_data(ttl=60, show_spinner=False, max_entries=8)
def _cached_recipes(root: str, stamp: float) -> dict[str, dict]:
    return launcher.recipes(root)


def _recipes() -> dict[str, dict]:
    """The launcher's recipes, read again when the registry or its shipped.json changes."""
    root = runs.default_root()
    try:
        stamp = (root / runs.SHIPPED_FILE).stat().st_mtime
    except OSError:
        stamp = 0.0
    return _cached_recipes(str(root), stamp)


def _apply_recipe() -> None:
    """Fill the form with the chosen recipe's settings (before the form's widgets are drawn)."""
    for field, value in _recipes().get(st.session_state.get("train_recipe"), {}).items():
        if field in FORM_KEYS:
            st.session_state[FORM_KEYS[field]] = value


def _form(folders: list[str]) -> None:
    defaults = launcher.JobSpec()
    for field, key in FORM_KEYS.items():
        st.session_state.setdefault(key, getattr(defaults, field))
    recipes = _recipes()
    st.selectbox("Start from", list(recipes), index=None, key="train_recipe", on_change=_apply_recipe,
                 placeholder="a recipe: the paper's CNN or the settings of a shipped model",
                 help="Fills the form below; change anything before you start.")
    st.caption("A finished run answers at threshold 0.5 with no out-of-distribution check until it is calibrated, "
               "as the shipped ones were: `python -m bt_core calibrate RUN --target-sensitivity 0.98 "
               "--ood-quantile 0.96`.")
    with st.form("train_form"):  # every widget's value is read back from st.session_state[FORM_KEYS[...]]
        st.multiselect("Data folders: one labelled source each (yes/ and/or no/)", folders, default=folders[:1],
                       key="train_data", help="Several folders train on several sources (`--data A --data B`); "
                       "together they need both classes.")
        c1, c2 = st.columns(2)
        c1.text_area("Other data folders, one a line", key="train_data_other", height=68,
                     help="Labelled folders under the allowed data roots (`BT_DATA_ROOTS`) not listed above.")
        c2.text_input("Sources file (optional)", key="train_sources", placeholder="a TOML file of [[source]] tables",
                      help="`--sources FILE`: `[[source]]` tables with a `path` (relative to the file) and optional "
                      "`name` and `family`; the file lies under the allowed data roots.")
        c1, c2 = st.columns(2)
        c1.selectbox("Model", launcher.CHOICES["model"], format_func=lambda m: f"{m}: {MODEL_HELP.get(m, m)}", key="train_model")
        c2.selectbox("Backbone (transfer and patch models)", launcher.CHOICES["backbone"], key="train_backbone",
                     help="Lite0 ships its ImageNet weights; Lite1's are written once by "
                     "`python tools/convert_lite.py --variant lite1`; ResNet50V2 downloads them (transfer only).")
        c1, c2 = st.columns(2)
        c1.number_input("Epochs", 1, 1000, key="train_epochs")
        c2.number_input("Folds (cv mode)", 2, 20, key="train_folds")
        c1, c2 = st.columns(2)
        c1.radio("Split", launcher.CHOICES["split"], horizontal=True, key="train_split",
                 format_func=lambda s: {"group": "group (leak-free)", "random": "random (the paper's)"}[s])
        c2.radio("Mode", launcher.CHOICES["mode"], horizontal=True, key="train_mode",
                 format_func=lambda m: {"cv": "k-fold CV + final fit", "train": "final fit only"}[m])
        st.caption("The random split leaks: near-duplicate slices land on both sides, so its test scores are "
                   "optimistic. The group split keeps near-duplicates together.")
        with st.expander("More options"):
            c1, c2, c3 = st.columns(3)
            c1.number_input("Batch size", 1, 4096, key="train_batch")
            c2.number_input("Image size (pixels)", 32, 1024, key="train_size")
            c3.number_input("Learning rate (Adam)", *launcher.LR_RANGE, step=1e-5, format="%.1e", key="train_lr")
            c1, c2, c3 = st.columns(3)
            c1.number_input("CNN: MaxPool before Flatten (0: model default)", *launcher.RANGES["head_pool"],
                            key="train_head_pool")
            c2.selectbox("Intensity normalisation", launcher.CHOICES["preprocess"], key="train_preprocess",
                         format_func=lambda p: {"none": "none (0-255)", "percentile": "percentile (0.5th-99.5th)",
                                                "equalize": "percentile, then head histogram equalised"}.get(p, p))
            c3.number_input("Seed", *launcher.RANGES["seed"], key="train_seed")
            c1, c2 = st.columns(2)
            c1.selectbox("Transfer: pooling", launcher.CHOICES["pooling"], key="train_pooling",
                         format_func=lambda p: {"avg": "last feature map", "multiscale": "multiscale (7 maps)"}[p])
            c2.checkbox("Transfer: average with the mirror image", key="train_mirror")
            c1, c2 = st.columns(2)
            c1.number_input("Degraded copies per training image (blur, noise, low resolution, JPEG)",
                            *launcher.RANGES["degrade_copies"], key="train_degrade",
                            help="Simulated other scanners; each copy is one more image to train on.")
            c2.checkbox("Augment (flips, rotations, shifts, zoom, contrast)", key="train_augment")
        with st.expander("Several sources and the patch model (the shipped six-source recipes)"):
            c1, c2, c3, c4 = st.columns(4)
            c1.number_input("Augmented views per training image", *launcher.RANGES["views"], key="train_views",
                            help="`--views K`: K random views (rotations, flips, crops, gamma, bias field, ...).")
            c2.selectbox("Balance", launcher.CHOICES["balance"], key="train_balance",
                         format_func=lambda b: {"none": "none", "source": "each source family and class alike",
                                                 "position": "that, and each class alike along the volume"}.get(b, b))
            c3.number_input("Dense layer / patch head width", *launcher.RANGES["dense_units"], key="train_dense")
            c4.number_input("Dropout", *launcher.FLOAT_RANGES["dropout"], step=0.05, key="train_dropout")
            c1, c2, c3, c4 = st.columns(4)
            c1.number_input("Patch: rows per epoch (0: all)", *launcher.RANGES["samples_per_epoch"], step=1000,
                            key="train_samples")
            c2.number_input("Patch: mask loss weight", *launcher.FLOAT_RANGES["mask_weight"], step=0.1,
                            key="train_mask_weight")
            c3.number_input("Patch: head context convolutions", *launcher.RANGES["head_depth"], key="train_head_depth")
            c4.checkbox("Patch: train the head only", key="train_freeze", help="`--freeze-backbone`")
            c1, c2, c3 = st.columns(3)
            c1.number_input("Share of the views skull-stripped", *launcher.FLOAT_RANGES["strip_skull"], step=0.1,
                            key="train_strip", help="`--strip-skull P`: views that look like skull-stripped scans (BraTS).")
            c1.number_input("Strength of the position balance", *launcher.FLOAT_RANGES["position_strength"], step=0.25,
                            key="train_position_strength",
                            help="`--position-strength S` (with balance along the volume): 1 evens the classes fully, "
                                 "below 1 part of the way.")
            c2.selectbox("Position balance: where the classes meet", launcher.CHOICES["position_reference"],
                         key="train_position_reference",
                         format_func=lambda r: {"both": "between the two classes",
                                                 "tumour": "at the tumour slices (only no-tumour slices move)",
                                                 "middle": "between the two classes, middle half only"}.get(r, r),
                         help="`--position-reference`: with balance along the volume.")
            c3.number_input("Patch: share of no-tumour views with a synthetic lesion",
                            *launcher.FLOAT_RANGES["synth_lesions"], step=0.1, key="train_lesions",
                            help="`--synth-lesions P`: tumour-like lesions of any size, with exact masks.")
            c3.number_input("Patch: weight of the synthetic lesions", *launcher.FLOAT_RANGES["lesion_weight"], step=0.1,
                            key="train_lesion_weight",
                            help="`--lesion-weight W`: W times one source family and class (with balance by source).")
            c2.checkbox("Patch: symmetry features (each cell beside its mirror cell)", key="train_symmetry",
                        help="`--symmetry`: one-sided lesions stand out (with fine-tuning, the upper blocks run on both images).")
        c1, c2 = st.columns(2)
        preview = c1.form_submit_button("Show the command", key="train_preview", width="stretch")
        submitted = c2.form_submit_button("Start training", type="primary", key="train_start", width="stretch")
    if preview or submitted:
        _submit(start=submitted)


def _chosen_folders() -> list[str]:
    """The folders picked from the list, then those typed one a line, without repeats."""
    typed = [line.strip() for line in str(st.session_state.get("train_data_other") or "").splitlines()]
    return list(dict.fromkeys([*(st.session_state.get("train_data") or []), *filter(None, typed)]))


def _submit(start: bool) -> None:
    """Check the form, show the command it runs and, with ``start``, start it; a bad value is one error line."""
    spec = launcher.JobSpec(data_dirs=tuple(_chosen_folders()),
                            sources_file=str(st.session_state.get("train_sources") or "").strip(),
                            **{field: st.session_state[key] for field, key in FORM_KEYS.items()})
    try:
        command = spec.command()
    except BTError as err:
        st.error(str(err))
        return
    st.caption("The command" + (" the job runs" if start else " it will run")
               + " (the app adds `--progress-file` and `--out`):")
    st.code(command, language="bash", wrap_lines=True)
    if not start:
        return
    try:
        job = launcher.start(spec)
    except launcher.BusyError as err:
        st.warning(str(err))
    except BTError as err:
        st.error(str(err))
    else:
        st.success(f"Started job {job.id}. When it finishes, its run appears in the runs registry, "
                   "so on the explorer and ROC pages.")


@st.fragment(run_every=2)
def _live(job_id: str, device: str) -> None:
    try:
        job, p = launcher.status(job_id), launcher.progress(job_id)
    except (BTError, OSError) as err:
        st.error(f"cannot read the job {job_id}: {err}")
        return
    if job["status"] != "running":
        st.rerun()  # the whole page: the job moves to the list below
    spec = job.get("spec") or {}
    st.subheader(f"Running: {job_id}")
    st.caption(f"{spec.get('model')} · {spec.get('mode')} · split {spec.get('split')} · {launcher.data_label(spec)} · "
               f"started {_when(job.get('started'))} · {device}")
    folds = p["folds"]
    if folds:
        done = folds if p["fold"] == 0 else max((p["fold"] or 1) - 1, 0)
        label = "final fit" if p["fold"] == 0 else f"fold {p['fold'] or 1} of {folds}"
        st.progress(min(done / (folds + 1), 1.0), text=f"Stage: {label} (then a final fit and the test)")
    epochs = p["epochs"] or 1
    st.progress(min((p["epoch"] or 0) / epochs, 1.0), text=f"Epoch {p['epoch'] or 0} of {epochs} · {p['stage']}")
    cols = st.columns(len(p["metrics"]) + 1)
    for col, (name, value) in zip(cols, sorted(p["metrics"].items())):
        col.metric(name, f"{value:.4f}" if isinstance(value, (int, float)) else str(value))
    cols[-1].metric("images/s", f"{p['images_per_s']:.0f}" if p["images_per_s"] else "–")
    st.code(launcher.log_tail(job_id, 40) or "(no output yet)", language=None)
    if st.button("Cancel this job", key="train_cancel"):
        try:
            with st.spinner("Stopping the job…"):
                launcher.cancel(job_id)
        except (BTError, OSError) as err:
            st.error(f"could not cancel the job: {err}")
        else:
            st.rerun()


def _past(jobs: list[dict]) -> None:
    st.subheader("Past jobs")
    if not jobs:
        st.caption("No finished jobs yet.")
    for j in jobs[:25]:
        spec = j.get("spec") or {}
        with st.expander(f"{j['id']}: {j['status']}", icon=ICONS.get(j["status"])):
            st.caption(f"{spec.get('model')} · {spec.get('mode')} · {spec.get('epochs')} epochs · split "
                       f"{spec.get('split')} · {launcher.data_label(spec)} · started {_when(j.get('started'))}, "
                       f"ended {_when(j.get('finished'))}")
            if j["status"] == "finished":
                st.success(f"Run {j.get('run_id')} is in the runs registry: open it on the explorer and ROC pages.")
            elif j["status"] == "cancelled":
                st.info("Cancelled; no run was saved (a run is written only when complete).")
            elif j["status"] == "failed":
                st.error(f"Failed: {j.get('error') or 'see the log'}")
                st.code(j.get("log_tail") or "(empty log)", language=None)


def main() -> None:
    st.title("Train a model")
    on, why = launcher.training_switch(secrets=_secrets(), server_address=_server_address())
    if not on:
        st.info(f"Training from the app is switched off here ({why}). An operator enables it by starting the app "
                "with the environment variable `BT_ENABLE_TRAINING=1`, or with `enable_training = true` in "
                "`.streamlit/secrets.toml` (on Streamlit Community Cloud: the app's Secrets). Data folders must "
                "lie under `BT_DATA_ROOTS` (default `../shared/data`). Without it, train from the command line: "
                "`python -m bt_core cv --data DIR` (repeat `--data` for several sources, or `--sources FILE`).")
        return
    dev = _device()
    st.caption(f"Jobs run on **{dev['device']}** with the Keras **{dev['backend']}** backend"
               + (f" ({dev['note']})" if dev["note"] else "") + f". One job at a time. Training is {why}; "
               "`BT_ENABLE_TRAINING=0` switches it off.")
    folders = common.data_folders(both=False)[1]
    if not folders:
        st.warning("No labelled data folder (with yes/ and/or no/ sub-folders) is allowed. The operator sets the "
                   "allowed roots with `BT_DATA_ROOTS` (folders separated by `:`).")
    _form(folders)
    jobs = _jobs()
    running = next((j for j in jobs if j["status"] == "running"), None)
    if running:
        _live(running["id"], dev["device"])
    _past([j for j in jobs if j["status"] != "running"])


main()
