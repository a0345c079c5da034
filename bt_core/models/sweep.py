"""Sweeps: a grid of ``python -m bt_core cv|train`` configurations, each one a Ray task.

The sweep file and ``--set`` options, and the grid's configurations with their stable ids, are
:mod:`bt_core.models.sweep_grid` (its names are importable from here too). A task runs the ordinary command
line as a subprocess in a scratch folder ``<out>/_sweeps/<sweep id>/tmp/<config id>`` (one GPU each when
the cluster has GPUs, else ``cpus_per_task`` CPUs), writes ``run.json["sweep"] = {"id", "config_id",
"options"}`` into the finished run and moves it into the registry (``<out>``, default ``trained_models/``),
so the registry only ever holds complete runs. Its log is ``<out>/_sweeps/<sweep id>/<config id>.log``. A
sweep started again skips the configurations whose run is in the registry with the same sweep id and
config id. A failed task names its configuration and log and does not stop the others. At the end a
table ranks the sweep's runs (CV mean accuracy, then test accuracy; AUC) and ``summary.json`` is written
next to the logs. Ray is optional (``pip install -r requirements-ray.txt``): local by default
(``ray.init(num_cpus=os.cpu_count())``), an existing cluster with ``address``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bt_core import runs
from bt_core.models.sweep_grid import (  # noqa: F401 - the grid's names, importable from here as before
    COMMANDS, RESERVED, Config, _show, expand, load_spec, parse_set, parse_value, to_argv)

SWEEPS_DIR = "_sweeps"  # under the registry; list_runs skips "_" folders
REPO = Path(__file__).resolve().parents[2]
INSTALL_HINT = "Ray is not installed: pip install -r requirements-ray.txt"


def sweep_dir(root, sweep_id: str) -> Path:
    return Path(root) / SWEEPS_DIR / sweep_id


def finished_configs(root, sweep_id: str) -> dict[str, dict]:
    """``{config id: run summary}`` of this sweep's finished runs in the registry."""
    out = {}
    for summary in runs.list_runs(root):
        sweep = summary.get("sweep") or {}
        if sweep.get("id") == sweep_id and str(summary.get("status", "")).startswith("finished"):
            out.setdefault(sweep.get("config_id"), summary)
    return out


def run_config(job: dict) -> dict:
    """One configuration, on a Ray worker (or anywhere): the command line in a scratch folder, then the run
    moved into the registry with its sweep record. Never raises: -> {"config_id", "ok", "run" | "error", "log"}."""
    cid, log = job["sweep"]["config_id"], Path(job["log"])
    t0 = time.time()
    try:
        scratch = Path(job["scratch"])
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [job["python"], "-m", "bt_core", job["command"], *job["argv"], "--out", str(scratch)]
        with open(log, "w") as fh:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            proc = subprocess.run(cmd, cwd=job["cwd"], stdout=fh, stderr=subprocess.STDOUT, timeout=job.get("timeout"))
        if proc.returncode != 0:
            return {"config_id": cid, "ok": False, "log": str(log), "seconds": round(time.time() - t0, 1),
                    "error": f"exit status {proc.returncode}: {_last_line(log)}"}
        made = [d for d in scratch.iterdir() if not d.name.startswith(".") and (d / runs.RUN_FILE).is_file()]
        if len(made) != 1:
            raise RuntimeError(f"expected one run in {scratch}, found {len(made)}")
        record = json.loads((made[0] / runs.RUN_FILE).read_text())
        record["sweep"] = job["sweep"]
        runs.write_json_atomic(made[0] / runs.RUN_FILE, record)
        root = Path(job["root"])
        target, n = root / made[0].name, 1
        while target.exists():
            n += 1
            target = root / f"{made[0].name}-{n}"
        os.replace(made[0], target)
        shutil.rmtree(scratch, ignore_errors=True)
        return {"config_id": cid, "ok": True, "run": target.name, "log": str(log), "seconds": round(time.time() - t0, 1)}
    except Exception as err:  # noqa: BLE001 - a task reports (a timeout too), it never takes the sweep down
        return {"config_id": cid, "ok": False, "log": str(log), "error": f"{type(err).__name__}: {err}"}


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("error:")  # ours, else a traceback's exception line
              or re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", line)]
    return (errors or lines or ["(empty log)"])[-1][:300]


def connect(address: str | None = None, num_cpus: int | None = None):
    """Ray, initialised: the running instance, the cluster at ``address``, or a local one -> (ray, started)."""
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    if ray.is_initialized():
        return ray, False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return ray, True


