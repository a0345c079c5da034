"""Export runs' answer paths to LiteRT (``answer.tflite`` beside each run), checked against Keras.

    python tools/export_lite.py                 # the shipped runs (trained_models/shipped.json)
    python tools/export_lite.py RUN [RUN ...]   # any runs (ids or folders)

``python -m bt_core calibrate`` already does this for the run it calibrates; this script is for runs
calibrated before, or after replacing a model file. See :mod:`bt_core.serving.lite`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bt_core import runs  # noqa: E402
from bt_core.errors import BTError  # noqa: E402
from bt_core.serving import lite  # noqa: E402


def main(argv=None) -> int:
    targets = list(argv if argv is not None else sys.argv[1:]) or [str(p) for p in runs.shipped().values()]
    status = 0
    for run in targets:
        try:
            info = lite.export(run)
            print(json.dumps({"run": Path(run).name, **info}))
        except BTError as err:
            print(f"error: {run}: {err}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
