"""More than one device: one model trained data parallel, or the k folds run in parallel, one process a GPU.

- :func:`data_parallel` is a context manager under which a model is built, compiled and trained
  (``TrainConfig(data_parallel=True)`` / ``--data-parallel`` do this in :func:`bt_core.models.training.fit`).
  Default: every visible GPU (``n_devices`` caps it); without GPUs, every logical CPU device, which
  is one unless faked. JAX: Keras' own distribution API, ``keras.distribution.DataParallel``, set
  globally and the previous distribution restored on exit. TensorFlow: ``tf.distribute.MirroredStrategy``
  (one a process, reused), whose scope covers model building and compile. PyTorch, or fewer than
  two devices: a no-op (it yields None); under an outer TF strategy it reuses that one.
  The batch size stays the global batch, split across replicas: keep it a multiple of the devices.
- :func:`fake_cpu_devices` splits the CPU into n logical TensorFlow devices so the multi-device path
  runs on any machine (tests). It must run before TensorFlow initialises its devices, so call it
  first thing in a fresh process. On JAX, set ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
  before jax is imported instead.
- Parallel folds (``cv --parallel-folds``): :func:`fold_jobs` makes one ``python -m bt_core cv ...
  --only-fold K --out DIR/fold-K`` command a fold, with ``CUDA_VISIBLE_DEVICES`` set to one GPU
  (fold K on GPU ``gpus[(K-1) % len(gpus)]``); :func:`run_folds_parallel` runs them without a shell,
  one at a time on each GPU, logs each into ``DIR/fold-K.log`` and returns each fold's record;
  :func:`merge_fold_records` joins them, and ``training.run_protocol(fold_records=...)`` finishes
  with the final fit and the test. A failing fold stops the others and raises a
  :class:`~bt_core.errors.BTError` naming the fold and its log.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import keras

from bt_core.errors import BTError, ConfigError

MODULE_CMD = (sys.executable, "-m", "bt_core")
CHILD_DROPS = ("help", "only_fold", "parallel_folds", "out", "progress_file", "label")
_STRATEGIES: dict = {}  # TensorFlow: devices -> the MirroredStrategy reused for every model


def list_accelerators() -> list[str]:
    """GPUs visible to the current Keras backend (no memory is allocated on TensorFlow or PyTorch)."""
    name = keras.backend.backend()
    try:
        if name == "tensorflow":
            import tensorflow as tf
            return [d.name for d in tf.config.list_physical_devices("GPU")]
        if name == "jax":
            import jax
            return [str(d) for d in jax.devices("gpu")]  # RuntimeError without a GPU backend
        if name == "torch":
            import torch
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except Exception:  # no GPU backend; device listing is informative only
        pass
    return []


def describe() -> dict:
    """{"backend", "devices" (the visible GPUs), "n_gpus"}."""
    devices = list_accelerators()
    return {"backend": keras.backend.backend(), "devices": devices, "n_gpus": len(devices)}


def visible_gpu_ids() -> list[str]:
    """Values for ``CUDA_VISIBLE_DEVICES``, one a visible GPU (honouring an inherited mask).

    On JAX the GPUs are counted in a short subprocess: creating JAX's GPU backend in the parent
    would reserve most of every GPU's memory before the fold processes start.
    """
    if keras.backend.backend() == "jax":
        code = "import jax\ntry:\n    print(len(jax.devices('gpu')))\nexcept RuntimeError:\n    print(0)"
        env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        try:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
            n = int(out.stdout.split()[-1]) if out.returncode == 0 else 0
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            n = 0
    else:
        n = len(list_accelerators())
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [s.strip() for s in mask.split(",") if s.strip()] if mask else [str(i) for i in range(n)]
    return ids[:n]


@contextlib.contextmanager
def data_parallel(n_devices: int | None = None):
    """Build, compile and fit inside this to train on several devices -> yields the distribution
    (JAX), the strategy (TensorFlow) or None (no-op: PyTorch, or fewer than two devices)."""
    if n_devices is not None and n_devices < 1:
        raise ConfigError("n_devices must be at least 1")
    name = keras.backend.backend()
    if name == "jax":
        devices = keras.distribution.list_devices()[:n_devices]  # GPUs if any, else (fake) CPUs
        if len(devices) < 2:
            yield None
            return
        previous = keras.distribution.distribution()
        dist = keras.distribution.DataParallel(devices=devices)
        keras.distribution.set_distribution(dist)
        try:
            yield dist
        finally:
            keras.distribution.set_distribution(previous)
    elif name == "tensorflow":
        import tensorflow as tf
        if tf.distribute.has_strategy():  # already inside a strategy: use it
            yield tf.distribute.get_strategy()
            return
        devices = [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]
        devices = devices[:n_devices]
        if len(devices) < 2:
            yield None
            return
        # one strategy a device set per process: a second MirroredStrategy reuses the collective
        # instance keys and the next model aborts with "Shape mismatch" (tensorflow#62790)
        if tuple(devices) not in _STRATEGIES:
            _STRATEGIES[tuple(devices)] = tf.distribute.MirroredStrategy(devices)
        strategy = _STRATEGIES[tuple(devices)]
        with strategy.scope():
            yield strategy
    else:  # torch: Keras has no multi-device training on this backend
        yield None


def fake_cpu_devices(n: int = 2) -> list[str]:
    """Split the CPU into ``n`` logical TensorFlow devices -> their names (tests; fresh process only)."""
    if keras.backend.backend() != "tensorflow":
        raise ConfigError("fake_cpu_devices is for TensorFlow; on JAX set "
                          "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax")
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        raise ConfigError("fake devices must be set before TensorFlow initialises its devices "
                          "(call fake_cpu_devices first, in a fresh process)") from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def fold_jobs(argv_base: list[str], folds: int, gpus: list, out_dir="bt-folds",
              command=None) -> list[tuple[dict, list[str]]]:
    """One (env, argv) a fold: ``argv_base`` (``["cv", ...]``) + ``--only-fold K --out DIR/fold-K``,
    with ``CUDA_VISIBLE_DEVICES`` set to fold K's GPU. ``command`` replaces ``python -m bt_core``."""
    if not gpus:
        raise ConfigError("parallel folds need at least one GPU")
    if folds < 1:
        raise ConfigError("folds must be at least 1")
    if list(argv_base[:1]) != ["cv"]:
        raise ConfigError("parallel folds run the cv command: argv_base must start with 'cv'")
    out = Path(out_dir)
    root = str(Path(__file__).resolve().parents[2])  # so the children import this bt_core
    path = os.environ.get("PYTHONPATH")
    base_env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
    jobs = []
    for k in range(1, folds + 1):
        env = {**base_env, "CUDA_VISIBLE_DEVICES": str(gpus[(k - 1) % len(gpus)])}
        argv = [*(command or MODULE_CMD), *argv_base, "--only-fold", str(k), "--out", str(out / f"fold-{k}"),
                "--progress-file", str(out / f"fold-{k}.jsonl")]
        jobs.append((env, argv))
    return jobs


