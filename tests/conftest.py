"""Shared fixtures: tiny generated two-class image folders (never the real data set), and the browser
tests' `streamlit run` server (`server`, over the registry the module's `REGISTRY` builds) and `chromium_path`."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image


def blob_image(rng, size=64, tumour=False):
    """A fake 'slice': a grey disc (the head) with noise; tumours add a bright blob."""
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size * 0.42) ** 2
    img = 40 + 60 * head + rng.normal(0, 8, (size, size))
    if tumour:
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = size * rng.uniform(0.07, 0.12)
        img += 150 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root, n_per_class=12, size=64, seed=0, classes=("no", "yes")):
    rng = np.random.default_rng(seed)
    for label, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(blob_image(rng, size, bool(label))).save(root / cls / f"{cls}{i}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path):
    return make_folder(tmp_path / "data")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BT_CACHE_DIR", str(tmp_path / "cache"))


# --- the browser tests' server (tests/test_browser*.py) --------------------------------------------------

from browser import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402,F401  (CHROMIUM_ARGS: for the tests)

START_TIMEOUT = 60  # s, until /_stcore/health answers


def _log_tail(log, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@pytest.fixture(scope="module")
def chromium_path():
    """Debian's chromium and Playwright, or a skip (a failure when ``$CI`` is set)."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing (apt-get install chromium); the browser test cannot run"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("playwright.sync_api")
    return CHROMIUM


@pytest.fixture(scope="module")
def server(request, chromium_path, tmp_path_factory):
    """``streamlit run`` on a free loopback port over the run registry that the test module's
    ``REGISTRY(root, work)`` builds -> its base URL; no data root is allowed; always terminated afterwards."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from app_fixtures import APP, wait_healthy

    work = tmp_path_factory.mktemp(f"server_{request.module.__name__}")
    registry = request.module.REGISTRY(work / "runs", work)
    port, log = free_port(), work / "streamlit.log"
    env = {**os.environ, "BT_RUNS_DIR": str(registry), "BT_CACHE_DIR": str(work / "cache"),
           "BT_DATA_ROOTS": str(work / "no_roots"), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=Path(APP).parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc, time.monotonic() + START_TIMEOUT, lambda: _log_tail(log))
        except RuntimeError as err:
            pytest.fail(str(err))
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
