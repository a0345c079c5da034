"""Training launcher: one background ``python -m bt_core cv|train`` job at a time, from the app.

On for a local server, off on Streamlit Community Cloud or a server on a public address, and
``BT_ENABLE_TRAINING=1|0`` (or the Streamlit secret ``enable_training``) overrides both (:func:`training_switch`). Data folders
must lie in an allowed root: ``$BT_DATA_ROOTS`` (``os.pathsep``-separated; default ``../shared/data``
beside the repository). JobSpec defaults are the paper's (compact_cnn, 30 epochs, 3 folds, batch 32,
240 px, seed 42) with the leak-free group split. A job lives in ``<runs root>/_jobs/<id>/`` (job.json,
log.txt, progress.jsonl); its run goes atomically into the registry (``runs.default_root()``). The
child runs without a shell in its own session (it outlives an app restart). Starts are serialised by
``flock`` on ``<jobs dir>/launcher.lock`` and refused while a recorded PID (with its start time, against
PID reuse) lives; a dead one's record is stale and gets finalised. Status is derived on each read, so a
fresh process sees the same, and a job killed by SIGKILL, OOM or a full disk shows as failed with its
log. Test hook: monkeypatch ``CHILD_PROGRAM`` (the argv prefix) to a fake trainer.
"""
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import namedtuple
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from importlib.metadata import distributions, version
from pathlib import Path

import psutil

from bt_core import runs
from bt_core.config import BACKBONES, MODEL_KINDS, POOLING_CHOICES, PREPROCESS_CHOICES, SPLIT_KINDS
from bt_core.errors import BTError, ConfigError

REPO = Path(__file__).resolve().parents[2]
CHILD_PROGRAM = [sys.executable, "-m", "bt_core"]
CHOICES = {"model": MODEL_KINDS, "backbone": BACKBONES, "split": SPLIT_KINDS, "mode": ("cv", "train"),
           "augment": (False, True), "preprocess": PREPROCESS_CHOICES, "pooling": POOLING_CHOICES,
           "mirror": (False, True)}
CLASSES, FINAL = ("no", "yes"), ("finished", "failed", "cancelled")
RANGES = {"epochs": (1, 1000), "folds": (2, 20), "batch_size": (1, 4096), "image_size": (32, 1024), "seed": (0, 2**31),
          "head_pool": (0, 16), "degrade_copies": (0, 8)}
LR_RANGE = (1e-6, 0.1)
TRANSFER_ONLY = {"pooling": "avg", "mirror": False}  # options that change a transfer model only, and their defaults
PAPER_RECIPE = "The paper's CNN (240 px, Adam 1e-4)"
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
Job = namedtuple("Job", "id dir pid started argv")  # what start() returns


class BusyError(BTError):
    """A training job is already running."""


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
LOCAL_ADDRESSES = ("", "localhost", "127.0.0.1", "::1")


def on_community_cloud(env=None, repo: Path = REPO) -> bool:
    """Streamlit Community Cloud's markers: ``HOSTNAME=streamlit``, ``SF_PARTNER=streamlit``, the home
    ``/home/appuser`` or the repository under ``/mount/src`` (where Cloud checks it out)."""
    env = os.environ if env is None else env
    return (env.get("HOSTNAME") == "streamlit" or env.get("SF_PARTNER") == "streamlit"
            or env.get("HOME") == "/home/appuser" or Path("/mount/src") in Path(repo).parents)


def training_switch(env=None, secrets=None, server_address=None) -> tuple[bool, str]:
    """-> (on, why). An explicit ``BT_ENABLE_TRAINING`` (1/0), then the secret ``enable_training``, wins;
    otherwise on for a local server (``server.address`` unset or loopback) that is not on Community Cloud."""
    env = os.environ if env is None else env
    for value, where in ((env.get("BT_ENABLE_TRAINING"), "BT_ENABLE_TRAINING"),
                         ((secrets or {}).get("enable_training"), "the secret enable_training")):
        text = str(value).strip().lower() if value is not None else ""
        if text in _ON or text in _OFF:
            return text in _ON, f"set by {where}"
    if on_community_cloud(env):
        return False, "off on Streamlit Community Cloud unless the operator turns it on"
    address = str(server_address or "").strip().strip("[]").lower()
    if address not in LOCAL_ADDRESSES:
        return False, f"off on a server listening on {address} unless the operator turns it on"
    return True, "on for a local server (server.address unset or loopback)"


def enabled(env=None, secrets=None, server_address=None) -> bool:
    """Whether the launcher is on (:func:`training_switch`)."""
    return training_switch(env, secrets, server_address)[0]


def allowed_roots(env=None) -> list[Path]:
    """The existing data roots, resolved, from ``$BT_DATA_ROOTS`` (default ``../shared/data``)."""
    raw = (os.environ if env is None else env).get("BT_DATA_ROOTS")
    cands = [c for c in raw.split(os.pathsep) if c.strip()] if raw is not None else [REPO.parent / "shared" / "data"]
    return [Path(c).expanduser().resolve() for c in cands if Path(c).expanduser().is_dir()]


