"""Import Keras (and its backend) without the backend's start-up lines on stderr.

TensorFlow's C++ start-up notices (absl's "All log messages before absl::InitializeLog()", oneDNN's
"custom operations are on" on CPUs where it is on by default, the CPU-feature guard) ignore
``TF_CPP_MIN_LOG_LEVEL`` in TensorFlow 2.21. :func:`import_keras` points file descriptor 2 at a
temporary file for the first ``import keras`` of the process, then writes back every line that is
not such a notice, so nothing else printed meanwhile (another thread's error) is lost, only delayed.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import threading

_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} [\d:. ]+\s*\d+ "
                    r"(port|cpu_feature_guard|cuda_\w+|gpu_\w+)\.cc:\d+\]|To enable the following instructions)")
_LOCK = threading.Lock()


def is_noise(line: str) -> bool:
    return bool(_NOISE.match(line))


def import_keras():
    """``import keras`` with the backend's start-up notices dropped -> the keras module."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with _LOCK:
        if "keras" in sys.modules:
            return sys.modules["keras"]
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            import keras
            return keras
        with tempfile.TemporaryFile(mode="w+b") as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                import keras
            finally:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                kept = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines(True) if not is_noise(ln)]
                if kept:
                    os.write(2, "".join(kept).encode())
        return keras
