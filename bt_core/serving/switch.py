"""Whether the app may train here, and on what: the training on/off switch and the device a job uses.

On for a local server, off on Streamlit Community Cloud or a server on a public address;
``BT_ENABLE_TRAINING=1|0`` (also true/false, yes/no, on/off), then the Streamlit secret
``enable_training``, overrides both (:func:`training_switch`). :func:`device_info` reads the Keras
backend (``KERAS_BACKEND``, else ``~/.keras/keras.json``, else tensorflow) and ``nvidia-smi -L``,
without importing a backend.
"""
import json
import os
import re
import shutil
import subprocess
from contextlib import suppress
from importlib.metadata import distributions, version
from pathlib import Path

from bt_core.serving.data_roots import REPO

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


def _keras_json(env) -> dict:
    with suppress(OSError, ValueError, TypeError):
        return dict(json.loads((Path(env.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json").read_text()))
    return {}


def device_info(env=None) -> dict:
    """Keras backend and device a job will use, from ``nvidia-smi -L`` and package metadata (no TF import)."""
    env = os.environ if env is None else env
    backend = str(env.get("KERAS_BACKEND") or _keras_json(env).get("backend") or "tensorflow")
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
