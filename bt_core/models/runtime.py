"""Runtime: what a run computes on, and in which precision.

:func:`hardware` describes the machine for the run record (Keras backend, CPU model and core count,
the backend's devices), so that every figure can name the machine that made it. :func:`dtype_policy`
builds layers under a Keras dtype policy (``float32``, ``mixed_float16``, ``mixed_bfloat16``; None
leaves the global one) and restores the global policy afterwards. Defaults: float32, as the paper.
"""
from __future__ import annotations

import os
import platform
from contextlib import contextmanager

import keras


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    """Backend and device description for the run record."""
    info = {"backend": keras.backend.backend(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
            "python": platform.python_version(), "keras": keras.__version__, "cpus": os.cpu_count()}
    try:
        if info["backend"] == "jax":
            import jax
            info["devices"] = [str(d) for d in jax.devices()]
        elif info["backend"] == "tensorflow":
            import tensorflow as tf
            info["devices"] = [d.name for d in tf.config.list_logical_devices()]
        elif info["backend"] == "torch":
            import torch
            info["devices"] = [torch.cuda.get_device_name(0)] if torch.cuda.is_available() else ["cpu"]
    except Exception:  # device listing is informative only
        pass
    return info


@contextmanager
def dtype_policy(name: str | None):
    """Build layers under the Keras dtype policy ``name`` (None: leave it), then restore the global one."""
    before = keras.mixed_precision.global_policy()
    if name:
        keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)
