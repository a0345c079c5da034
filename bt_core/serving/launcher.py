"""Training launcher: one background ``python -m bt_core cv|train`` job at a time, from the app.

The job runner, and the one import the pages and tests need: what a job runs (:mod:`~bt_core.serving.jobspec`:
``JobSpec``, ``recipes``), the data-folder fence (:mod:`~bt_core.serving.data_roots`: ``allowed_roots``,
``check_data_dir``) and the on/off switch (:mod:`~bt_core.serving.switch`: ``training_switch``,
``device_info``) are importable from here too.

A job lives in ``<runs root>/_jobs/<id>/`` (job.json, log.txt, progress.jsonl); its run goes atomically
into the registry (``runs.default_root()``). The child runs without a shell in its own session (it
outlives an app restart). Starts are serialised by ``flock`` on ``<jobs dir>/launcher.lock`` and
refused while a recorded PID (with its start time, against PID reuse) lives; a dead one's record is
stale and gets finalised. Status is derived on each read, so a fresh process sees the same, and a job
killed by SIGKILL, OOM or a full disk shows as failed with its log. Test hook: monkeypatch
``CHILD_PROGRAM`` (the argv prefix) to a fake trainer.
"""
import fcntl
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import namedtuple
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path

import psutil

from bt_core import runs
from bt_core.errors import BTError, ConfigError
from bt_core.serving.data_roots import (CLASSES, REPO, allowed_roots, check_data_dir, check_sources,
                                       find_data_folders)
from bt_core.serving.jobspec import (CHOICES, FLOAT_RANGES, LR_RANGE, PAPER_RECIPE, PATCH_ONLY, PROGRAM, RANGES,
                                     TRANSFER_ONLY, JobSpec, data_label, recipes)
from bt_core.serving.switch import LOCAL_ADDRESSES, device_info, enabled, on_community_cloud, training_switch

__all__ = ["BusyError", "CHILD_PROGRAM", "CHOICES", "CLASSES", "FINAL", "FLOAT_RANGES", "Job", "JobSpec",
           "LOCAL_ADDRESSES", "LR_RANGE", "PAPER_RECIPE", "PATCH_ONLY", "RANGES", "REPO", "TRANSFER_ONLY",
           "allowed_roots", "cancel", "check_data_dir", "check_sources", "data_label", "device_info", "enabled", "find_data_folders", "list_jobs", "log_tail",
           "on_community_cloud", "progress", "recipes", "running_job", "start", "status", "training_switch"]

CHILD_PROGRAM = list(PROGRAM)  # read at each start(), so a test can point it at a fake trainer
FINAL = ("finished", "failed", "cancelled")
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
Job = namedtuple("Job", "id dir pid started argv")  # what start() returns


class BusyError(BTError):
    """A training job is already running."""


@contextmanager
def _flock(path: Path):
    fd = os.open(path, os.O_RDONLY if path.is_dir() else os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # on a file or a folder; held for milliseconds, freed when closed
        yield fd
    finally:
        os.close(fd)


def _alive(pid, ctime=None) -> bool:
    """Is the job's process running: ``os.kill(pid, 0)``, but not a zombie and not a reused PID."""
    with suppress(psutil.Error, TypeError, ValueError):
        p = psutil.Process(int(pid))
        return p.status() != psutil.STATUS_ZOMBIE and (ctime is None or abs(p.create_time() - ctime) < 1)
    return False


def _read(path: Path) -> dict:
    with suppress(OSError, ValueError, TypeError):
        return dict(json.loads(path.read_text()))
    return {}


def _job_dir(job_id: str | None, jobs_dir=None) -> Path:
    if job_id is not None and not _ID_OK.match(str(job_id)):
        raise ConfigError(f"invalid job id {job_id!r}")
    jobs = Path(jobs_dir or runs.default_root() / "_jobs")
    return jobs / job_id if job_id else jobs


def start(spec: JobSpec, jobs_dir=None) -> Job:
    """Start ``spec`` in the background -> Job. BusyError while a job runs; ConfigError for a bad spec."""
    jobs, out, proc = _job_dir(None, jobs_dir), runs.default_root(), None
    try:
        jobs.mkdir(parents=True, exist_ok=True)
        with _flock(jobs / "launcher.lock") as lock:
            if busy := running_job(jobs):  # checks each recorded PID; a job whose process died is finalised
                hhmm = time.strftime("%H:%M", time.localtime(busy.get("started")))
                raise BusyError(f"a training job is already running (started {hhmm}); wait for it to finish")
            runs.clean_temp(out)  # what killed jobs left half-written, now that none runs
            folder = jobs / (job_id := f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.model}-{os.urandom(3).hex()}")
            argv = spec.argv(folder / "progress.jsonl", out, program=CHILD_PROGRAM)
            folder.mkdir()
            with open(folder / "log.txt", "ab") as log:
                env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, "PYTHONUNBUFFERED": "1"}
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                        start_new_session=True, env=env)
            rec = {"id": job_id, "spec": asdict(spec), "argv": argv, "status": "running", "pid": proc.pid,
                   "ctime": psutil.Process(proc.pid).create_time(), "started": time.time(), "finished": None,
                   "returncode": None, "run_id": None, "out": str(out)}
            runs.write_json_atomic(folder / "job.json", rec)
            os.ftruncate(lock, 0), os.pwrite(lock, json.dumps({k: rec[k] for k in ("id", "pid", "ctime")}).encode(), 0)
    except (OSError, psutil.Error) as err:
        if proc is not None:  # never leave a child running that no record knows about
            proc.kill(), proc.wait()
        raise BTError(f"could not start the training job: {getattr(err, 'strerror', None) or err}") from None
    threading.Thread(target=lambda: _finalize(folder, proc.wait()), daemon=True, name=f"wait-{job_id}").start()
    return Job(job_id, folder, proc.pid, rec["started"], argv)