def run_sweep(spec: dict, root=None, known: set[str] | None = None, address: str | None = None,
              num_cpus: int | None = None, cpus_per_task: float = 1, python: str | None = None,
              timeout: float | None = None, echo=print) -> dict:
    """Run the sweep's unfinished configurations on Ray -> ``{"sweep", "results", "skipped", "table"}``."""
    root = Path(root) if root else runs.default_root()
    sweep_id, configs = expand(spec, known)
    done = finished_configs(root, sweep_id)
    todo = [c for c in configs if c.config_id not in done]
    folder = sweep_dir(root, sweep_id)
    echo(f"sweep {sweep_id}: {len(configs)} configurations, {len(configs) - len(todo)} already finished, "
         f"{len(todo)} to run; logs in {folder}")
    results = []
    if todo:
        ray, started = connect(address, num_cpus)
        try:
            gpus = ray.cluster_resources().get("GPU", 0) > 0
            task = ray.remote(num_gpus=1, num_cpus=cpus_per_task) if gpus else ray.remote(num_cpus=cpus_per_task)
            # workers import this module: the repository at the same path on every node
            remote = task(run_config).options(runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
            pending = {}
            for c in todo:
                job = {"python": python or sys.executable, "cwd": str(REPO), "command": spec["command"],
                       "argv": c.argv + ([] if "label" in c.options else ["--label", f"{sweep_id} {c.describe()}"]),
                       "scratch": str(folder / "tmp" / c.config_id), "root": str(root),
                       "log": str(folder / f"{c.config_id}.log"), "timeout": timeout,
                       "sweep": {"id": sweep_id, "config_id": c.config_id, "options": c.options}}
                pending[remote.remote(job)] = c
            by_id = {c.config_id: c for c in todo}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                c = pending.pop(ready[0])
                try:
                    res = ray.get(ready[0])
                except Exception as err:  # noqa: BLE001 - a worker that died: this configuration failed
                    res = {"config_id": c.config_id, "ok": False, "log": str(folder / f"{c.config_id}.log"),
                           "error": f"task failed: {type(err).__name__}"}
                results.append(res)
                c = by_id[res["config_id"]]
                head = f"[{len(results)}/{len(todo)}] {c.config_id} ({c.describe()})"
                echo(f"{head}: saved {res['run']} in {res['seconds']} s" if res["ok"]
                     else f"{head} FAILED: {res['error']}; log: {res['log']}")
        finally:
            if started:
                ray.shutdown()
    table = summary_rows(root, sweep_id, configs)
    failed = [r for r in results if not r["ok"]]
    out = {"sweep": sweep_id, "command": spec["command"], "configurations": len(configs),
           "skipped": sorted(set(done) & {c.config_id for c in configs}), "results": results, "failed": failed,
           "table": table}
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_json_atomic(folder / "summary.json", out)
    shutil.rmtree(folder / "tmp", ignore_errors=True)
    return out


def _fold_mean(record: dict, key: str = "accuracy") -> float | None:
    vals = [float(f["metrics"][key]) for f in record.get("folds", []) if key in (f.get("metrics") or {})]
    return sum(vals) / len(vals) if vals else None


def summary_rows(root, sweep_id: str, configs: list[Config] | None = None) -> list[dict]:
    """The sweep's finished runs, best first: CV mean accuracy, then test accuracy (missing ones last)."""
    varied = {c.config_id: c.describe() for c in configs or []}
    rows = []
    for cid, summary in finished_configs(root, sweep_id).items():
        try:
            record = runs.load_run(summary["dir"])
        except Exception:  # noqa: BLE001 - an unreadable run is left out of the table
            continue
        test = (record.get("test") or {}).get("metrics") or {}
        rows.append({"config_id": cid, "options": varied.get(cid) or " ".join(
                         f"{k}={_show(v)}" for k, v in (record["sweep"].get("options") or {}).items()),
                     "cv_accuracy": _fold_mean(record), "test_accuracy": test.get("accuracy"),
                     "auc": test.get("auc"), "run": summary["id"]})
    rows.sort(key=lambda r: (-(r["cv_accuracy"] if r["cv_accuracy"] is not None else -1),
                             -(r["test_accuracy"] if r["test_accuracy"] is not None else -1)))
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`summary_rows`."""
    def num(v):
        return "—" if v is None or v != v else f"{v:.4f}"
    lines = ["| rank | config | options | CV mean accuracy | test accuracy | AUC | run |", "|---|---|---|---:|---:|---:|---|"]
    lines += [f"| {i} | {r['config_id']} | {r['options']} | {num(r['cv_accuracy'])} | {num(r['test_accuracy'])} | "
              f"{num(r['auc'])} | {r['run']} |" for i, r in enumerate(rows, 1)]
    return "\n".join(lines)
