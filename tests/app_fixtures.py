"""The dashboard tests' shared set-up: :func:`open_app` (AppTest) and a tiny run registry of two runs.

:func:`build_registry` makes a generated two-class folder (tests/conftest.py ``make_folder``), runs
the paper's protocol (2 folds, 2 epochs, 48x48 images) for a compact CNN and for a transfer model
on EfficientNet-Lite0 with random weights (no weights file), saves both with
:func:`bt_core.runs.save_run` and lists them in ``shipped.json`` as the app expects. The CNN run
gets an operating threshold of 0.4 so the app's default threshold can be checked. :func:`open_app`
runs the app headless (``streamlit.testing``) and fails on an exception; :func:`texts` reads elements.
Keras is imported only when a registry is built.
"""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from conftest import make_folder

CNN_ID, TRANSFER_ID = "tiny-cnn", "tiny-transfer"
CNN_THRESHOLD = 0.4
APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"


def open_app(page: str | None = None, *, secrets: dict | None = None, direct: bool = False, timeout: float = 90):
    """The app run headless -> its AppTest, after checking that no exception was shown.

    ``page`` (``"pages/score.py"``) is reached through streamlit_app.py's navigation, as a visitor does,
    or run on its own with ``direct=True`` (no first page, no models). ``secrets`` are set before the run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP.parent / page if direct else APP), default_timeout=timeout)
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    at.run()
    if page and not direct:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    """The values of a list of AppTest elements (at.error, at.info, ...), as strings."""
    return [str(e.value) for e in elements]


def build_registry(root: Path, work: Path) -> Path:
    """Train and save the two tiny runs under ``root`` -> ``root``."""
    from bt_core import data, runs
    from bt_core.models import training

    folder = make_folder(work / "data", n_per_class=16, size=64, seed=3)
    ds = data.load_folder(folder, size=48, cache_dir=work / "cache")
    common = dict(epochs=2, batch_size=8, folds=2, split="random", image_size=48, lr=1e-3, seed=1)
    specs = [
        (CNN_ID, "Tiny CNN", training.TrainConfig(model="compact_cnn", **common)),
        (TRANSFER_ID, "Tiny transfer", training.TrainConfig(model="transfer", backbone_weights=None,
                                                            dense_units=16, **common)),
    ]
    for run_id, label, cfg in specs:
        model, record = training.run_protocol(cfg, ds, "cv")
        record["label"] = label
        if run_id == CNN_ID:
            record["operating_point"] = {"threshold": CNN_THRESHOLD, "target_sensitivity": 0.9}
        runs.save_run(record, model, root, run_id=run_id)
    (root / "shipped.json").write_text(json.dumps({"cnn": CNN_ID, "transfer": TRANSFER_ID}))
    return root


def wait_healthy(url: str, proc, deadline: float, log_tail) -> None:
    """Block until ``streamlit run`` (``proc``) answers ``/_stcore/health`` at ``url``.

    RuntimeError, with ``log_tail()``, if the server exits or the ``time.monotonic()`` deadline passes.
    Shared by the browser test and bench/load.py."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}:\n{log_tail()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"streamlit did not answer /_stcore/health in time:\n{log_tail()}")
        time.sleep(0.25)
