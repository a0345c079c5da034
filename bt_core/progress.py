"""Progress of a training run on a terminal: the event dicts of ``run_protocol`` printed one line each.

:func:`progress_printer` prints every ``epoch`` event (stage, epoch, seconds, images per second, the
logs) and every ``stage``, ``features`` or ``data`` event; with a path it also appends every event, with
its time ``t``, to that file as JSON lines. Defaults: no file. Used by the command line and the
reproduction.
"""
from __future__ import annotations

import json
import time


def progress_printer(path: str | None):
    """A ``progress(event)`` callback: prints epochs and stages, appends every event to ``path`` if given."""
    fh = open(path, "a", buffering=1) if path else None

    def report(event: dict) -> None:
        event = {"t": round(time.time(), 3), **event}
        if fh:
            fh.write(json.dumps(event) + "\n")
        if event["event"] == "epoch":
            logs = " ".join(f"{k}={v:.4f}" for k, v in event["logs"].items())
            print(f"[{event['stage']}] epoch {event['epoch']}/{event['epochs']} {event['seconds']:.1f}s "
                  f"{event['images_per_s']:.0f} img/s {logs}", flush=True)
        elif event["event"] in ("stage", "features", "data"):
            print(f"== {event.get('stage', event['event'])} {event.get('n', '')}".rstrip(), flush=True)
    return report