def _finalize(folder: Path, returncode=None) -> dict:
    """Record how a job whose process has ended finished (idempotent; the waiter thread and status() call it)."""
    with _flock(folder):
        rec = _read(folder / "job.json")
        if rec.get("status") in FINAL:
            return rec
        saved = [e for e in _events(folder) if e.get("event") == "saved"]
        rec.update(finished=time.time(), returncode=returncode, status="failed")
        if saved:  # the run is complete in the registry, whatever happened afterwards
            rec.update(status="finished", run_id=Path(str(saved[-1].get("run", ""))).name or None)
        elif rec.get("cancel_requested") or returncode == 0:
            rec["status"] = "cancelled" if rec.get("cancel_requested") else "finished"
        else:
            errs = [ln[6:].strip() for ln in _tail(folder / "log.txt").splitlines() if ln.startswith("error:")]
            rec["error"] = (errs[-1] if errs else f"killed by signal {-returncode} ({signal.strsignal(-returncode)})"
                            if returncode and returncode < 0 else f"exited with status {returncode}" if returncode
                            else "the process ended without saving a run (killed, out of memory or disk full?)")
        with suppress(OSError):  # a full disk: the next read derives the same result again
            runs.write_json_atomic(folder / "job.json", rec)
        return rec


def status(job_id: str, jobs_dir=None) -> dict:
    """The job's record; ``status`` is running, finished, failed or cancelled (failed ones carry ``log_tail``)."""
    rec = _read((folder := _job_dir(job_id, jobs_dir)) / "job.json")
    if not rec:
        rec = {"id": job_id, "status": "failed", "error": "job record missing or unreadable", "spec": {}}
    elif rec.get("status") not in FINAL and not _alive(rec.get("pid"), rec.get("ctime")):
        for waiter in (t for t in threading.enumerate() if t.name == f"wait-{job_id}"):
            waiter.join(5)  # a job started by this process: its waiter records the exit status
        rec = _finalize(folder)
    return {**rec, "log_tail": log_tail(job_id, jobs_dir=jobs_dir)} if rec.get("status") == "failed" else rec


def list_jobs(jobs_dir=None) -> list[dict]:
    jobs = _job_dir(None, jobs_dir)
    names = [p.name for p in jobs.iterdir() if p.is_dir() and _ID_OK.match(p.name)] if jobs.is_dir() else []
    return sorted((status(n, jobs) for n in names), key=lambda j: (j.get("started") or 0, j["id"]), reverse=True)


def running_job(jobs_dir=None) -> dict | None:
    return next((j for j in list_jobs(jobs_dir) if j["status"] == "running"), None)


def _tail(path: Path, limit: int = 65536) -> str:
    with suppress(OSError), open(path, "rb") as fh:
        fh.seek(max(0, os.fstat(fh.fileno()).st_size - limit))
        return fh.read().decode("utf-8", "replace")
    return ""


def _events(folder: Path) -> list[dict]:
    out = []
    for line in _tail(folder / "progress.jsonl", 4_000_000).splitlines():
        with suppress(ValueError):  # a half-written last line (killed mid-write) is skipped
            out.append(json.loads(line))
    return [e for e in out if isinstance(e, dict)]


def progress(job_id: str, jobs_dir=None) -> dict:
    """Where the job is: stage, fold/folds, epoch/epochs, latest metrics, images/s, the saved run id."""
    folder = _job_dir(job_id, jobs_dir)
    spec = _read(folder / "job.json").get("spec") or {}
    p = dict(stage="starting", fold=None, folds=spec.get("folds") if spec.get("mode") == "cv" else None, epoch=0,
             epochs=spec.get("epochs"), metrics={}, images_per_s=None, run_id=None, test=None, updated=None)
    for ev in _events(folder):
        kind, p["updated"] = ev.get("event"), ev.get("t", p["updated"])
        if kind == "stage":
            p.update(stage=ev.get("stage"), fold=ev.get("fold"), epoch=0)
        elif kind == "epoch":
            p.update(epoch=ev.get("epoch"), epochs=ev.get("epochs"), metrics=ev.get("logs") or {},
                     images_per_s=ev.get("images_per_s"))
        elif kind in ("data", "features", "decode"):
            p["stage"] = ev.get("stage") or f"decoding images {ev.get('i')}/{ev.get('n')}"
        elif kind in ("done", "saved"):
            p.update(stage="saving the run" if kind == "done" else "saved", test=ev.get("test", p["test"]),
                     run_id=Path(str(ev["run"])).name if ev.get("run") else p["run_id"])
    return p


def log_tail(job_id: str, n: int = 40, jobs_dir=None) -> str:
    return "\n".join(_tail(_job_dir(job_id, jobs_dir) / "log.txt").splitlines()[-n:])


def cancel(job_id: str, jobs_dir=None, grace: float = 5.0) -> dict:
    """SIGTERM the job's process group, SIGKILL after ``grace`` seconds -> its status (cancelled)."""
    folder = _job_dir(job_id, jobs_dir)
    rec = _read(folder / "job.json")
    pid, ctime = rec.get("pid"), rec.get("ctime")
    if rec.get("status") not in FINAL and _alive(pid, ctime):
        with _flock(folder), suppress(OSError):  # (a full disk: it then shows as failed, killed by a signal)
            runs.write_json_atomic(folder / "job.json", {**_read(folder / "job.json"), "cancel_requested": True})
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with suppress(OSError):
                os.killpg(pid, sig)  # the child leads its own session: its children get the signal too
            deadline = time.monotonic() + wait
            while _alive(pid, ctime) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not _alive(pid, ctime):
                break
    return status(job_id, jobs_dir)
