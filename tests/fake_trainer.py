"""A stand-in for ``python -m bt_core cv|train`` in the launcher tests: no TensorFlow, starts in a blink.

Run as ``python tests/fake_trainer.py --behave KIND <the launcher's argv after the program>``; it parses
the same options as the real command (so a wrong argv fails here too; ``--data`` repeated and/or
``--sources``, and the options the launcher passes only when changed) and writes the same progress
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
from bt_core.config import BALANCE_CHOICES, POSITION_REFERENCES, PREPROCESS_CHOICES  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--behave", default="ok", choices=["ok", "sleep", "stubborn", "crash", "hang_in_save"])
p.add_argument("mode", choices=["cv", "train"])
p.add_argument("--data", action="append", default=[])  # repeated for several sources
p.add_argument("--sources")
for opt in ("--model", "--backbone", "--split", "--progress-file", "--out"):
    p.add_argument(opt, required=True)
for opt in ("--epochs", "--folds", "--batch-size", "--image-size", "--seed", "--head-pool", "--degrade-copies"):
    p.add_argument(opt, type=int, required=True)
p.add_argument("--lr", type=float, required=True)
p.add_argument("--preprocess", choices=PREPROCESS_CHOICES, required=True)
p.add_argument("--pooling", choices=["avg", "multiscale"])
for opt in ("--views", "--dense-units", "--samples-per-epoch", "--head-depth"):  # given only when changed
    p.add_argument(opt, type=int)
for opt in ("--dropout", "--mask-weight", "--strip-skull", "--synth-lesions", "--lesion-weight", "--position-strength"):
    p.add_argument(opt, type=float)
p.add_argument("--balance", choices=BALANCE_CHOICES)
p.add_argument("--position-reference", choices=POSITION_REFERENCES)
for opt in ("--augment", "--mirror", "--freeze-backbone", "--symmetry"):
    p.add_argument(opt, action="store_true")
args = p.parse_args()
if not args.data and not args.sources:
    p.error("give --data FOLDER (repeated) and/or --sources FILE")


def report(event: dict) -> None:
    with open(args.progress_file, "a") as fh:
        fh.write(json.dumps({"t": round(time.time(), 3), **event}) + "\n")


where = ", ".join([*args.data, *filter(None, [args.sources])])
print(f"fake trainer: {args.behave} {args.mode} on {where}", flush=True)
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