def _last_line(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.is_file() else []
    return f": {lines[-1][:300]}" if lines else ""


def read_fold_record(folder, fold: int) -> dict:
    """The run record a ``cv --only-fold`` child saved under ``folder``."""
    found = sorted(Path(folder).glob("*/run.json"))
    if not found:
        raise BTError(f"fold {fold} wrote no run record in {folder}")
    record = json.loads(found[-1].read_text())
    if [f.get("fold") for f in record.get("folds", [])] != [fold]:
        raise BTError(f"the record in {found[-1]} is not fold {fold}'s")
    return record


def run_folds_parallel(argv_base: list[str], folds: int, gpus: list, out_dir, progress=None, command=None,
                       poll_s: float = 0.5) -> list[dict]:
    """Run :func:`fold_jobs` (one process at a time on each GPU) -> the fold records, fold 1 first."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda event: None)
    queues: dict[str, deque] = {}
    for k, (env, argv) in enumerate(fold_jobs(argv_base, folds, gpus, out, command), start=1):
        queues.setdefault(env["CUDA_VISIBLE_DEVICES"], deque()).append((k, env, argv))
    running: dict[str, tuple] = {}  # gpu -> (fold, process, log file)
    failed = None
    try:
        while failed is None and (running or any(queues.values())):
            for gpu, queue in queues.items():
                if gpu not in running and queue:
                    k, env, argv = queue.popleft()
                    log = open(out / f"fold-{k}.log", "wb")
                    try:
                        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT)
                    except OSError as err:
                        log.close()
                        raise BTError(f"fold {k} could not start ({err})") from None
                    running[gpu] = (k, proc, log)
                    report({"event": "stage", "stage": f"fold {k}/{folds} on GPU {gpu}", "fold": k, "folds": folds})
            time.sleep(poll_s)
            for gpu, (k, proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[gpu]
                if proc.returncode != 0:
                    failed = (k, proc.returncode)
                    break
                report({"event": "fold_done", "fold": k, "folds": folds})
    finally:  # a failure or an interrupt: stop the other folds
        for k, proc, log in running.values():
            proc.terminate()
        for k, proc, log in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    if failed:
        k, rc = failed
        log = out / f"fold-{k}.log"
        raise BTError(f"fold {k} failed (exit status {rc}){_last_line(log)}; full log: {log}")
    return [read_fold_record(out / f"fold-{k}", k) for k in range(1, folds + 1)]


def merge_fold_records(records: list[dict], folds: int | None = None, train_idx=None, fingerprint: str | None = None):
    """Fold records from the children -> (fold dicts in fold order, out-of-fold dict), as one
    sequential cv run would have them; checks that every fold is there once, on the same data, and
    (given ``train_idx``) that the validation parts cover exactly the training part."""
    by_fold, oof_parts, prints = {}, {}, {fingerprint} if fingerprint else set()
    for r in records:
        prints.add(r.get("data", {}).get("fingerprint"))
        for f in r.get("folds", []):
            if f["fold"] in by_fold:
                raise BTError(f"fold {f['fold']} appears twice in the fold records")
            by_fold[f["fold"]] = f
        oof = r.get("oof", {})
        for i, p, k in zip(oof.get("idx", []), oof.get("prob", []), oof.get("fold", [])):
            oof_parts.setdefault(k, []).append((i, p))
    n = folds or len(by_fold)
    if sorted(by_fold) != list(range(1, n + 1)):
        raise BTError(f"fold records hold folds {sorted(by_fold)}, expected 1..{n}")
    if len(prints) > 1:
        raise BTError("fold records come from different data (fingerprints differ)")
    oof = {"idx": [], "prob": [], "fold": []}
    for k in range(1, n + 1):
        part = oof_parts.get(k, [])
        oof["idx"] += [i for i, _ in part]
        oof["prob"] += [p for _, p in part]
        oof["fold"] += [k] * len(part)
    if train_idx is not None and sorted(oof["idx"]) != sorted(int(i) for i in train_idx):
        raise BTError("fold records do not cover this split's training part (other data, seed or split?)")
    return [by_fold[k] for k in range(1, n + 1)], oof


def child_argv(parser: argparse.ArgumentParser, args: argparse.Namespace, command: str = "cv",
               drop=CHILD_DROPS) -> list[str]:
    """Rebuild ``[command, --option=value, ...]`` from parsed ``args`` (the options in ``drop`` left out)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    argv = [command]
    for action in sub._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in drop or value is None or value is False:
            continue
        opt = max(action.option_strings, key=len)
        if action.nargs == 0:
            argv.append(opt)
        elif isinstance(value, (list, tuple)):
            argv += [opt, *map(str, value)]
        else:
            argv.append(f"{opt}={value}")
    return argv


def folds_from_cli(args, parser, mode: str, folds: int, progress=None, gpus=None, command=None):
    """``cv --parallel-folds``: the fold records from one child a GPU, or None (fewer than two GPUs:
    the caller runs the folds itself, one after another)."""
    if mode != "cv" or args.only_fold is not None:
        raise ConfigError("--parallel-folds applies to cv, without --only-fold")
    gpus = visible_gpu_ids() if gpus is None else gpus
    if len(gpus) < 2:
        print(f"parallel folds: {len(gpus)} GPU visible, so the folds run one after another in this process",
              file=sys.stderr, flush=True)
        return None
    work = Path(tempfile.mkdtemp(prefix="bt-folds-"))  # kept on failure, for the logs
    records = run_folds_parallel(child_argv(parser, args), folds, gpus, work, progress, command)
    shutil.rmtree(work, ignore_errors=True)
    return records