def check_data_dir(path, roots=None, both: bool = True) -> Path:
    """The resolved folder; ConfigError if it is outside the allowed roots or lacks the class folders
    (``both=False``: one of them is enough, as for scoring a set of healthy scans)."""
    roots = allowed_roots() if roots is None else [Path(r).resolve() for r in roots]
    inside = lambda p: any(p == r or r in p.parents for r in roots)  # noqa: E731
    if not roots:
        raise ConfigError("no data folder is allowed: the operator must set BT_DATA_ROOTS")
    try:
        real = Path(str(path or "").strip() or "\0").expanduser().resolve(strict=True)  # follows every symlink
    except (OSError, RuntimeError, ValueError):
        raise ConfigError(f"data folder not found: {path or '(none chosen)'}") from None
    if not inside(real) or not real.is_dir():
        raise ConfigError(f"data folder {path} is not inside an allowed data root ({', '.join(map(str, roots))})")
    subs = [real / c for c in CLASSES]
    if not both:
        subs = [sub for sub in subs if sub.is_dir()] or subs[:1]
    for sub in subs:
        if not sub.is_dir() or not inside(sub.resolve()):
            raise ConfigError(f"data folder {path} needs the class folders {CLASSES[0]}/ "
                              f"{'and' if both else 'or'} {CLASSES[1]}/")
        with suppress(OSError):  # an unreadable folder fails in the job, with its own message
            if any(e.is_symlink() and not inside(Path(e.path).resolve()) for e in os.scandir(sub)):
                raise ConfigError(f"class folder {sub} links to files outside the allowed data roots")
    return real


@dataclass
class JobSpec:
    """What to train (defaults: see the module docstring)."""
    data_dir: str = ""
    model: str = "compact_cnn"
    backbone: str = "efficientnet_lite0"
    epochs: int = 30
    folds: int = 3
    split: str = "group"
    batch_size: int = 32
    mode: str = "cv"
    augment: bool = False
    image_size: int = 240
    seed: int = 42
    lr: float = 1e-4
    head_pool: int = 0  # CNN: MaxPool size before Flatten (0: the model's default)
    preprocess: str = "none"
    pooling: str = "avg"  # transfer only
    mirror: bool = False  # transfer only
    degrade_copies: int = 0  # K degraded copies of each training image (bt_core.data.degrade)

    def validate(self, roots=None) -> "JobSpec":
        """Check choices and ranges (ConfigError, one line); ``data_dir`` becomes the resolved folder."""
        for name, ok in CHOICES.items():
            if getattr(self, name) not in ok:
                raise ConfigError(f"{name} must be one of {', '.join(map(str, ok))}, got {getattr(self, name)!r}")
        for name, (lo, hi) in RANGES.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{name.replace('_', ' ')} must be a whole number from {lo} to {hi}, got {v!r}")
        lo, hi = LR_RANGE
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not lo <= self.lr <= hi:
            raise ConfigError(f"learning rate must be a number from {lo:g} to {hi:g}, got {self.lr!r}")
        if self.model != "transfer":
            changed = [k for k, default in TRANSFER_ONLY.items() if getattr(self, k) != default]
            if changed:
                raise ConfigError(f"{' and '.join(changed)} apply to the transfer model only")
        self.data_dir = str(check_data_dir(self.data_dir, roots))
        return self

    def argv(self, progress_file, out, roots=None) -> list[str]:
        """The child's argument list, after :meth:`validate` (for Popen; never a shell string)."""
        self.validate(roots)
        opts = {"data": self.data_dir, "model": self.model, "backbone": self.backbone, "split": self.split,
                **{k: getattr(self, k) for k in RANGES}, "lr": repr(float(self.lr)), "preprocess": self.preprocess,
                **({"pooling": self.pooling} if self.model == "transfer" else {}),
                "progress-file": progress_file, "out": out}
        flags = [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", str(v))]
        switches = [f"--{k}" for k in ("augment", "mirror") if getattr(self, k)]
        return [*CHILD_PROGRAM, self.mode, *flags, *switches]


def recipes(root=None) -> dict[str, dict]:
    """Starting points for the training form: name -> JobSpec fields (no data folder, no mode).

    The paper's CNN, then one recipe per shipped run (``shipped.json``) with the settings it was
    trained with, read from its run.json, so that the app can retrain exactly what it serves.
    """
    names = {f.name for f in fields(JobSpec)} - {"data_dir", "mode"}
    out = {PAPER_RECIPE: {**{k: v for k, v in asdict(JobSpec()).items() if k in names}, "model": "paper_cnn"}}
    for kind, folder in runs.shipped(root).items():
        try:
            cfg = runs.load_run(folder).get("config", {})
        except (BTError, OSError, ValueError):
            continue  # a missing or broken shipped run has no recipe; the app says so elsewhere
        spec = asdict(JobSpec(**{k: cfg[k] for k in names if k in cfg}))
        out[f"Same settings as the shipped {runs.SHIPPED_KINDS[kind]} model ({folder.name})"] = {
            k: v for k, v in spec.items() if k in names}
    return out


def device_info(env=None) -> dict:
    """Keras backend and device a job will use, from ``nvidia-smi -L`` and package metadata (no TF import)."""
    env = os.environ if env is None else env
    backend = str(env.get("KERAS_BACKEND") or _read(Path(env.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json")
                  .get("backend") or "tensorflow")
    dists = {str(d.metadata["Name"]).lower().replace("_", "-") for d in distributions()}
    gpu_build = {"tensorflow": "tensorflow" in dists and "tensorflow-cpu" not in dists,
                 "jax": any(d.startswith("jax-cuda") for d in dists),
                 "torch": "torch" in dists and "+cpu" not in version("torch")}.get(backend, False)
    gpus, exe = [], shutil.which("nvidia-smi")
    if exe and env.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):
        with suppress(OSError, subprocess.SubprocessError):
            res = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10)
            gpus = re.findall(r"^GPU \d+: (.+?)(?: \(UUID.*)?$", res.stdout, re.M) if res.returncode == 0 else []
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = f"GPU: {', '.join(gpus)}" if gpus and gpu_build else f"CPU ({cpus} cores)"
    note = f"a GPU is present, but the installed {backend} runs on the CPU only" if gpus and not gpu_build else ""
    return {"backend": backend, "device": device, "gpus": gpus, "cpus": cpus, "note": note}


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
            argv = spec.argv(folder / "progress.jsonl", out)
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
