"""A stand-in for ``python -m bt_core cv|train`` in the launcher tests: no TensorFlow, starts in a blink.

Run as ``python tests/fake_trainer.py --behave KIND <the launcher's argv after the program>``; it parses
the same options as the real command (so a wrong argv fails here too) and writes the same progress
events. KIND: ok (saves a run without a model), sleep (runs until killed, leaves a half-written
progress line), stubborn (also ignores SIGTERM), crash (one ``error:`` line, exit status 2),
hang_in_save (stops half-way through ``runs.save_run``, inside its hidden temporary folder).
"""
import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bt_core import runs  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--behave", default="ok", choices=["ok", "sleep", "stubborn", "crash", "hang_in_save"])
p.add_argument("mode", choices=["cv", "train"])
for opt in ("--data", "--model", "--backbone", "--split", "--progress-file", "--out"):
    p.add_argument(opt, required=True)
for opt in ("--epochs", "--folds", "--batch-size", "--image-size", "--seed", "--head-pool", "--degrade-copies"):
    p.add_argument(opt, type=int, required=True)
p.add_argument("--lr", type=float, required=True)
p.add_argument("--preprocess", choices=["none", "percentile"], required=True)
p.add_argument("--pooling", choices=["avg", "multiscale"])
p.add_argument("--augment", action="store_true")
p.add_argument("--mirror", action="store_true")
args = p.parse_args()


def report(event: dict) -> None:
    with open(args.progress_file, "a") as fh:
        fh.write(json.dumps({"t": round(time.time(), 3), **event}) + "\n")


print(f"fake trainer: {args.behave} {args.mode} on {args.data}", flush=True)
report({"event": "stage", "stage": "fold 1/2", "fold": 1, "folds": args.folds})
report({"event": "epoch", "stage": "fold 1", "epoch": 1, "epochs": args.epochs, "seconds": 0.1,
        "images_per_s": 123.0, "logs": {"loss": 0.69, "accuracy": 0.5}})
if args.behave == "crash":
    print("error: class folder missing: /nowhere/yes", file=sys.stderr)
    sys.exit(2)
if args.behave in ("sleep", "stubborn"):
    if args.behave == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(args.progress_file, "a") as fh:
        fh.write('{"event": "epoch", "stage": "fol')  # a half-written last line, as when killed mid-write
    print("sleeping", flush=True)
    time.sleep(600)


class HalfSavedModel:
    def save(self, path):
        Path(path).write_bytes(b"half a model")
        print("saving: half-way", flush=True)
        report({"event": "saving"})
        time.sleep(600)


record = {"mode": args.mode, "config": {"model": args.model, "split": args.split, "epochs": args.epochs}}
model = HalfSavedModel() if args.behave == "hang_in_save" else None
folder = runs.save_run(record, model, args.out, run_id=f"{runs.new_run_id(record)}-{os.getpid()}")  # two a second
report({"event": "done", "test": {"accuracy": 1.0}})
report({"event": "saved", "run": str(folder)})
print(f"saved {folder}", flush=True)
