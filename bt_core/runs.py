"""Runs on disk: a registry of training runs, one folder a run (``run.json`` + ``model.keras``).

Default root: ``trained_models/`` in the repository (``$BT_RUNS_DIR`` overrides it). A run is
written into a hidden temporary folder and renamed into place only when complete, so a job that is
killed, runs out of memory or fills the disk leaves no half-written run. Models load with Keras'
``safe_mode=True``; a missing or corrupt model raises :class:`~bt_core.errors.ModelError`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from bt_core.errors import ModelError

RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
SHIPPED_FILE = "shipped.json"  # {"cnn": RUN_ID, "transfer": RUN_ID}: the runs the app serves
SHIPPED_KINDS = {"cnn": "CNN", "transfer": "Transfer"}  # kind -> display name
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def default_root() -> Path:
    return Path(os.environ.get("BT_RUNS_DIR", Path(__file__).resolve().parent.parent / "trained_models"))


def shipped(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{"cnn": run folder, "transfer": run folder}`` from ``<root>/shipped.json``; {} if absent or unreadable."""
    root = Path(root) if root is not None else default_root()
    try:
        listed = json.loads((root / SHIPPED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(listed, dict):
        return {}
    return {kind: root / run_id for kind, run_id in listed.items()
            if kind in SHIPPED_KINDS and isinstance(run_id, str) and _ID_OK.match(run_id)}


def new_run_id(record: dict) -> str:
    cfg = record.get("config", {})
    name = cfg.get("model", "model") + (f"-{cfg['backbone']}" if cfg.get("model") == "transfer" else "")
    if len(record.get("data", {}).get("sources") or []) > 1:
        name += f"-{len(record['data']['sources'])}src"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{cfg.get('split', 'split')}-{record.get('mode', 'run')}"


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, allow_nan=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model_file(model, path) -> Path:
    """Save ``model`` without optimizer state (a third of the size): an uncompiled copy with the
    same weights. (``keras.models.clone_model`` would compile the copy, and building its optimizer
    writes Adam's two moment arrays of every trainable weight into the file.)"""
    if getattr(model, "optimizer", None) is not None:
        bare = type(model).from_config(model.get_config())
        bare.set_weights(model.get_weights())
        model = bare
    model.save(path)
    return Path(path)


def save_run(record: dict, model=None, root: str | os.PathLike | None = None, run_id: str | None = None) -> Path:
    """Write a complete run atomically -> its folder. ``model`` is a keras Model or None."""
    root = Path(root) if root else default_root()
    root.mkdir(parents=True, exist_ok=True)
    given = run_id is not None
    run_id = run_id or new_run_id(record)
    if not _ID_OK.match(run_id):
        raise ModelError(f"invalid run id {run_id!r}")
    base, n = run_id, 1
    while (root / run_id).exists() and not given:  # two runs saved in the same second
        n += 1
        run_id = f"{base}-{n}"
    final = root / run_id
    if final.exists():
        raise ModelError(f"run {run_id} already exists in {root}")
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{run_id}-"))
    try:
        record = {**record, "id": run_id, "status": "finished", "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if model is not None:
            save_model_file(model, tmp / MODEL_FILE)
            record["model_file"] = MODEL_FILE
        write_json_atomic(tmp / RUN_FILE, record)
        tmp.chmod(0o755)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def clean_temp(root: str | os.PathLike | None = None, older_than_s: float = 3600) -> int:
    """Remove temporary folders that killed jobs left behind (older than ``older_than_s``)."""
    root = Path(root) if root else default_root()
    removed = 0
    for tmp in root.glob(".tmp-*"):
        try:
            if time.time() - tmp.stat().st_mtime > older_than_s:
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


def resolve(run: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A run given as a folder path or as an id in the registry -> its folder."""
    p = Path(run)
    if (p / RUN_FILE).is_file():
        return p
    root = Path(root) if root else default_root()
    if _ID_OK.match(str(run)) and (root / str(run) / RUN_FILE).is_file():
        return root / str(run)
    raise ModelError(f"no run found at {run} (give a run folder or an id from `python -m bt_core runs`)")


def load_run(run: str | os.PathLike, root=None) -> dict:
    folder = resolve(run, root)
    try:
        record = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError) as err:
        raise ModelError(f"run record {folder / RUN_FILE} is unreadable: {err}") from None
    record["dir"] = str(folder)
    return record


def list_runs(root: str | os.PathLike | None = None) -> list[dict]:
    """Summaries of every complete run under ``root``, newest first; broken ones are marked."""
    root = Path(root) if root else default_root()
    out = []
    if not root.is_dir():
        return out
    for folder in sorted(root.iterdir(), reverse=True):
        if folder.name.startswith((".", "_")) or not (folder / RUN_FILE).is_file():
            continue
        try:
            rec = json.loads((folder / RUN_FILE).read_text())
            cfg = rec.get("config", {})
            out.append({"id": folder.name, "dir": str(folder), "status": rec.get("status", "finished"),
                        "mode": rec.get("mode"), "model": cfg.get("model"), "backbone": cfg.get("backbone"),
                        "split": cfg.get("split"), "epochs": cfg.get("epochs"), "created": rec.get("created"),
                        "test": (rec.get("test") or {}).get("metrics", {}), "folds": len(rec.get("folds", [])),
                        "has_model": (folder / rec.get("model_file", MODEL_FILE)).is_file(),
                        "sweep": rec.get("sweep"),  # {"id", "config_id", "options"} for a run of a sweep
                        "label": rec.get("label"), "config": cfg})
        except (OSError, ValueError) as err:
            out.append({"id": folder.name, "dir": str(folder), "status": f"unreadable: {err}"})
    return out


def check_model_file(run: str | os.PathLike, root=None) -> Path:
    """The run's model file, if it is there and is a Keras archive (a zip with its config); else ModelError.
    Reads only the zip's directory: a cheap check before a (slower) load."""
    import zipfile

    path = resolve(run, root) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"model file missing: {path}")
    try:
        with zipfile.ZipFile(path) as z:
            if "config.json" not in z.namelist():
                raise zipfile.BadZipFile("no config.json")
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelError(f"model {path} could not be loaded ({type(err).__name__}); the file may be corrupt") from None
    return path


def load_model(run: str | os.PathLike, root=None):
    """The run's Keras model, loaded with ``safe_mode=True``."""
    from bt_core.quiet import import_keras

    keras = import_keras()  # the first import in a process: without the backend's start-up notices

    from bt_core.models import networks, patch  # noqa: F401  (register custom layers)

    folder = resolve(run, root)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"model file missing: {path}")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:
        raise ModelError(f"model {path} could not be loaded ({type(err).__name__}); the file may be corrupt") from None


_KIND_SHORT = {"compact_cnn": "CNN", "paper_cnn": "paper CNN", "transfer": "transfer", "patch": "patch"}
_BACKBONE_SHORT = {"efficientnet_lite0": "Lite0", "efficientnet_lite1": "Lite1", "resnet50v2": "ResNet50V2"}


def source_names(record: dict) -> list[str]:
    """Names of the run's data sources (``record["data"]["sources"]``, else its data folder's name)."""
    data = record.get("data") or {}
    names = [str(s.get("name") if isinstance(s, dict) else s) for s in data.get("sources") or []
             if (s.get("name") if isinstance(s, dict) else s)]
    if not names and data.get("root"):
        names = [Path(str(data["root"]).split(";")[0]).name]
    return names


def short_name(record: dict) -> str:
    """A short display name: kind, backbone (transfer and patch models), sources and date,
    e.g. ``"transfer Lite0 · br35h · 2026-11-26"``."""
    cfg = record.get("config") or {}
    model = str(cfg.get("model") or "model")
    parts = [_KIND_SHORT.get(model, model)]
    if model in ("transfer", "patch") and cfg.get("backbone"):
        parts[0] += " " + _BACKBONE_SHORT.get(cfg["backbone"], str(cfg["backbone"]))
    names = source_names(record)
    if names:
        parts.append("+".join(names[:3]) + (f"+{len(names) - 3} more" if len(names) > 3 else ""))
    created = str(record.get("created") or "")[:10]
    found = re.match(r"^(\d{4})(\d{2})(\d{2})-", str(record.get("id") or ""))
    date = created or (f"{found.group(1)}-{found.group(2)}-{found.group(3)}" if found else "")
    return " · ".join(parts + ([date] if date else []))


def prediction_sources(record: dict) -> list[str] | None:
    """Source name of every test prediction (``record["test"]["source"]``, else from ``data.source`` and the
    test indices), or None when the record does not say (runs on one source)."""
    test, data = record.get("test") or {}, record.get("data") or {}
    n = len(test.get("y") or [])
    names = test.get("source")
    if not names and data.get("source") and test.get("idx") is not None:
        try:
            names = [data["source"][int(i)] for i in test["idx"]]
        except (IndexError, TypeError, ValueError):
            names = None
    return [str(s) for s in names] if names and len(names) == n else None
